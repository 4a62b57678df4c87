"""The kernel objects that realise a desired softwire state (pure; no I/O).

Each `TunnelSpec` becomes one link: gre / ip6gre (RFC 2784, RFC 2890 key), ipip / sit /
ip6tnl (IP-in-IP; RFC 2003, RFC 4213, RFC 2473), or an L2TPv3 tunnel + Ethernet session
whose l2tpeth device carries the softwire's name (RFC 3931, RFC 4719).

Tags: the name starts with `afbr`, the interface alias is `afbr:` + a digest of everything
the kernel object was created from (MTU excepted: it is changed in place).  A restarted
dataplane adopts a link whose alias digest still matches; a link whose parameters changed is
deleted and created again.  L2TP tunnel ids are drawn from 0xAF000000-0xAFFFFFFF, which is
how afbr recognises its own L2TP tunnels.

L2TPv3 carries Ethernet, and a client route needs no next hop on it: every afbr l2tpeth
device is created with the same fixed, locally administered MAC address and with ARP/ND off
(IFF_NOARP), so the kernel addresses every frame to that MAC, which is also the receiving
device's own address.  Client routes then point at the device like on any point-to-point
tunnel (`dev afbrXXXX`), with no neighbour entry and no addresses on the pseudowire.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import struct
from dataclasses import dataclass

from afbr.dataplane.rtnl_wire import RouteKey, attr
from afbr.dataplane.xfrm_wire import IF_ID_MAX, IF_ID_MIN
from afbr.encap.model import L2TP_KINDS, DesiredState, EncapKind, TunnelSpec

ALIAS_PREFIX = "afbr:"
L2TP_LINK_KIND = ""  # l2tpeth devices have no rtnl_link_ops, so no IFLA_INFO_KIND
L2TP_TUNNEL_ID_BASE = 0xAF000000
L2TP_ETH_ADDRESS = bytes.fromhex("02afb7000001")  # locally administered, unicast
TUNNEL_TTL = 64
GRE_KEY_FLAG = 0x2000  # GRE_KEY, big-endian on the wire and in IFLA_GRE_[IO]FLAGS
IP6_TNL_F_IGN_ENCAP_LIMIT = 0x1  # no RFC 2473 §4.1.1 option: keeps the overhead at 40

IFLA_GRE_IFLAGS, IFLA_GRE_OFLAGS, IFLA_GRE_IKEY, IFLA_GRE_OKEY = 2, 3, 4, 5
IFLA_GRE_LOCAL, IFLA_GRE_REMOTE, IFLA_GRE_TTL, IFLA_GRE_PMTUDISC = 6, 7, 8, 10
IFLA_GRE_FLAGS = 13
IFLA_IPTUN_LOCAL, IFLA_IPTUN_REMOTE, IFLA_IPTUN_TTL = 2, 3, 4
IFLA_IPTUN_FLAGS, IFLA_IPTUN_PROTO, IFLA_IPTUN_PMTUDISC = 8, 9, 10
IFLA_XFRM_IF_ID = 2


@dataclass(frozen=True)
class L2tpPlan:
    """An L2TPv3 tunnel with one Ethernet session (RFC 3931 §4.1; static, no control channel)."""

    tunnel_id: int
    over_udp: bool
    local: bytes
    remote: bytes
    local_port: int
    remote_port: int
    session_id: int  # ours: what the remote sends to us
    peer_session_id: int  # theirs: what we send (RFC 9012 §3.2.3)
    cookie: bytes
    peer_cookie: bytes


@dataclass(frozen=True)
class LinkPlan:
    """One device afbr wants, as created and as configured afterwards."""

    name: str
    kind: str  # rtnetlink link kind (L2TP_LINK_KIND for an l2tpeth device)
    info_data: bytes
    mtu: int
    alias: str
    l2tp: L2tpPlan | None = None


@dataclass(frozen=True)
class KernelPlan:
    links: tuple[LinkPlan, ...]
    routes: dict[RouteKey, str]  # prefix -> tunnel name


def route_key(prefix: ipaddress.IPv4Network | ipaddress.IPv6Network) -> RouteKey:
    return (prefix.version, int(prefix.network_address), prefix.prefixlen)


def kernel_plan(desired: DesiredState) -> KernelPlan:
    links = tuple(link_plan(tunnel) for tunnel in desired.tunnels)
    routes = {route.key: route.tunnel for route in desired.routes}
    return KernelPlan(links, routes)


def link_plan(tunnel: TunnelSpec) -> LinkPlan:
    if tunnel.kind in L2TP_KINDS:
        l2tp = _l2tp_plan(tunnel)
        alias = _alias("l2tp", repr(l2tp))
        return LinkPlan(tunnel.name, L2TP_LINK_KIND, b"", tunnel.mtu, alias, l2tp)
    kind, data = _tunnel_info(tunnel)
    return LinkPlan(tunnel.name, kind, data, tunnel.mtu, _alias(kind, data.hex()))


def _alias(kind: str, identity: str) -> str:
    digest = hashlib.sha256(f"{kind}|{identity}".encode()).hexdigest()[:20]
    return ALIAS_PREFIX + digest


def xfrm_if_id(name: str) -> int:
    """The if_id of the xfrm interface of the ESP softwire `name`, in afbr's range; the IKEv2
    agent puts the same one on that peer's SAs and policies (stable across restarts)."""
    value = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
    return IF_ID_MIN + value % (IF_ID_MAX - IF_ID_MIN + 1)


