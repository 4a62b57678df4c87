"""Generic-netlink messages of the kernel's L2TP family (include/uapi/linux/l2tp.h).

Static L2TPv3 (RFC 3931) tunnels and Ethernet pseudowire sessions (RFC 4719): no control
connection, parameters from BGP (RFC 9012 §3.2.3).
"""

from __future__ import annotations

import struct

from afbr.dataplane.kernel_plan import L2tpPlan
from afbr.dataplane.rtnl_wire import NLM_F_ACK, NLM_F_DUMP, attr, genl_message

L2TP_GENL_NAME = "l2tp"
L2TP_CMD_TUNNEL_CREATE, L2TP_CMD_TUNNEL_DELETE, L2TP_CMD_TUNNEL_GET = 1, 2, 4
L2TP_CMD_SESSION_CREATE, L2TP_CMD_SESSION_DELETE, L2TP_CMD_SESSION_GET = 5, 6, 8
L2TP_ATTR_PW_TYPE, L2TP_ATTR_ENCAP_TYPE, L2TP_ATTR_L2SPEC_TYPE = 1, 2, 5
L2TP_ATTR_PROTO_VERSION, L2TP_ATTR_IFNAME = 7, 8
L2TP_ATTR_CONN_ID, L2TP_ATTR_PEER_CONN_ID = 9, 10
L2TP_ATTR_SESSION_ID, L2TP_ATTR_PEER_SESSION_ID = 11, 12
L2TP_ATTR_COOKIE, L2TP_ATTR_PEER_COOKIE = 15, 16
L2TP_ATTR_IP_SADDR, L2TP_ATTR_IP_DADDR = 24, 25
L2TP_ATTR_UDP_SPORT, L2TP_ATTR_UDP_DPORT = 26, 27
L2TP_ATTR_IP6_SADDR, L2TP_ATTR_IP6_DADDR = 31, 32
L2TP_ENCAPTYPE_UDP, L2TP_ENCAPTYPE_IP = 0, 1
L2TP_PWTYPE_ETH = 5
L2TP_L2SPECTYPE_NONE = 0
L2TP_VERSION_3 = 3


def _u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def _u16(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=H", value))


def tunnel_create(family_id: int, seq: int, plan: L2tpPlan) -> bytes:
    v6 = len(plan.local) == 16
    data = _u32(L2TP_ATTR_CONN_ID, plan.tunnel_id) + _u32(L2TP_ATTR_PEER_CONN_ID, plan.tunnel_id)
    data += attr(L2TP_ATTR_PROTO_VERSION, bytes([L2TP_VERSION_3]))
    encap = L2TP_ENCAPTYPE_UDP if plan.over_udp else L2TP_ENCAPTYPE_IP
    data += _u16(L2TP_ATTR_ENCAP_TYPE, encap)
    data += attr(L2TP_ATTR_IP6_SADDR if v6 else L2TP_ATTR_IP_SADDR, plan.local)
    data += attr(L2TP_ATTR_IP6_DADDR if v6 else L2TP_ATTR_IP_DADDR, plan.remote)
    if plan.over_udp:  # RFC 3931 §4.1.2.2
        data += _u16(L2TP_ATTR_UDP_SPORT, plan.local_port)
        data += _u16(L2TP_ATTR_UDP_DPORT, plan.remote_port)
    return genl_message(family_id, L2TP_CMD_TUNNEL_CREATE, NLM_F_ACK, seq, data)


def session_create(family_id: int, seq: int, plan: L2tpPlan, ifname: str) -> bytes:
    data = _u32(L2TP_ATTR_CONN_ID, plan.tunnel_id)
    data += _u32(L2TP_ATTR_SESSION_ID, plan.session_id)
    data += _u32(L2TP_ATTR_PEER_SESSION_ID, plan.peer_session_id)
    data += _u16(L2TP_ATTR_PW_TYPE, L2TP_PWTYPE_ETH)  # RFC 4719
    data += attr(L2TP_ATTR_L2SPEC_TYPE, bytes([L2TP_L2SPECTYPE_NONE]))
    if plan.cookie:  # RFC 3931 §4.1: the cookie we expect
        data += attr(L2TP_ATTR_COOKIE, plan.cookie)
    if plan.peer_cookie:  # the cookie the remote asked for (RFC 9012 §3.2.3)
        data += attr(L2TP_ATTR_PEER_COOKIE, plan.peer_cookie)
    data += attr(L2TP_ATTR_IFNAME, ifname.encode() + b"\0")
    return genl_message(family_id, L2TP_CMD_SESSION_CREATE, NLM_F_ACK, seq, data)


def tunnel_delete(family_id: int, seq: int, tunnel_id: int) -> bytes:
    data = _u32(L2TP_ATTR_CONN_ID, tunnel_id)
    return genl_message(family_id, L2TP_CMD_TUNNEL_DELETE, NLM_F_ACK, seq, data)


def tunnel_dump(family_id: int, seq: int) -> bytes:
    return genl_message(family_id, L2TP_CMD_TUNNEL_GET, NLM_F_DUMP, seq, b"")


def session_delete(family_id: int, seq: int, *, tunnel_id: int, session_id: int) -> bytes:
    data = _u32(L2TP_ATTR_CONN_ID, tunnel_id) + _u32(L2TP_ATTR_SESSION_ID, session_id)
    return genl_message(family_id, L2TP_CMD_SESSION_DELETE, NLM_F_ACK, seq, data)


def session_dump(family_id: int, seq: int) -> bytes:
    return genl_message(family_id, L2TP_CMD_SESSION_GET, NLM_F_DUMP, seq, b"")
