"""The BGP Tunnel Encapsulation attribute (path attribute 23): decode and encode its value.

RFC 9012 defines the attribute; the RFC 5512 forms (1-octet sub-TLV lengths, which RFC 9012
keeps for sub-TLV types 0-127) and the RFC 5566 IPsec tunnel types and IPsec Tunnel
Authenticator sub-TLV are read too, because the softwire mesh (RFC 5565, RFC 5619) uses them.
`encode_tunnel_encap(decode_tunnel_encap(b)) == b` for every `b` that decodes: unknown tunnel
types, unknown sub-TLVs and malformed sub-TLVs are kept as octets (RFC 9012 §13).

Malformations and their handling (RFC 9012 §13, RFC 7606) are described in
:mod:`afbr.bgp.tunnel_encap_errors`: the attribute-level ones raise
:class:`TunnelEncapError`; the TLV- and sub-TLV-level ones come back as warnings on the
decoded attribute.

Tunnel type code points.  Issue 3 lists "IPsec in tunnel mode (3), IP-in-IP with IPsec
transport mode (4)", and DESIGN.md repeats that numbering.  RFC 5566 §2 and the IANA "BGP
Tunnel Encapsulation Attribute Tunnel Types" registry assign 3 = Transmit tunnel endpoint,
4 = IPsec in Tunnel-mode, 5 = IP in IP tunnel with IPsec Transport Mode and 6 = MPLS-in-IP
tunnel with IPsec Transport Mode (Wireshark and other decoders agree).  This module follows
the RFC/IANA values (see :class:`TunnelType`); the issue text and DESIGN.md are off by one.
DESIGN.md's "GRE protected by ESP transport mode" has no code point of its own in that
registry: ESP transport mode is signalled for IP-in-IP (5) and MPLS-in-IP (6) only.

Tunnel Egress Endpoint.  RFC 9012 §3.1/§13 want exactly one Tunnel Egress Endpoint sub-TLV
per TLV in unicast UPDATEs and discard TLVs without one; RFC 5512/5565 speakers (GoBGP among
them, see the reference vectors) send TLVs without it and mean the BGP next hop.  The decoder
therefore applies that rule only when asked (`require_egress_endpoint=True`); a malformed
endpoint always discards its TLV.
"""

from __future__ import annotations

from afbr.bgp.tunnel_encap_errors import DecodeWarning, ErrorHandling, TunnelEncapError
from afbr.bgp.tunnel_encap_json import tunnel_encap_to_json
from afbr.bgp.tunnel_encap_model import (
    Authenticator,
    Color,
    GreKey,
    L2tpv3Encapsulation,
    ProtocolType,
    RawSubTlv,
    SubTlv,
    Tunnel,
    TunnelEgressEndpoint,
    TunnelEncapAttribute,
    UdpDestinationPort,
)
from afbr.bgp.tunnel_encap_sub_tlvs import MalformedSubTlv, decode_sub_tlv_value
from afbr.bgp.tunnel_encap_types import (
    FIRST_LONG_LENGTH_SUB_TLV_TYPE,
    SINGLE_INSTANCE_SUB_TLV_TYPES,
    TUNNEL_ENCAP_ATTRIBUTE_TYPE,
    AuthenticatorType,
    EndpointAddressFamily,
    EtherType,
    SubTlvType,
    TunnelType,
)
from afbr.bgp.wire_buffer import WireBuffer, WireBufferError

__all__ = [
    "ATTRIBUTE_FLAGS",
    "TUNNEL_ENCAP_ATTRIBUTE_TYPE",
    "Authenticator",
    "AuthenticatorType",
    "Color",
    "DecodeWarning",
    "EndpointAddressFamily",
    "ErrorHandling",
    "EtherType",
    "GreKey",
    "L2tpv3Encapsulation",
    "ProtocolType",
    "RawSubTlv",
    "SubTlv",
    "SubTlvType",
    "Tunnel",
    "TunnelEgressEndpoint",
    "TunnelEncapAttribute",
    "TunnelEncapError",
    "TunnelType",
    "UdpDestinationPort",
    "check_tunnel_encap_flags",
    "decode_tunnel_encap",
    "encode_tunnel_encap",
    "tunnel_encap_to_json",
]

