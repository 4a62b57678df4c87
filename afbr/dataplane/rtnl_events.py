"""Link and route deletions from the kernel: afbr's own softwires and routes, removed by anyone.

`RtnlDeletionListener` joins RTNLGRP_LINK, RTNLGRP_IPV4_ROUTE and RTNLGRP_IPV6_ROUTE on a
NETLINK_ROUTE socket and, read when it is readable (`fileno()` for an asyncio reader),
says whether one of afbr's links (name prefix and alias, as the reconcile owns them) or routes
(protocol RTPROT_AFBR) went.  The daemon then reconciles at once rather than at the next
periodic resync.  Lost notifications (ENOBUFS) count as a deletion: the reconcile re-reads all.
"""

from __future__ import annotations

import errno
import socket

from afbr.dataplane.rtnl_wire import IFINFOMSG, RTPROT_AFBR, iter_messages, parse_link
from afbr.dataplane.xfrm_socket import netns_scope
from afbr.encap.model import NAME_PREFIX

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
RTNLGRP_LINK = 1
RTNLGRP_IPV4_ROUTE = 7
RTNLGRP_IPV6_ROUTE = 11
RTM_DELLINK = 17
RTM_DELROUTE = 25
_RTM_PROTOCOL = 5  # offset of rtm_protocol in struct rtmsg


def is_afbr_deletion(msg_type: int, payload: bytes | memoryview) -> bool:
    """An RTM_DELLINK of an afbr link or an RTM_DELROUTE of an afbr route."""
    if msg_type == RTM_DELLINK and len(payload) >= IFINFOMSG.size:
        return parse_link(payload).name.startswith(NAME_PREFIX)
    if msg_type == RTM_DELROUTE and len(payload) > _RTM_PROTOCOL:
        return payload[_RTM_PROTOCOL] == RTPROT_AFBR
    return False


class RtnlDeletionListener:
    def __init__(self, netns: str | None = None) -> None:
        with netns_scope(netns):
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock.bind((0, 0))
        for group in (RTNLGRP_LINK, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE):
            self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
        self._sock.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def read_pending(self) -> bool:
        """Drain what is queued; True if afbr lost a link or route (or notices were lost)."""
        deleted = False
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                return deleted
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    deleted = True
                    continue
                raise
            for msg_type, _flags, _seq, payload in iter_messages(data):
                deleted = deleted or is_afbr_deletion(msg_type, payload)
