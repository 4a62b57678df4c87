"""A JSON-ready view of a decoded Tunnel Encapsulation attribute, for the CLI and logs.

Octet strings are lowercase hex; Ethertypes are "0x" hex; every tunnel and sub-TLV carries its
numeric type and, where known, its IANA name.
"""

from __future__ import annotations

from afbr.bgp.tunnel_encap_errors import DecodeWarning
from afbr.bgp.tunnel_encap_model import Tunnel, TunnelEncapAttribute
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
from afbr.bgp.tunnel_encap_types import AuthenticatorType, EtherType, SubTlvType, known_or_int

JsonObject = dict[str, object]


def _name(code: object) -> str | None:
    """The lowercase, dashed IANA name of an IntEnum member, or None for a plain int."""
    name = getattr(code, "name", None)
    return None if name is None else str(name).lower().replace("_", "-")


def _sub_tlv_fields(sub_tlv: SubTlv) -> JsonObject:
    if isinstance(sub_tlv, GreKey):
        return {"gre_key": sub_tlv.key}
    if isinstance(sub_tlv, L2tpv3Encapsulation):
        return {"session_id": sub_tlv.session_id, "cookie": sub_tlv.cookie.hex()}
    if isinstance(sub_tlv, ProtocolType):
        ethertype = known_or_int(EtherType, sub_tlv.ethertype)
        return {"ethertype": f"0x{sub_tlv.ethertype:04x}", "ethertype_name": _name(ethertype)}
    if isinstance(sub_tlv, Authenticator):
        kind = known_or_int(AuthenticatorType, sub_tlv.authenticator_type)
        return {
            "authenticator_type": sub_tlv.authenticator_type,
            "authenticator_type_name": _name(kind),
            "authenticator": sub_tlv.value.hex(),
        }
    if isinstance(sub_tlv, Color):
        return {"color": sub_tlv.color, "flags": sub_tlv.flags}
    if isinstance(sub_tlv, TunnelEgressEndpoint):
        address = None if sub_tlv.address is None else str(sub_tlv.address)
        return {
            "address_family": int(sub_tlv.address_family),
            "address": address,
            "reserved": sub_tlv.reserved,
        }
    if isinstance(sub_tlv, UdpDestinationPort):
        return {"port": sub_tlv.port}
    return {"raw": True, "value": sub_tlv.value.hex()}


def sub_tlv_to_json(sub_tlv: SubTlv) -> JsonObject:
    code = sub_tlv.sub_tlv_type
    if isinstance(sub_tlv, RawSubTlv):
        code = known_or_int(SubTlvType, code)
    return {"type": int(code), "name": _name(code), **_sub_tlv_fields(sub_tlv)}


def tunnel_to_json(tunnel: Tunnel, discarded: bool) -> JsonObject:
    return {
        "type": int(tunnel.tunnel_type),
        "name": _name(tunnel.tunnel_type),
        "discarded": discarded,
        "sub_tlvs": [sub_tlv_to_json(sub_tlv) for sub_tlv in tunnel.sub_tlvs],
    }


def warning_to_json(warning: DecodeWarning) -> JsonObject:
    return {
        "offset": warning.offset,
        "tunnel_index": warning.tunnel_index,
        "sub_tlv_index": warning.sub_tlv_index,
        "reason": warning.reason,
        "handling": str(warning.handling),
        "reference": warning.reference,
    }


def tunnel_encap_to_json(attr: TunnelEncapAttribute) -> dict[str, object]:
    """The attribute as JSON-serializable dicts, lists, strings, ints, booleans and None."""
    discarded = attr.discarded_tunnel_indexes
    return {
        "tunnels": [
            tunnel_to_json(tunnel, index in discarded) for index, tunnel in enumerate(attr.tunnels)
        ],
        "warnings": [warning_to_json(warning) for warning in attr.warnings],
    }