FLAG_OPTIONAL = 0x80
FLAG_TRANSITIVE = 0x40
# Optional transitive (RFC 9012 §2); what the attribute is sent with.
ATTRIBUTE_FLAGS = FLAG_OPTIONAL | FLAG_TRANSITIVE

TLV_HEADER_SIZE = 4  # Tunnel Type (2) + Length (2), RFC 9012 §2


def check_tunnel_encap_flags(flags: int) -> None:
    """Raise TunnelEncapError unless the path-attribute flags mark it optional transitive.

    RFC 9012 §13 and RFC 7606 §3 (c): treat-as-withdraw.  The offset is 0 (the flags precede
    the value).  The Partial and Extended Length bits may take either value.
    """
    if flags & ATTRIBUTE_FLAGS != ATTRIBUTE_FLAGS:
        raise TunnelEncapError(
            0,
            f"attribute flags 0x{flags:02x} lack Optional or Transitive",
            ErrorHandling.TREAT_AS_WITHDRAW,
            "RFC 7606 §3",
        )


def decode_tunnel_encap(
    data: bytes, *, require_egress_endpoint: bool = False
) -> TunnelEncapAttribute:
    """Decode the value of a Tunnel Encapsulation attribute (no path-attribute header).

    Raises TunnelEncapError (handling treat-as-withdraw) when the attribute cannot be used.
    With `require_egress_endpoint`, a TLV without exactly one Tunnel Egress Endpoint sub-TLV
    is discarded as RFC 9012 §13 prescribes for the AFI/SAFIs of RFC 9012 §6.
    """
    if not data:
        raise TunnelEncapError(0, "the attribute holds no Tunnel TLV")  # RFC 9012 §13
    buf = WireBuffer(data)
    tunnels: list[Tunnel] = []
    warnings: list[DecodeWarning] = []
    try:
        while not buf.eof():
            tunnel = _pull_tunnel(buf, len(tunnels), warnings, require_egress_endpoint)
            tunnels.append(tunnel)
    except WireBufferError as exc:  # every read is checked first; this is a backstop
        raise TunnelEncapError(exc.offset, exc.reason) from exc
    attribute = TunnelEncapAttribute(tuple(tunnels), tuple(warnings))
    if len(attribute.discarded_tunnel_indexes) == len(tunnels):
        first = next(w for w in warnings if w.handling == ErrorHandling.DISCARD_TLV)
        # RFC 9012 §13: an attribute without any valid TLV is treat-as-withdraw.
        raise TunnelEncapError(first.offset, f"{first.reason}, and no other Tunnel TLV is valid")
    return attribute


def _pull_tunnel(
    buf: WireBuffer, index: int, warnings: list[DecodeWarning], require_egress_endpoint: bool
) -> Tunnel:
    start = buf.offset
    if buf.remaining < TLV_HEADER_SIZE:  # RFC 9012 §13: an incomplete TLV
        raise TunnelEncapError(
            start, f"Tunnel TLV header needs 4 octets, {buf.remaining} left in the attribute"
        )
    tunnel_type = buf.pull_u16()
    length = buf.pull_u16()
    if length > buf.remaining:  # RFC 9012 §13
        raise TunnelEncapError(
            start + 2,
            f"Tunnel TLV length {length} runs past the attribute end ({buf.remaining} left)",
        )
    body = buf.pull_block(length)
    sub_tlvs: list[SubTlv] = []
    offsets: list[int] = []
    while not body.eof():
        offsets.append(body.offset)
        sub_tlvs.append(_pull_sub_tlv(body, tunnel_type, index, len(sub_tlvs), warnings))
    _check_repeats(tunnel_type, sub_tlvs, offsets, index, warnings)
    _check_egress_endpoints(sub_tlvs, start, index, warnings, require_egress_endpoint)
    return Tunnel(tunnel_type, tuple(sub_tlvs))


