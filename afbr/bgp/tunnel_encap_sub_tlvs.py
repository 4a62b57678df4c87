"""The sub-TLVs of a Tunnel TLV (RFC 9012 §3, RFC 5566 §4), each a frozen dataclass.

A sub-TLV this module does not know, or knows but finds malformed, is kept as a
:class:`RawSubTlv` with its value octets, so that re-encoding gives back exactly what was read
(RFC 9012 §13: unrecognized and malformed sub-TLVs are ignored yet stay in the attribute).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar

from afbr.bgp.tunnel_encap_types import (
    AuthenticatorType,
    EndpointAddressFamily,
    EtherType,
    SubTlvType,
    TunnelType,
)

SHA1_DIGEST_SIZE = 20
COLOR_COMMUNITY_TYPE = b"\x03\x0b"  # Color Extended Community: type 0x03, sub-type 0x0b
L2TPV3_COOKIE_SIZES = (0, 4, 8)  # RFC 3931 §4.1: no cookie, 32-bit or 64-bit


def _check_uint(name: str, value: int, size: int) -> None:
    if not 0 <= value < 1 << (8 * size):
        raise ValueError(f"{name} {value} does not fit in {size} octets")


@dataclass(frozen=True, slots=True)
class GreKey:
    """GRE Encapsulation sub-TLV: the 4-octet GRE key (RFC 9012 §3.2.4, RFC 5512 §4.1)."""

    sub_tlv_type: ClassVar[SubTlvType] = SubTlvType.ENCAPSULATION
    key: int

    def __post_init__(self) -> None:
        _check_uint("GRE key", self.key, 4)

    def value_bytes(self) -> bytes:
        return self.key.to_bytes(4, "big")


@dataclass(frozen=True, slots=True)
class L2tpv3Encapsulation:
    """L2TPv3 Encapsulation sub-TLV: session id and cookie (RFC 9012 §3.2.3, RFC 5512 §4.1)."""

    sub_tlv_type: ClassVar[SubTlvType] = SubTlvType.ENCAPSULATION
    session_id: int
    cookie: bytes = b""

    def __post_init__(self) -> None:
        _check_uint("L2TPv3 session id", self.session_id, 4)
        if len(self.cookie) not in L2TPV3_COOKIE_SIZES:
            raise ValueError(f"L2TPv3 cookie of {len(self.cookie)} octets: 0, 4 or 8 expected")

    def value_bytes(self) -> bytes:
        return self.session_id.to_bytes(4, "big") + self.cookie


@dataclass(frozen=True, slots=True)
class ProtocolType:
    """Protocol Type sub-TLV: the Ethertype of the payload (RFC 9012 §3.4.1)."""

    sub_tlv_type: ClassVar[SubTlvType] = SubTlvType.PROTOCOL_TYPE
    ethertype: int

    def __post_init__(self) -> None:
        _check_uint("Ethertype", self.ethertype, 2)

    def value_bytes(self) -> bytes:
        return self.ethertype.to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class Authenticator:
    """IPsec Tunnel Authenticator sub-TLV: type and authenticator octets (RFC 5566 §4)."""

    sub_tlv_type: ClassVar[SubTlvType] = SubTlvType.IPSEC_TUNNEL_AUTHENTICATOR
    authenticator_type: int
    value: bytes

    def __post_init__(self) -> None:
        _check_uint("authenticator type", self.authenticator_type, 2)
        if (
            self.authenticator_type == AuthenticatorType.SHA1_PUBLIC_KEY
            and len(self.value) != SHA1_DIGEST_SIZE
        ):
            raise ValueError(f"a SHA-1 authenticator has 20 octets, not {len(self.value)}")

    def value_bytes(self) -> bytes:
        return self.authenticator_type.to_bytes(2, "big") + self.value


@dataclass(frozen=True, slots=True)
class Color:
    """Color sub-TLV: a Color Extended Community (RFC 9012 §3.4.2, §4.3)."""

    sub_tlv_type: ClassVar[SubTlvType] = SubTlvType.COLOR
    color: int
    flags: int = 0  # RFC 9012 §4.3: none defined; kept as received

    def __post_init__(self) -> None:
        _check_uint("color", self.color, 4)
        _check_uint("color flags", self.flags, 2)

    def value_bytes(self) -> bytes:
        return COLOR_COMMUNITY_TYPE + self.flags.to_bytes(2, "big") + self.color.to_bytes(4, "big")


@dataclass(frozen=True, slots=True)
class TunnelEgressEndpoint:
    """Tunnel Egress Endpoint sub-TLV (RFC 9012 §3.1); no address means the BGP next hop."""

    sub_tlv_type: ClassVar[SubTlvType] = SubTlvType.TUNNEL_EGRESS_ENDPOINT
    address: IPv4Address | IPv6Address | None
    reserved: int = 0  # RFC 9012 §3.1: disregarded on receipt, propagated unchanged

    def __post_init__(self) -> None:
        _check_uint("reserved field", self.reserved, 4)

    @property
    def address_family(self) -> EndpointAddressFamily:
        if self.address is None:
            return EndpointAddressFamily.NEXT_HOP
        if self.address.version == 4:
            return EndpointAddressFamily.IPV4
        return EndpointAddressFamily.IPV6

    def value_bytes(self) -> bytes:
        head = self.reserved.to_bytes(4, "big") + self.address_family.to_bytes(2, "big")
        return head if self.address is None else head + self.address.packed


@dataclass(frozen=True, slots=True)
class UdpDestinationPort:
    """UDP Destination Port sub-TLV (RFC 9012 §3.3.2)."""

    sub_tlv_type: ClassVar[SubTlvType] = SubTlvType.UDP_DESTINATION_PORT
    port: int

    def __post_init__(self) -> None:
        _check_uint("UDP port", self.port, 2)

    def value_bytes(self) -> bytes:
        return self.port.to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class RawSubTlv:
    """A sub-TLV kept as its octets: unrecognized here, or recognized but malformed."""

    sub_tlv_type: int
    value: bytes

    def __post_init__(self) -> None:
        _check_uint("sub-TLV type", self.sub_tlv_type, 1)

    def value_bytes(self) -> bytes:
        return self.value


SubTlv = (
    GreKey
    | L2tpv3Encapsulation
    | ProtocolType
    | Authenticator
    | Color
    | TunnelEgressEndpoint
    | UdpDestinationPort
    | RawSubTlv
)


class MalformedSubTlv(Exception):
    """A recognized sub-TLV whose value breaks its definition (internal to the decoder)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _decode_encapsulation(tunnel_type: int, value: bytes) -> SubTlv:
    if tunnel_type == TunnelType.GRE:
        if len(value) != 4:  # RFC 9012 §3.2.4
            raise MalformedSubTlv(f"GRE Encapsulation sub-TLV of {len(value)} octets, not 4")
        return GreKey(int.from_bytes(value, "big"))
    if tunnel_type == TunnelType.L2TPV3_OVER_IP:
        cookie_size = len(value) - 4
        if cookie_size not in L2TPV3_COOKIE_SIZES:  # RFC 9012 §3.2.3, RFC 3931 §4.1
            raise MalformedSubTlv(
                f"L2TPv3 Encapsulation sub-TLV of {len(value)} octets: 4, 8 or 12 expected"
            )
        return L2tpv3Encapsulation(int.from_bytes(value[:4], "big"), value[4:])
    # RFC 9012 §3.3: an Encapsulation sub-TLV of a tunnel type without one is unrecognized.
    return RawSubTlv(SubTlvType.ENCAPSULATION, value)