def _tunnel_info(tunnel: TunnelSpec) -> tuple[str, bytes]:
    if tunnel.kind is EncapKind.ESP_TUNNEL:  # route-based IPsec: ESP is done by XFRM
        return "xfrm", attr(IFLA_XFRM_IF_ID, struct.pack("=I", xfrm_if_id(tunnel.name)))
    local, remote = tunnel.local.packed, tunnel.remote.packed
    v6 = tunnel.outer_family == 6
    if tunnel.kind is EncapKind.GRE:
        data = attr(IFLA_GRE_LOCAL, local) + attr(IFLA_GRE_REMOTE, remote)
        data += attr(IFLA_GRE_TTL, bytes([TUNNEL_TTL]))
        if tunnel.local_gre_key is not None:  # RFC 2890 §2.1: what we accept
            data += attr(IFLA_GRE_IFLAGS, struct.pack("!H", GRE_KEY_FLAG))
            data += attr(IFLA_GRE_IKEY, struct.pack("!I", tunnel.local_gre_key))
        if tunnel.offer.gre_key is not None:  # RFC 9012 §3.2.4: what the remote asked for
            data += attr(IFLA_GRE_OFLAGS, struct.pack("!H", GRE_KEY_FLAG))
            data += attr(IFLA_GRE_OKEY, struct.pack("!I", tunnel.offer.gre_key))
        if v6:
            data += attr(IFLA_GRE_FLAGS, struct.pack("=I", IP6_TNL_F_IGN_ENCAP_LIMIT))
            return "ip6gre", data
        return "gre", data + attr(IFLA_GRE_PMTUDISC, b"\x01")
    inner = tunnel.inner_families
    proto = socket.IPPROTO_IPIP if inner == {4} else socket.IPPROTO_IPV6 if inner == {6} else 0
    data = attr(IFLA_IPTUN_LOCAL, local) + attr(IFLA_IPTUN_REMOTE, remote)
    data += attr(IFLA_IPTUN_TTL, bytes([TUNNEL_TTL])) + attr(IFLA_IPTUN_PROTO, bytes([proto]))
    if v6:  # RFC 2473: ipip6 (4), ip6ip6 (41) or both (0)
        return "ip6tnl", data + attr(IFLA_IPTUN_FLAGS, struct.pack("=I", IP6_TNL_F_IGN_ENCAP_LIMIT))
    data += attr(IFLA_IPTUN_PMTUDISC, b"\x01")
    # RFC 2003 IPv4-in-IPv4 is `ipip`; IPv6 (or both) over IPv4 is `sit` (RFC 4213 §3.5)
    return ("ipip" if proto == socket.IPPROTO_IPIP else "sit"), data


def l2tp_tunnel_id(name: str) -> int:
    """An L2TP tunnel id in afbr's range, stable for a tunnel name."""
    value = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
    return L2TP_TUNNEL_ID_BASE | (value & 0x00FFFFFF)


def is_afbr_l2tp_tunnel(tunnel_id: int) -> bool:
    return tunnel_id & 0xFF000000 == L2TP_TUNNEL_ID_BASE


def _l2tp_plan(tunnel: TunnelSpec) -> L2tpPlan:
    offer = tunnel.offer
    return L2tpPlan(
        tunnel_id=l2tp_tunnel_id(tunnel.name),
        over_udp=tunnel.kind is EncapKind.L2TPV3_UDP,
        local=tunnel.local.packed,
        remote=tunnel.remote.packed,
        local_port=tunnel.local_udp_port,
        remote_port=offer.udp_port or tunnel.local_udp_port,
        session_id=tunnel.local_session_id or 0,
        peer_session_id=offer.l2tpv3_session_id or 0,
        cookie=tunnel.local_cookie,
        peer_cookie=offer.l2tpv3_cookie,
    )
