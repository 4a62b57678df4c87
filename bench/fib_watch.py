"""Watch a namespace's IPv4 FIB fill up: when did the last route of one protocol arrive?

Used by bench/wire_to_forwarding.py.  Polling the FIB with dumps while 100k routes go in
would cost the receiver under test a large share of the (single) UML CPU, so the watcher
listens instead: it joins the kernel's IPv4 route notification group (RTNLGRP_IPV4_ROUTE),
notes the arrival time of every RTM_NEWROUTE of the protocol it watches, and dumps the FIB
(one dump, filtered by the kernel to that protocol and the main table) only once the stream
has been quiet for a moment and enough routes were announced.  The end time is the arrival of
the last route notification before the dump that found every route.

The times are those at which the watcher reads the notifications, so it must read them as they
come: while it waits it runs at real-time priority (SCHED_FIFO, this thread only; the receiver
was started before and keeps the normal policy), else a busy receiver on the single UML CPU
delays its reading by seconds and the time measured is the watcher's, not the kernel's.

If the notification socket overflows (ENOBUFS: notifications lost), the watcher falls back to
one dump per quiet period; the end time is then the last activity seen, still an upper bound.

Route protocol numbers (rtm_protocol): afbr 175 (afbr.dataplane.rtnl_wire.RTPROT_AFBR), BIRD
12 (RTPROT_BIRD), FRR's zebra 186 for bgpd's routes (RTPROT_BGP), include/uapi/linux/rtnetlink.h.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator

from afbr.dataplane.rtnl_socket import NetlinkPipe
from afbr.dataplane.rtnl_wire import (
    NLM_F_DUMP,
    RT_TABLE_MAIN,
    RTA_TABLE,
    RTM_GETROUTE,
    RTM_NEWROUTE,
    RTMSG,
    attr,
    iter_messages,
    message,
)
from afbr.dataplane.xfrm_socket import netns_scope

RTNLGRP_IPV4_ROUTE = 7  # rtnetlink.h
SO_RCVBUFFORCE = 33
RTPROT_BIRD = 12
RTPROT_BGP = 186  # FRR's zebra, routes from bgpd
RTM_PROTOCOL_OFFSET = 5  # struct rtmsg: family, dst_len, src_len, tos, table, protocol
RTM_TABLE_OFFSET = 4


@contextlib.contextmanager
def realtime_priority() -> Iterator[None]:
    """SCHED_FIFO for the calling thread while inside (see the module docstring)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:  # not root, or no real-time scheduling: measure anyway, a little late
        yield
        return
    try:
        yield
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


class WatchError(RuntimeError):
    """The routes did not all arrive (timeout, or the receiver died)."""


def route_dump_request(seq: int, proto: int) -> bytes:
    """RTM_GETROUTE dump of the IPv4 main table, filtered by the kernel to `proto`."""
    payload = RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, proto, 0, 0, 0) + attr(
        RTA_TABLE, struct.pack("=I", RT_TABLE_MAIN)
    )
    return message(RTM_GETROUTE, NLM_F_DUMP, seq, payload)


def count_new_routes(buffer: bytes | memoryview, proto: int) -> int:
    """RTM_NEWROUTE messages of `proto` in the main table, in one receive buffer."""
    found = 0
    for msg_type, _flags, _seq, payload in iter_messages(buffer):
        if (
            msg_type == RTM_NEWROUTE
            and len(payload) > RTM_PROTOCOL_OFFSET
            and payload[RTM_PROTOCOL_OFFSET] == proto
            and payload[RTM_TABLE_OFFSET] == RT_TABLE_MAIN
        ):
            found += 1
    return found


class FibWatch:
    """Route notifications and dumps of one namespace, for one route protocol."""

    def __init__(self, netns: str, proto: int) -> None:
        self.proto = proto
        with netns_scope(netns):
            self._events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._events.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 27)
        self._events.bind((0, 1 << (RTNLGRP_IPV4_ROUTE - 1)))
        self._events.setblocking(False)
        self._pipe = NetlinkPipe(netns=netns)
        self._buffer = bytearray(1 << 20)
        self.announced = 0  # RTM_NEWROUTE notifications of our protocol (replacements too)
        self.overrun = False
        self.last_route: float | None = None  # time.time() of the last one
        self.dumps = 0

    def close(self) -> None:
        self._events.close()
        self._pipe.close()

    def __enter__(self) -> FibWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def count(self) -> int:
        """The routes of our protocol in the main table now (one dump)."""
        self.dumps += 1
        return sum(
            count_new_routes(b, self.proto)
            for b in self._pipe.dump(lambda seq: route_dump_request(seq, self.proto))
        )

    def drain(self) -> bool:
        """Read every pending notification; True if any arrived."""
        got = False
        while True:
            try:
                size = self._events.recv_into(self._buffer)
            except BlockingIOError:
                return got
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.overrun, got = True, True
                self.last_route = time.time()
                continue
            got = True
            found = count_new_routes(memoryview(self._buffer)[:size], self.proto)
            if found:
                self.announced += found
                self.last_route = time.time()

    def wait_all(
        self, expected: int, *, alive: Callable[[], bool], timeout: float, quiet: float = 0.05
    ) -> float:
        """time.time() when the last of `expected` routes arrived in the FIB."""
        with realtime_priority():
            return self._wait_all(expected, alive=alive, timeout=timeout, quiet=quiet)

    def _wait_all(
        self, expected: int, *, alive: Callable[[], bool], timeout: float, quiet: float
    ) -> float:
        deadline = time.monotonic() + timeout
        checked_at: float | None = None  # last_route when the FIB was last dumped
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._events], [], [], quiet)
            if ready and self.drain():
                continue
            enough = self.announced >= expected or self.overrun
            if enough and self.last_route != checked_at:
                checked_at = self.last_route
                if self.count() >= expected and self.last_route is not None:
                    return self.last_route
            if not alive():
                raise WatchError(f"the receiver exited with {self.announced} routes announced")
        raise WatchError(
            f"timed out after {timeout:.0f}s: {self.announced} of {expected} routes announced"
        )
