"""Malformed Tunnel Encapsulation attributes and the handling RFC 9012 §13 / RFC 7606 prescribe.

Each value is built by hand from RFC 9012 §2-§3 and §13 (comment per case): the attribute-level
problems raise TunnelEncapError (treat-as-withdraw); the TLV- and sub-TLV-level ones decode, list
a warning naming the handling, and still re-encode to the same octets.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from afbr.bgp.tunnel_encap import (
    ErrorHandling,
    GreKey,
    RawSubTlv,
    SubTlvType,
    TunnelEncapError,
    TunnelType,
    check_tunnel_encap_flags,
    decode_tunnel_encap,
    encode_tunnel_encap,
)

WITHDRAW = ErrorHandling.TREAT_AS_WITHDRAW
DISCARD_TLV = ErrorHandling.DISCARD_TLV
IGNORE_SUB_TLV = ErrorHandling.IGNORE_SUB_TLV

GOOD_GRE = "0002000a01040000000702020800"  # tunnel-encap.txt #2


@dataclass(frozen=True)
class ErrorCase:
    name: str
    hex: str
    offset: int
    reason_part: str


ERROR_CASES = [
    # RFC 9012 §13: an attribute without any TLV has no valid TLV.
    ErrorCase("empty-attribute", "", 0, "no Tunnel TLV"),
    # RFC 9012 §13: an incomplete TLV header.
    ErrorCase("short-tlv-header", "000200", 0, "header needs 4 octets, 3 left"),
    ErrorCase("trailing-octet", GOOD_GRE + "00", 14, "header needs 4 octets, 1 left"),
    # RFC 9012 §13: a TLV whose length runs past the attribute.
    ErrorCase("tlv-too-long", "000200060104000000", 2, "Tunnel TLV length 6 runs past"),
    # RFC 9012 §13: the final sub-TLV must end where the TLV ends.
    ErrorCase("sub-tlv-too-long", "0002000301040000", 5, "sub-TLV length 4 runs past the TLV"),
    ErrorCase("sub-tlv-past-tlv-end", "0002000a01040000000702090800", 11, "length 9 runs past"),
    ErrorCase("tlv-ends-in-sub-tlv-type", "0002000101", 5, "sub-TLV 1 length field runs past"),
    ErrorCase("tlv-ends-in-long-length", "000200028000", 5, "sub-TLV 128 length field"),
    ErrorCase("long-length-too-long", "0002000480010000", 5, "sub-TLV length 256 runs past"),
    # RFC 9012 §13: no valid TLV left once the malformed-endpoint TLV is discarded.
    ErrorCase("only-tlv-discarded", "0007000c060a0000000000017f000001", 4, "127.0.0.1"),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda case: case.name)
def test_unusable_attribute_is_treat_as_withdraw(case: ErrorCase) -> None:
    with pytest.raises(TunnelEncapError) as caught:
        decode_tunnel_encap(bytes.fromhex(case.hex))
    error = caught.value
    assert error.handling is WITHDRAW
    assert error.offset == case.offset
    assert case.reason_part in error.reason
    assert str(error).startswith(f"offset {case.offset}: ")
    assert str(error).endswith("(RFC 9012 §13: treat-as-withdraw)")


@dataclass(frozen=True)
class WarningCase:
    name: str
    hex: str
    handling: ErrorHandling
    offset: int
    tunnel_index: int
    sub_tlv_index: int | None
    reason_part: str


WARNING_CASES = [
    # RFC 9012 §3.2.4: the GRE key is 4 octets; a malformed sub-TLV is as if unrecognized.
    WarningCase("gre-key-3-octets", "000200050103000001", IGNORE_SUB_TLV, 4, 0, 0, "not 4"),
    # RFC 9012 §3.2.3 with RFC 3931 §4.1: cookies are 0, 4 or 8 octets.
    WarningCase("l2tpv3-2-octet-cookie", "000100080106000000010102", IGNORE_SUB_TLV, 4, 0, 0, "6"),
    WarningCase("l2tpv3-no-session-id", "00010004010200ff", IGNORE_SUB_TLV, 4, 0, 0, "2 octets"),
    # RFC 9012 §3.4.1: 0xffff is reserved; the value is 2 octets.
    WarningCase("protocol-type-ffff", "000700040202ffff", IGNORE_SUB_TLV, 4, 0, 0, "0xffff"),
    WarningCase("protocol-type-1-octet", "00070003020108", IGNORE_SUB_TLV, 4, 0, 0, "not 2"),
    # RFC 5566 §4: type (2 octets) + authenticator; type 1 is a 20-octet SHA-1 hash.
    WarningCase("authenticator-1-octet", "0004000303010a", IGNORE_SUB_TLV, 4, 0, 0, "1 octets"),
    WarningCase(
        "sha1-19-octets", "00040017" + "03150001" + "bb" * 19, IGNORE_SUB_TLV, 4, 0, 0, "19"
    ),
    # RFC 9012 §3.4.2: a Color sub-TLV that is not an 8-octet 0x030b community.
    WarningCase("color-4-octets", "00020006040400000064", IGNORE_SUB_TLV, 4, 0, 0, "Color"),
    WarningCase(
        "color-wrong-type", "0002000a0408030c000000000064", IGNORE_SUB_TLV, 4, 0, 0, "Color"
    ),
    # RFC 9012 §3.3.2: port 0 is reserved; the value is 2 octets.
    WarningCase("udp-port-0", "0008000408020000", IGNORE_SUB_TLV, 4, 0, 0, "reserved value 0"),
    WarningCase("udp-port-3-octets", "000800050803001234", IGNORE_SUB_TLV, 4, 0, 0, "not 2"),
    # RFC 9012 §13: of a repeated single-instance sub-TLV all but the first are disregarded.
    WarningCase(
        "repeated-gre-key",
        "0002000c010400000001010400000002",
        IGNORE_SUB_TLV,
        10,
        0,
        1,
        "repeated Encapsulation",
    ),
    WarningCase(
        "repeated-endpoint",
        "00070018060a000000000001c0000201060a000000000001c0000202",
        IGNORE_SUB_TLV,
        16,
        0,
        1,
        "repeated Tunnel Egress Endpoint",
    ),
    # RFC 9012 §3.1 + §13: a malformed Tunnel Egress Endpoint discards its whole TLV.
    WarningCase(
        "endpoint-ipv4-family-16-octets",
        GOOD_GRE + "00070018" + "061600000000000120010db8000000000000000000000001",
        DISCARD_TLV,
        18,
        1,
        0,
        "16-octet address",
    ),
    WarningCase(
        "endpoint-family-3", GOOD_GRE + "00070008060600000000" + "0003", DISCARD_TLV, 18, 1, 0, "3"
    ),
    WarningCase("endpoint-short", GOOD_GRE + "000700050603000000", DISCARD_TLV, 18, 1, 0, "3 oct"),
    WarningCase(
        "endpoint-multicast",
        GOOD_GRE + "0007000c060a000000000001e0000001",
        DISCARD_TLV,
        18,
        1,
        0,
        "224",
    ),
    WarningCase(
        "endpoint-unspecified-v6",
        GOOD_GRE + "00070018" + "0616000000000002" + "00" * 16,
        DISCARD_TLV,
        18,
        1,
        0,
        "::",
    ),
]


@pytest.mark.parametrize("case", WARNING_CASES, ids=lambda case: case.name)
def test_partly_malformed_attribute_decodes_with_a_warning(case: WarningCase) -> None:
    data = bytes.fromhex(case.hex)
    attribute = decode_tunnel_encap(data)
    assert len(attribute.warnings) == 1
    (warning,) = attribute.warnings
    assert warning.handling is case.handling
    assert (warning.offset, warning.tunnel_index) == (case.offset, case.tunnel_index)
    assert warning.sub_tlv_index == case.sub_tlv_index
    assert case.reason_part in warning.reason
    assert str(warning).endswith(f"(RFC 9012 §13: {case.handling})")
    assert encode_tunnel_encap(attribute) == data  # RFC 9012 §13: kept for propagation


def test_malformed_sub_tlv_is_kept_raw_and_ignored() -> None:
    attribute = decode_tunnel_encap(bytes.fromhex("000200050103000001"))
    (tunnel,) = attribute.tunnels
    assert tunnel.sub_tlvs == (RawSubTlv(SubTlvType.ENCAPSULATION, bytes.fromhex("000001")),)
    assert tunnel.gre_key is None
    assert attribute.usable_tunnels == (tunnel,)


def test_repeated_sub_tlv_first_occurrence_counts() -> None:
    attribute = decode_tunnel_encap(bytes.fromhex("0002000c010400000001010400000002"))
    (tunnel,) = attribute.tunnels
    assert tunnel.sub_tlvs[:2] == (GreKey(1), GreKey(2))
    assert tunnel.gre_key == 1


def test_discarded_tlv_is_unusable_and_not_propagated() -> None:
    data = bytes.fromhex(GOOD_GRE + "0007000c060a000000000001e0000001")
    attribute = decode_tunnel_encap(data)
    assert attribute.discarded_tunnel_indexes == frozenset({1})
    assert [t.tunnel_type for t in attribute.usable_tunnels] == [TunnelType.GRE]
    assert attribute.find(TunnelType.IP_IN_IP) is None
    assert encode_tunnel_encap(attribute) == data
    assert encode_tunnel_encap(attribute.for_propagation()) == bytes.fromhex(GOOD_GRE)


def test_unknown_tunnel_type_is_kept_but_not_usable() -> None:
    data = bytes.fromhex(GOOD_GRE + "00630000")
    attribute = decode_tunnel_encap(data)
    assert attribute.warnings == ()
    assert len(attribute.tunnels) == 2
    assert [t.tunnel_type for t in attribute.usable_tunnels] == [TunnelType.GRE]
    assert encode_tunnel_encap(attribute.for_propagation()) == data  # RFC 9012 §13: kept


@pytest.mark.parametrize(
    ("hex_value", "count"),
    [(GOOD_GRE, 0), ("00070018060a000000000001c0000201060a000000000001c0000202", 2)],
)
def test_unicast_rule_discards_tlv_without_exactly_one_endpoint(hex_value: str, count: int) -> None:
    """RFC 9012 §13 for the RFC 9012 §6 AFI/SAFIs, applied on request."""
    with pytest.raises(TunnelEncapError) as caught:
        decode_tunnel_encap(bytes.fromhex(hex_value), require_egress_endpoint=True)
    assert caught.value.handling is WITHDRAW
    assert f"has {count} Tunnel Egress Endpoint sub-TLVs" in caught.value.reason
    assert caught.value.offset == 0


def test_unicast_rule_keeps_tlv_with_one_endpoint() -> None:
    with_endpoint = "0007000c060a000000000001c0000201"
    attribute = decode_tunnel_encap(
        bytes.fromhex(GOOD_GRE + with_endpoint), require_egress_endpoint=True
    )
    assert attribute.discarded_tunnel_indexes == frozenset({0})
    assert [t.tunnel_type for t in attribute.usable_tunnels] == [TunnelType.IP_IN_IP]
    (warning,) = attribute.warnings
    assert (warning.handling, warning.offset, warning.sub_tlv_index) == (DISCARD_TLV, 0, None)


@pytest.mark.parametrize("flags", [0xC0, 0xD0, 0xE0, 0xF0])
def test_optional_transitive_flags_pass(flags: int) -> None:
    check_tunnel_encap_flags(flags)


@pytest.mark.parametrize("flags", [0x00, 0x40, 0x80, 0x90])
def test_flags_without_optional_transitive_are_treat_as_withdraw(flags: int) -> None:
    """RFC 7606 §3 (c), RFC 9012 §13."""
    with pytest.raises(TunnelEncapError) as caught:
        check_tunnel_encap_flags(flags)
    assert caught.value.handling is WITHDRAW
    assert caught.value.reference == "RFC 7606 §3"
    assert f"0x{flags:02x}" in caught.value.reason
