"""The encap manager's own input and output types (decoupled from the BGP codec and the kernel).

Inputs: `RemotePath` (a remote AFBR's client prefix with its SW-NHOP and the encapsulations it
offered) and `LocalEncapPolicy` (this AFBR's preference order and its own parameters).  Output:
`DesiredState` — tunnels, routes, filter sets and IPsec needs — which the dataplane reconciles
against the kernel.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from typing import NamedTuple

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Interface names of everything afbr creates start with this (IFNAMSIZ allows 15 characters).
NAME_PREFIX = "afbr"
L2TP_DEFAULT_UDP_PORT = 1701  # RFC 3931 §4.1.2.2 (UDP port of L2TP)


class EncapKind(enum.IntEnum):
    """The softwire encapsulations afbr builds (RFC 5565 §4.1, §4.2).

    Not an IANA registry: L2TPv3 over UDP is tunnel type 1 (RFC 9012 §3.2.3) with a UDP
    Destination Port sub-TLV (RFC 9012 §3.3.2); the adapter in `offers` maps code points here.
    """

    GRE = 1  # RFC 9012 tunnel type 2
    IP_IN_IP = 2  # RFC 9012 tunnel type 7
    L2TPV3_IP = 3  # RFC 9012 tunnel type 1, IP protocol 115 (RFC 3931 §4.1.1.1)
    L2TPV3_UDP = 4  # RFC 9012 tunnel type 1 + UDP Destination Port (RFC 3931 §4.1.2.2)
    # RFC 5566 §2 tunnel type 4: client packets in ESP tunnel mode, route-based: an xfrm
    # interface per remote AFBR whose SAs the IKEv2 agent installs (DESIGN "Route-based IPsec")
    ESP_TUNNEL = 5


L2TP_KINDS = frozenset({EncapKind.L2TPV3_IP, EncapKind.L2TPV3_UDP})


class IpsecMode(enum.IntEnum):
    """What IPsec a tunnel needs (RFC 5566; RFC 5619 §4.4)."""

    NONE = 0
    TRANSPORT = 1  # ESP transport mode protecting the outer packets (RFC 5566 §2, type 5)
    TUNNEL = 2  # ESP tunnel mode carrying the client packets (RFC 5566 §2, type 4)


class EncapError(ValueError):
    """A policy or an offer the encap manager cannot use (the message says which)."""


@dataclass(frozen=True)
class EncapOffer:
    """One encapsulation a remote AFBR advertised, with the parameters it asked for."""

    kind: EncapKind
    gre_key: int | None = None  # RFC 9012 §3.2.4: sent in our GRE header towards it
    l2tpv3_session_id: int | None = None  # RFC 9012 §3.2.3: its session id
    l2tpv3_cookie: bytes = b""  # RFC 9012 §3.2.3: 0, 4 or 8 octets
    udp_port: int | None = None  # RFC 9012 §3.3.2: destination port (L2TPv3 over UDP)


class RemotePath(NamedTuple):
    """A best path: a remote client prefix, its softwire next hop and its SW-Encap set.

    `key`: the prefix as (IP version, network address as an int, prefix length), if the caller
    has it at hand (afbr.daemon.softwire_sync caches it with the parsed prefix); else the
    encap manager computes it.  A NamedTuple: the daemon builds one per prefix per reconcile.
    """

    prefix: IPNetwork
    endpoint: IPAddress  # SW-NHOP / Tunnel Egress Endpoint (RFC 5565 §5; RFC 9012 §3.1)
    encaps: tuple[EncapOffer, ...]
    afbr_id: str = ""  # the remote AFBR (e.g. its BGP identifier), for diagnostics only
    key: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class LocalEncapPolicy:
    """This AFBR's side: preference order, its own advertised parameters, MTU and IPsec.

    `l2tpv3_session_id`/`l2tpv3_cookie`/`gre_key`/`l2tpv3_udp_port` are what this AFBR
    advertises, so what it expects on received packets.
    """

    preference: tuple[EncapKind, ...] = (EncapKind.GRE, EncapKind.IP_IN_IP)
    local_v4: ipaddress.IPv4Address | None = None  # outer source over an IPv4 core
    local_v6: ipaddress.IPv6Address | None = None  # outer source over an IPv6 core
    gre_key: int | None = None
    l2tpv3_session_id: int | None = None
    l2tpv3_cookie: bytes = b""
    l2tpv3_udp_port: int = L2TP_DEFAULT_UDP_PORT
    underlay_mtu: int = 1500  # RFC 5565 §4.3
    extra_overhead: int = 0  # e.g. room for ESP (RFC 5565 §4.3: configurable)
    ipsec: IpsecMode = IpsecMode.NONE
    bgp_neighbors: frozenset[IPAddress] = frozenset()


@dataclass(frozen=True)
class TunnelSpec:
    """One softwire towards one remote endpoint with one encapsulation."""

    name: str
    kind: EncapKind
    local: IPAddress
    remote: IPAddress
    offer: EncapOffer  # the remote's parameters (what we send)
    local_gre_key: int | None  # what we expect to receive
    local_session_id: int | None
    local_cookie: bytes
    local_udp_port: int
    inner_families: frozenset[int]  # 4 and/or 6: the client families it carries
    mtu: int

    @property
    def outer_family(self) -> int:
        return self.remote.version


class RouteSpec(NamedTuple):
    """A remote client prefix routed into a softwire.

    `key` is (IP version, network address as an int, prefix length): the order routes are
    kept in and the dataplane's key, computed once by the encap manager.  A NamedTuple, not a
    dataclass: 100k of them are built per reconcile, and a tuple builds several times faster.
    """

    prefix: IPNetwork
    tunnel: str
    key: tuple[int, int, int]


@dataclass(frozen=True)
class IpsecNeed:
    """IPsec a tunnel needs: for the ipsec/ module (SAs) and the XFRM adapter."""

    tunnel: str
    local: IPAddress
    remote: IPAddress
    mode: IpsecMode


@dataclass(frozen=True)
class FilterSpec:
    """The sets the decapsulation filter and access control are rendered from (RFC 5619 §3.3)."""

    tunnel_sources: tuple[tuple[str, tuple[IPNetwork, ...]], ...] = ()  # by tunnel name
    afbr_endpoints: frozenset[IPAddress] = frozenset()
    bgp_neighbors: frozenset[IPAddress] = frozenset()
    l2tp_udp_ports: frozenset[int] = frozenset({L2TP_DEFAULT_UDP_PORT})


@dataclass(frozen=True)
class DesiredState:
    """Everything the dataplane should hold, derived from the RIB and the local config."""

    tunnels: tuple[TunnelSpec, ...] = ()
    routes: tuple[RouteSpec, ...] = ()
    filters: FilterSpec = field(default_factory=FilterSpec)
    ipsec: tuple[IpsecNeed, ...] = ()
    unusable: tuple[RemotePath, ...] = ()  # paths with no encapsulation in common
