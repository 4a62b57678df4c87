"""The decoded Tunnel Encapsulation attribute: tunnels, their sub-TLVs, and builders.

A :class:`Tunnel` is one Tunnel TLV (RFC 9012 §2); its convenience properties read the first
well-formed sub-TLV of each kind, which is what RFC 9012 §13 asks of repeated sub-TLVs ("all
but the first occurrence ... MUST be disregarded").  The builders make the TLVs a local AFBR
announces as its SW-Encap set (RFC 5565 §5), in the order given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import TypeVar

from afbr.bgp.tunnel_encap_errors import DecodeWarning, ErrorHandling
from afbr.bgp.tunnel_encap_sub_tlvs import (
    Authenticator,
    Color,
    GreKey,
    L2tpv3Encapsulation,
    ProtocolType,
    RawSubTlv,
    SubTlv,
    TunnelEgressEndpoint,
    UdpDestinationPort,
)
from afbr.bgp.tunnel_encap_types import SubTlvType, TunnelType, known_or_int

_SubTlvClass = TypeVar("_SubTlvClass")

# Which tunnel types an Encapsulation sub-TLV class belongs to (RFC 9012 §3.2).
_ENCAPSULATION_TUNNEL_TYPE: dict[type, TunnelType] = {
    GreKey: TunnelType.GRE,
    L2tpv3Encapsulation: TunnelType.L2TPV3_OVER_IP,
}


def _check_sub_tlv_placement(tunnel_type: int, sub_tlv: SubTlv) -> None:
    owner = _ENCAPSULATION_TUNNEL_TYPE.get(type(sub_tlv))
    if owner is not None and owner != tunnel_type:
        raise ValueError(f"{type(sub_tlv).__name__} belongs in a {owner.name} tunnel")


@dataclass(frozen=True, slots=True)
class Tunnel:
    """One Tunnel TLV: a tunnel type and its sub-TLVs in wire order."""

    tunnel_type: int  # a TunnelType member where known
    sub_tlvs: tuple[SubTlv, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.tunnel_type <= 0xFFFF:
            raise ValueError(f"tunnel type {self.tunnel_type} does not fit in 2 octets")
        # Frozen: set the field once, so a known type always reads as its TunnelType member.
        object.__setattr__(self, "tunnel_type", known_or_int(TunnelType, self.tunnel_type))
        for sub_tlv in self.sub_tlvs:
            _check_sub_tlv_placement(self.tunnel_type, sub_tlv)

    # -- reading ------------------------------------------------------------------------

    def first(self, kind: type[_SubTlvClass]) -> _SubTlvClass | None:
        """The first sub-TLV of class `kind`: the one RFC 9012 §13 says counts."""
        for sub_tlv in self.sub_tlvs:
            if isinstance(sub_tlv, kind):
                return sub_tlv
        return None

    @property
    def is_known_type(self) -> bool:
        return isinstance(self.tunnel_type, TunnelType)

    @property
    def gre_key(self) -> int | None:
        found = self.first(GreKey)
        return None if found is None else found.key

    @property
    def l2tpv3_session_id(self) -> int | None:
        found = self.first(L2tpv3Encapsulation)
        return None if found is None else found.session_id

    @property
    def l2tpv3_cookie(self) -> bytes | None:
        found = self.first(L2tpv3Encapsulation)
        return None if found is None else found.cookie

    @property
    def protocol_type(self) -> int | None:
        found = self.first(ProtocolType)
        return None if found is None else found.ethertype

    @property
    def authenticator(self) -> Authenticator | None:
        return self.first(Authenticator)

    @property
    def egress_endpoint(self) -> IPv4Address | IPv6Address | None:
        """The endpoint address, or None: absent, or "the BGP next hop" (RFC 9012 §3.1)."""
        found = self.first(TunnelEgressEndpoint)
        return None if found is None else found.address

    @property
    def egress_endpoint_count(self) -> int:
        """Tunnel Egress Endpoint sub-TLVs, well-formed or not (RFC 9012 §3.1 wants one)."""
        return sum(
            1 for sub in self.sub_tlvs if sub.sub_tlv_type == SubTlvType.TUNNEL_EGRESS_ENDPOINT
        )

    @property
    def color(self) -> int | None:
        found = self.first(Color)
        return None if found is None else found.color

    @property
    def colors(self) -> tuple[int, ...]:
        return tuple(sub.color for sub in self.sub_tlvs if isinstance(sub, Color))

    @property
    def udp_port(self) -> int | None:
        found = self.first(UdpDestinationPort)
        return None if found is None else found.port

    # -- building -----------------------------------------------------------------------

    @classmethod
    def gre(
        cls,
        *,
        key: int | None = None,
        protocol_type: int | None = None,
        authenticator: Authenticator | None = None,
        color: int | None = None,
        egress_endpoint: IPv4Address | IPv6Address | None = None,
    ) -> Tunnel:
        """A GRE tunnel; the Encapsulation sub-TLV only with a key (RFC 9012 §3.2.4)."""
        encapsulation = () if key is None else (GreKey(key),)
        return cls(
            TunnelType.GRE,
            encapsulation + _common_sub_tlvs(protocol_type, authenticator, color, egress_endpoint),
        )

    @classmethod
    def l2tpv3(
        cls,
        *,
        session_id: int,
        cookie: bytes = b"",
        protocol_type: int | None = None,
        authenticator: Authenticator | None = None,
        color: int | None = None,
        egress_endpoint: IPv4Address | IPv6Address | None = None,
    ) -> Tunnel:
        """An L2TPv3-over-IP tunnel with its session id and 0-, 4- or 8-octet cookie."""
        return cls(
            TunnelType.L2TPV3_OVER_IP,
            (
                L2tpv3Encapsulation(session_id, cookie),
                *_common_sub_tlvs(protocol_type, authenticator, color, egress_endpoint),
            ),
        )

    @classmethod
    def ip_in_ip(
        cls,
        *,
        protocol_type: int | None = None,
        authenticator: Authenticator | None = None,
        color: int | None = None,
        egress_endpoint: IPv4Address | IPv6Address | None = None,
    ) -> Tunnel:
        """An IP-in-IP tunnel (RFC 9012 §3.2: it has no Encapsulation sub-TLV)."""
        return cls(
            TunnelType.IP_IN_IP,
            _common_sub_tlvs(protocol_type, authenticator, color, egress_endpoint),
        )

    @classmethod
    def ipsec_tunnel_mode(
        cls,
        *,
        authenticator: Authenticator | None = None,
        protocol_type: int | None = None,
        egress_endpoint: IPv4Address | IPv6Address | None = None,
    ) -> Tunnel:
        """ESP in tunnel mode carrying the client packets (RFC 5566 §2, tunnel type 4)."""
        return cls(
            TunnelType.IPSEC_TUNNEL_MODE,
            _common_sub_tlvs(protocol_type, authenticator, None, egress_endpoint),
        )

    @classmethod
    def ip_in_ip_ipsec_transport(
        cls,
        *,
        authenticator: Authenticator | None = None,
        protocol_type: int | None = None,
        egress_endpoint: IPv4Address | IPv6Address | None = None,
    ) -> Tunnel:
        """IP-in-IP protected by ESP in transport mode (RFC 5566 §2, tunnel type 5)."""
        return cls(
            TunnelType.IP_IN_IP_IPSEC_TRANSPORT_MODE,
            _common_sub_tlvs(protocol_type, authenticator, None, egress_endpoint),
        )

    def with_authenticator(self, authenticator: Authenticator) -> Tunnel:
        """This tunnel with `authenticator` as its only IPsec Tunnel Authenticator sub-TLV."""
        kept = tuple(sub for sub in self.sub_tlvs if not isinstance(sub, Authenticator))
        return Tunnel(self.tunnel_type, _insert_in_type_order(kept, authenticator))

    def with_sub_tlv(self, sub_tlv: SubTlv) -> Tunnel:
        """This tunnel with `sub_tlv` added after the sub-TLVs of lower or equal type."""
        return Tunnel(self.tunnel_type, _insert_in_type_order(self.sub_tlvs, sub_tlv))


def _insert_in_type_order(existing: tuple[SubTlv, ...], sub_tlv: SubTlv) -> tuple[SubTlv, ...]:
    at = sum(1 for sub in existing if sub.sub_tlv_type <= sub_tlv.sub_tlv_type)
    return (*existing[:at], sub_tlv, *existing[at:])


def _common_sub_tlvs(
    protocol_type: int | None,
    authenticator: Authenticator | None,
    color: int | None,
    egress_endpoint: IPv4Address | IPv6Address | None,
) -> tuple[SubTlv, ...]:
    """The non-encapsulation sub-TLVs in type order."""
    result: list[SubTlv] = []
    if protocol_type is not None:
        result.append(ProtocolType(protocol_type))
    if authenticator is not None:
        result.append(authenticator)
    if color is not None:
        result.append(Color(color))
    if egress_endpoint is not None:
        result.append(TunnelEgressEndpoint(egress_endpoint))
    return tuple(result)


@dataclass(frozen=True, slots=True)
class TunnelEncapAttribute:
    """The value of path attribute 23: Tunnel TLVs in the order the originator prefers.

    `warnings` lists what decoding set aside under RFC 9012 §13 while keeping the octets (so
    re-encoding is exact); it takes no part in equality.
    """

    tunnels: tuple[Tunnel, ...]
    warnings: tuple[DecodeWarning, ...] = field(default=(), compare=False)

    @property
    def discarded_tunnel_indexes(self) -> frozenset[int]:
        """Tunnels to ignore and remove before propagating (RFC 9012 §13)."""
        return frozenset(
            warning.tunnel_index
            for warning in self.warnings
            if warning.handling == ErrorHandling.DISCARD_TLV
        )

    @property
    def usable_tunnels(self) -> tuple[Tunnel, ...]:
        """Tunnels of a known type that were not discarded, in the originator's order."""
        discarded = self.discarded_tunnel_indexes
        return tuple(
            tunnel
            for index, tunnel in enumerate(self.tunnels)
            if tunnel.is_known_type and index not in discarded
        )

    def for_propagation(self) -> TunnelEncapAttribute:
        """The attribute to pass on: discarded TLVs removed, everything else kept."""
        discarded = self.discarded_tunnel_indexes
        kept = tuple(t for i, t in enumerate(self.tunnels) if i not in discarded)
        return TunnelEncapAttribute(kept)

    def find(self, tunnel_type: int) -> Tunnel | None:
        """The first usable tunnel of `tunnel_type`."""
        for tunnel in self.usable_tunnels:
            if tunnel.tunnel_type == tunnel_type:
                return tunnel
        return None


__all__ = [
    "Authenticator",
    "Color",
    "GreKey",
    "L2tpv3Encapsulation",
    "ProtocolType",
    "RawSubTlv",
    "SubTlv",
    "Tunnel",
    "TunnelEgressEndpoint",
    "TunnelEncapAttribute",
    "UdpDestinationPort",
]