def _pull_sub_tlv(
    body: WireBuffer,
    tunnel_type: int,
    tunnel_index: int,
    sub_index: int,
    warnings: list[DecodeWarning],
) -> SubTlv:
    start = body.offset
    sub_tlv_type = body.pull_u8()  # the caller saw at least one octet left
    length_size = 2 if sub_tlv_type >= FIRST_LONG_LENGTH_SUB_TLV_TYPE else 1  # RFC 9012 §2
    if body.remaining < length_size:  # RFC 9012 §13: the TLV ends inside a sub-TLV header
        raise TunnelEncapError(
            body.offset, f"sub-TLV {sub_tlv_type} length field runs past the TLV end"
        )
    length = body.pull_uint(length_size)
    if length > body.remaining:  # RFC 9012 §13
        raise TunnelEncapError(
            start + 1,
            f"sub-TLV length {length} runs past the TLV end ({body.remaining} left)",
        )
    value = body.pull_bytes(length)
    try:
        return decode_sub_tlv_value(tunnel_type, sub_tlv_type, value)
    except MalformedSubTlv as exc:
        handling = (
            ErrorHandling.DISCARD_TLV  # RFC 9012 §13: the one exception
            if sub_tlv_type == SubTlvType.TUNNEL_EGRESS_ENDPOINT
            else ErrorHandling.IGNORE_SUB_TLV  # RFC 9012 §13: as if unrecognized
        )
        warnings.append(DecodeWarning(start, exc.reason, handling, tunnel_index, sub_index))
        return RawSubTlv(sub_tlv_type, value)


def _check_repeats(
    tunnel_type: int,
    sub_tlvs: list[SubTlv],
    offsets: list[int],
    tunnel_index: int,
    warnings: list[DecodeWarning],
) -> None:
    """RFC 9012 §13: of single-instance sub-TLVs, all but the first are disregarded."""
    seen: set[int] = set()
    for sub_index, sub_tlv in enumerate(sub_tlvs):
        code = sub_tlv.sub_tlv_type
        if code not in SINGLE_INSTANCE_SUB_TLV_TYPES:
            continue
        if code in seen:
            name = SubTlvType(code).name.replace("_", " ").title()
            warnings.append(
                DecodeWarning(
                    offsets[sub_index],
                    f"repeated {name} sub-TLV in tunnel type {tunnel_type} is disregarded",
                    ErrorHandling.IGNORE_SUB_TLV,
                    tunnel_index,
                    sub_index,
                )
            )
        seen.add(code)


def _check_egress_endpoints(
    sub_tlvs: list[SubTlv],
    start: int,
    tunnel_index: int,
    warnings: list[DecodeWarning],
    require_egress_endpoint: bool,
) -> None:
    """RFC 9012 §13: in RFC 9012 §6 AFI/SAFIs, exactly one Tunnel Egress Endpoint per TLV."""
    if not require_egress_endpoint:
        return
    count = sum(1 for sub in sub_tlvs if sub.sub_tlv_type == SubTlvType.TUNNEL_EGRESS_ENDPOINT)
    if count != 1:
        warnings.append(
            DecodeWarning(
                start,
                f"Tunnel TLV has {count} Tunnel Egress Endpoint sub-TLVs, not exactly 1",
                ErrorHandling.DISCARD_TLV,
                tunnel_index,
            )
        )


def encode_tunnel_encap(attr: TunnelEncapAttribute) -> bytes:
    """The attribute value octets of `attr` (no path-attribute header).

    Raises ValueError when a TLV or sub-TLV value is too long for its length field.
    """
    buf = WireBuffer()
    for tunnel in attr.tunnels:
        body = WireBuffer()
        for sub_tlv in tunnel.sub_tlvs:
            _push_sub_tlv(body, sub_tlv)
        value = body.to_bytes()
        if len(value) > 0xFFFF:
            raise ValueError(f"tunnel type {tunnel.tunnel_type}: {len(value)} octets of sub-TLVs")
        buf.push_u16(tunnel.tunnel_type)
        buf.push_u16(len(value))
        buf.push_bytes(value)
    return buf.to_bytes()


def _push_sub_tlv(body: WireBuffer, sub_tlv: SubTlv) -> None:
    value = sub_tlv.value_bytes()
    length_size = 2 if sub_tlv.sub_tlv_type >= FIRST_LONG_LENGTH_SUB_TLV_TYPE else 1
    if len(value) >= 1 << (8 * length_size):
        raise ValueError(f"sub-TLV {sub_tlv.sub_tlv_type}: {len(value)} octets do not fit")
    body.push_u8(sub_tlv.sub_tlv_type)
    body.push_uint(length_size, len(value))
    body.push_bytes(value)
