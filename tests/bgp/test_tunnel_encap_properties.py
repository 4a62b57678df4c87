"""Property tests of the Tunnel Encapsulation attribute codec (hypothesis).

- every valid attribute survives encode -> decode -> encode unchanged;
- any octets either decode (and then re-encode to exactly those octets) or raise
  TunnelEncapError, never anything else;
- octets with well-formed TLV/sub-TLV framing but arbitrary values always decode (RFC 9012 §13
  puts no treat-as-withdraw on sub-TLV values, unless every TLV ends up discarded).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import given
from hypothesis import strategies as st

from afbr.bgp.tunnel_encap import (
    Authenticator,
    AuthenticatorType,
    Color,
    GreKey,
    L2tpv3Encapsulation,
    ProtocolType,
    RawSubTlv,
    SubTlv,
    SubTlvType,
    Tunnel,
    TunnelEgressEndpoint,
    TunnelEncapAttribute,
    TunnelEncapError,
    TunnelType,
    UdpDestinationPort,
    decode_tunnel_encap,
    encode_tunnel_encap,
)
from afbr.bgp.tunnel_encap_sub_tlvs import is_martian

DECODED_SUB_TLV_TYPES = {1, 2, 3, 4, 6, 8}

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)

endpoint_addresses: st.SearchStrategy[IPv4Address | IPv6Address | None] = st.one_of(
    st.none(), st.ip_addresses().filter(lambda address: not is_martian(address))
)

authenticators = st.one_of(
    st.builds(
        Authenticator,
        st.just(AuthenticatorType.SHA1_PUBLIC_KEY),
        st.binary(min_size=20, max_size=20),
    ),
    st.builds(Authenticator, u16.filter(lambda t: t != 1), st.binary(max_size=40)),
)


@st.composite
def raw_sub_tlvs(draw: st.DrawFn) -> RawSubTlv:
    code = draw(st.integers(0, 255).filter(lambda c: c not in DECODED_SUB_TLV_TYPES))
    max_size = 255 if code < 128 else 300
    return RawSubTlv(code, draw(st.binary(max_size=max_size)))


common_sub_tlvs: st.SearchStrategy[SubTlv] = st.one_of(
    st.builds(ProtocolType, u16.filter(lambda e: e != 0xFFFF)),
    authenticators,
    st.builds(Color, u32, u16),
    st.builds(TunnelEgressEndpoint, endpoint_addresses, u32),
    st.builds(UdpDestinationPort, st.integers(1, 0xFFFF)),
    raw_sub_tlvs(),
)


def encapsulations(tunnel_type: int) -> st.SearchStrategy[SubTlv]:
    if tunnel_type == TunnelType.GRE:
        return st.builds(GreKey, u32)
    if tunnel_type == TunnelType.L2TPV3_OVER_IP:
        cookies = st.sampled_from([0, 4, 8]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
        return st.builds(L2tpv3Encapsulation, u32, cookies)
    return st.builds(RawSubTlv, st.just(SubTlvType.ENCAPSULATION), st.binary(max_size=30))


@st.composite
def tunnels(draw: st.DrawFn) -> Tunnel:
    tunnel_type = draw(st.one_of(st.sampled_from(list(TunnelType)), u16))
    sub_tlvs = draw(st.lists(st.one_of(encapsulations(tunnel_type), common_sub_tlvs), max_size=6))
    return Tunnel(tunnel_type, tuple(sub_tlvs))


attributes = st.builds(TunnelEncapAttribute, st.lists(tunnels(), min_size=1, max_size=4).map(tuple))


@given(attributes)
def test_valid_attribute_round_trips(attribute: TunnelEncapAttribute) -> None:
    data = encode_tunnel_encap(attribute)
    decoded = decode_tunnel_encap(data)
    assert decoded == attribute
    assert encode_tunnel_encap(decoded) == data


@given(st.binary(max_size=120))
def test_random_octets_decode_exactly_or_raise_only_our_error(data: bytes) -> None:
    try:
        attribute = decode_tunnel_encap(data)
    except TunnelEncapError as error:
        assert 0 <= error.offset <= len(data)
        return
    assert encode_tunnel_encap(attribute) == data


@given(attributes, st.data())
def test_truncated_attribute_decodes_exactly_or_raises_only_our_error(
    attribute: TunnelEncapAttribute, data: st.DataObject
) -> None:
    encoded = encode_tunnel_encap(attribute)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    try:
        decoded = decode_tunnel_encap(encoded[:cut])
    except TunnelEncapError:
        return
    assert encode_tunnel_encap(decoded) == encoded[:cut]


@st.composite
def framed_sub_tlv(draw: st.DrawFn) -> bytes:
    code = draw(st.integers(0, 255))
    value = draw(st.binary(max_size=40))
    length = len(value).to_bytes(2 if code >= 128 else 1, "big")
    return bytes([code]) + length + value


@st.composite
def framed_tlv(draw: st.DrawFn) -> bytes:
    tunnel_type = draw(st.one_of(st.sampled_from([1, 2, 4, 5, 7]), u16))
    body = b"".join(draw(st.lists(framed_sub_tlv(), max_size=5)))
    return tunnel_type.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


@given(st.lists(framed_tlv(), min_size=1, max_size=4))
def test_well_framed_octets_always_decode(tlvs: list[bytes]) -> None:
    data = b"".join(tlvs)
    try:
        attribute = decode_tunnel_encap(data)
    except TunnelEncapError as error:
        # The only framing-independent reason: every TLV discarded for its endpoint.
        assert "no other Tunnel TLV is valid" in error.reason
        return
    assert len(attribute.tunnels) == len(tlvs)
    assert encode_tunnel_encap(attribute) == data