def _decode_protocol_type(value: bytes) -> ProtocolType:
    if len(value) != 2:
        raise MalformedSubTlv(f"Protocol Type sub-TLV of {len(value)} octets, not 2")
    ethertype = int.from_bytes(value, "big")
    if ethertype == EtherType.RESERVED:  # RFC 9012 §3.4.1
        raise MalformedSubTlv("Protocol Type sub-TLV holds the reserved value 0xffff")
    return ProtocolType(ethertype)


def _decode_authenticator(value: bytes) -> Authenticator:
    if len(value) < 2:  # RFC 5566 §4
        raise MalformedSubTlv(f"IPsec Tunnel Authenticator sub-TLV of {len(value)} octets")
    authenticator_type = int.from_bytes(value[:2], "big")
    digest = value[2:]
    if authenticator_type == AuthenticatorType.SHA1_PUBLIC_KEY and len(digest) != 20:
        raise MalformedSubTlv(f"SHA-1 authenticator of {len(digest)} octets, not 20")
    return Authenticator(authenticator_type, digest)


def _decode_color(value: bytes) -> Color:
    # RFC 9012 §3.4.2: any other length or community type is treated as unrecognized.
    if len(value) != 8 or value[:2] != COLOR_COMMUNITY_TYPE:
        raise MalformedSubTlv("Color sub-TLV is not an 8-octet Color Extended Community")
    return Color(color=int.from_bytes(value[4:], "big"), flags=int.from_bytes(value[2:4], "big"))


def is_martian(address: IPv4Address | IPv6Address) -> bool:
    """An address that cannot be a tunnel's egress endpoint (RFC 9012 §3.1 "Martians")."""
    if address.is_unspecified or address.is_multicast or address.is_loopback:
        return True
    if address.is_link_local:
        return True
    if isinstance(address, IPv4Address):
        return address.packed[0] == 0 or address.packed[0] >= 240  # 0/8; 240/4 and broadcast
    return False


_ENDPOINT_ADDRESS_SIZES: dict[int, int] = {
    EndpointAddressFamily.NEXT_HOP: 0,
    EndpointAddressFamily.IPV4: 4,
    EndpointAddressFamily.IPV6: 16,
}


def _decode_egress_endpoint(value: bytes) -> TunnelEgressEndpoint:
    if len(value) < 6:  # RFC 9012 §3.1: Reserved (4) + Address Family (2) + Address
        raise MalformedSubTlv(f"Tunnel Egress Endpoint sub-TLV of {len(value)} octets")
    reserved = int.from_bytes(value[:4], "big")
    family = int.from_bytes(value[4:6], "big")
    address_octets = value[6:]
    expected = _ENDPOINT_ADDRESS_SIZES.get(family)
    if expected is None:
        raise MalformedSubTlv(f"Tunnel Egress Endpoint of unknown address family {family}")
    if len(address_octets) != expected:
        raise MalformedSubTlv(
            f"Tunnel Egress Endpoint of address family {family} with a "
            f"{len(address_octets)}-octet address, {expected} expected"
        )
    if family == EndpointAddressFamily.NEXT_HOP:
        return TunnelEgressEndpoint(None, reserved)
    address = ipaddress.ip_address(address_octets)
    if is_martian(address):  # RFC 9012 §3.1
        raise MalformedSubTlv(f"Tunnel Egress Endpoint {address} is not a unicast address")
    return TunnelEgressEndpoint(address, reserved)


def _decode_udp_port(value: bytes) -> UdpDestinationPort:
    if len(value) != 2:
        raise MalformedSubTlv(f"UDP Destination Port sub-TLV of {len(value)} octets, not 2")
    port = int.from_bytes(value, "big")
    if port == 0:  # RFC 9012 §3.3.2
        raise MalformedSubTlv("UDP Destination Port sub-TLV holds the reserved value 0")
    return UdpDestinationPort(port)


def decode_sub_tlv_value(tunnel_type: int, sub_tlv_type: int, value: bytes) -> SubTlv:
    """The sub-TLV `sub_tlv_type` with `value`, inside a TLV of `tunnel_type`.

    Raises MalformedSubTlv for a recognized sub-TLV that breaks its definition.
    """
    if sub_tlv_type == SubTlvType.ENCAPSULATION:
        return _decode_encapsulation(tunnel_type, value)
    if sub_tlv_type == SubTlvType.PROTOCOL_TYPE:
        return _decode_protocol_type(value)
    if sub_tlv_type == SubTlvType.IPSEC_TUNNEL_AUTHENTICATOR:
        return _decode_authenticator(value)
    if sub_tlv_type == SubTlvType.COLOR:
        return _decode_color(value)
    if sub_tlv_type == SubTlvType.TUNNEL_EGRESS_ENDPOINT:
        return _decode_egress_endpoint(value)
    if sub_tlv_type == SubTlvType.UDP_DESTINATION_PORT:
        return _decode_udp_port(value)
    return RawSubTlv(sub_tlv_type, value)
