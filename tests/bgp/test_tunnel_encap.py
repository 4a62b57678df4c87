"""Known answers for the Tunnel Encapsulation attribute codec: one table drives decode and encode.

Sources:
- "gobgp-*": attribute values seen on the wire, as GoBGP 3.10 originated them, with the meaning
  GoBGP printed for each: tests/vectors/tunnel-encap.txt (provenance in
  tests/vectors/README.md).  GoBGP kept sub-TLV 3 raw; we decode it as the
  RFC 5566 §4 IPsec Tunnel Authenticator (type 1 + 20 octets).
- "rfc-*": built by hand from the field layouts of RFC 9012 §2-§3, RFC 5512 §4 and RFC 5566 §2/§4.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

import pytest

from afbr.bgp.tunnel_encap import (
    Authenticator,
    AuthenticatorType,
    Color,
    EtherType,
    GreKey,
    L2tpv3Encapsulation,
    ProtocolType,
    RawSubTlv,
    SubTlvType,
    Tunnel,
    TunnelEgressEndpoint,
    TunnelEncapAttribute,
    TunnelType,
    UdpDestinationPort,
    decode_tunnel_encap,
    encode_tunnel_encap,
)

SHA1_AA = Authenticator(AuthenticatorType.SHA1_PUBLIC_KEY, b"\xaa" * 20)


@dataclass(frozen=True)
class Case:
    name: str
    hex: str
    tunnels: tuple[Tunnel, ...]


CASES = [
    Case(
        # tunnel-encap.txt #1: GoBGP on 203.0.113.0/24, next hop 2001:db8:ffff::1.
        "gobgp-gre-l2tpv3-ipip",
        "00020044010400001234020286dd0408030b000000000064061600000000000220010db8ffff"
        "0000000000000000000103160001aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa0001000e01"
        "0800000042deadbeef0202080000070004020286dd",
        (
            Tunnel(
                TunnelType.GRE,
                (
                    GreKey(0x1234),
                    ProtocolType(EtherType.IPV6),
                    Color(100),
                    TunnelEgressEndpoint(IPv6Address("2001:db8:ffff::1")),
                    SHA1_AA,
                ),
            ),
            Tunnel(
                TunnelType.L2TPV3_OVER_IP,
                (L2tpv3Encapsulation(0x42, bytes.fromhex("deadbeef")), ProtocolType(0x0800)),
            ),
            Tunnel(TunnelType.IP_IN_IP, (ProtocolType(0x86DD),)),
        ),
    ),
    Case(
        # tunnel-encap.txt #2: a single GRE tunnel with key 7 and protocol IPv4.
        "gobgp-gre-key-7",
        "0002000a01040000000702020800",
        (Tunnel(TunnelType.GRE, (GreKey(7), ProtocolType(EtherType.IPV4))),),
    ),
    Case(
        # RFC 9012 §3.2.3 / RFC 5512 §4.1: session id, no cookie.
        "rfc-l2tpv3-no-cookie",
        "00010006010400000001",
        (Tunnel(TunnelType.L2TPV3_OVER_IP, (L2tpv3Encapsulation(1),)),),
    ),
    Case(
        "rfc-l2tpv3-64-bit-cookie",
        "0001000e010c000000010102030405060708",
        (
            Tunnel(
                TunnelType.L2TPV3_OVER_IP,
                (L2tpv3Encapsulation(1, bytes.fromhex("0102030405060708")),),
            ),
        ),
    ),
    Case(
        # RFC 9012 §4.1: a "barebones" TLV, no sub-TLV at all.
        "rfc-barebones-ip-in-ip",
        "00070000",
        (Tunnel(TunnelType.IP_IN_IP),),
    ),
    Case(
        # RFC 5566 §2 type 4 with the §4 authenticator; then type 5 (IP in IP, ESP transport).
        "rfc-5566-ipsec-types",
        "00040018031600010000000000000000000000000000000000000000"
        "0005001c031600011111111111111111111111111111111111111111020286dd",
        (
            Tunnel(
                TunnelType.IPSEC_TUNNEL_MODE,
                (Authenticator(AuthenticatorType.SHA1_PUBLIC_KEY, bytes(20)),),
            ),
            Tunnel(
                TunnelType.IP_IN_IP_IPSEC_TRANSPORT_MODE,
                (
                    Authenticator(AuthenticatorType.SHA1_PUBLIC_KEY, b"\x11" * 20),
                    ProtocolType(EtherType.IPV6),
                ),
            ),
        ),
    ),
    Case(
        # RFC 5566 §4: an authenticator type this module does not know keeps its octets.
        "rfc-5566-other-authenticator-type",
        "0004000603040002abcd",
        (Tunnel(TunnelType.IPSEC_TUNNEL_MODE, (Authenticator(2, b"\xab\xcd"),)),),
    ),
    Case(
        # RFC 9012 §3.1: IPv4 endpoint; address family 0 = the BGP next hop; reserved kept.
        "rfc-egress-endpoints",
        "0007000c060a000000000001c0000201" + "000200080606deadbeef0000",
        (
            Tunnel(TunnelType.IP_IN_IP, (TunnelEgressEndpoint(IPv4Address("192.0.2.1")),)),
            Tunnel(TunnelType.GRE, (TunnelEgressEndpoint(None, reserved=0xDEADBEEF),)),
        ),
    ),
    Case(
        # RFC 9012 §3.4.2 / §4.3: flags of the Color Extended Community kept as received.
        "rfc-color-flags",
        "000200140408030b1234000000010408030b0000ffffffff",
        (Tunnel(TunnelType.GRE, (Color(1, flags=0x1234), Color(0xFFFFFFFF))),),
    ),
    Case(
        # RFC 9012 §3.3.2 in a VXLAN TLV (type 8): a tunnel type kept as a plain int.
        "rfc-udp-port-unknown-tunnel-type",
        "00080004080212b5",
        (Tunnel(8, (UdpDestinationPort(4789),)),),
    ),
    Case(
        # RFC 9012 §2: sub-TLV types 128-255 have a 2-octet length, 0-127 a 1-octet one.
        "rfc-sub-tlv-length-forms",
        "0002000c800003aabbcc7f02abcd0000",
        (
            Tunnel(
                TunnelType.GRE,
                (
                    RawSubTlv(128, bytes.fromhex("aabbcc")),
                    RawSubTlv(127, bytes.fromhex("abcd")),
                    RawSubTlv(0, b""),
                ),
            ),
        ),
    ),
    Case(
        # RFC 9012 §3.3: an Encapsulation sub-TLV in a type without one is unrecognized, raw.
        "rfc-encapsulation-in-ip-in-ip-is-raw",
        "000700060104000000070000000401020304",
        (
            Tunnel(TunnelType.IP_IN_IP, (RawSubTlv(SubTlvType.ENCAPSULATION, bytes(3) + b"\x07"),)),
            Tunnel(0, (RawSubTlv(SubTlvType.ENCAPSULATION, bytes.fromhex("0304")),)),
        ),
    ),
    Case(
        # Two sub-TLV kinds decoded nowhere here (DS Field, MPLS Label Stack), kept raw.
        "rfc-raw-ds-and-label-stack",
        "ffff0009070120" + "0a0400064140",
        (
            Tunnel(
                0xFFFF,
                (
                    RawSubTlv(SubTlvType.DS_FIELD, b"\x20"),
                    RawSubTlv(SubTlvType.MPLS_LABEL_STACK, bytes.fromhex("00064140")),
                ),
            ),
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_decode_gives_the_known_tunnels(case: Case) -> None:
    attribute = decode_tunnel_encap(bytes.fromhex(case.hex))
    assert attribute.tunnels == case.tunnels
    assert attribute.warnings == ()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_encode_gives_the_known_octets(case: Case) -> None:
    assert encode_tunnel_encap(TunnelEncapAttribute(case.tunnels)) == bytes.fromhex(case.hex)


def test_gobgp_vector_reads_as_gobgp_printed_it() -> None:
    """tunnel-encap.txt #1, field by field against GoBGP 3.10's decoding."""
    gre, l2tpv3, ip_in_ip = decode_tunnel_encap(bytes.fromhex(CASES[0].hex)).tunnels
    assert gre.tunnel_type is TunnelType.GRE
    assert gre.gre_key == 0x00001234
    assert gre.protocol_type == 0x86DD
    assert gre.color == 100
    assert gre.egress_endpoint == IPv6Address("2001:db8:ffff::1")
    assert gre.authenticator == SHA1_AA
    assert l2tpv3.tunnel_type is TunnelType.L2TPV3_OVER_IP
    assert l2tpv3.l2tpv3_session_id == 0x42
    assert l2tpv3.l2tpv3_cookie == bytes.fromhex("deadbeef")
    assert l2tpv3.protocol_type == 0x0800
    assert ip_in_ip.tunnel_type is TunnelType.IP_IN_IP
    assert ip_in_ip.protocol_type == 0x86DD
    assert ip_in_ip.egress_endpoint is None
    assert ip_in_ip.gre_key is None
    assert ip_in_ip.udp_port is None


def test_properties_of_a_tunnel_without_those_sub_tlvs_are_none() -> None:
    bare = Tunnel(TunnelType.GRE)
    assert (bare.gre_key, bare.protocol_type, bare.authenticator, bare.color) == (None,) * 4
    assert (bare.l2tpv3_session_id, bare.l2tpv3_cookie, bare.udp_port) == (None,) * 3
    assert bare.colors == ()
    assert bare.egress_endpoint_count == 0


def test_tunnel_types_follow_rfc_5566_and_iana() -> None:
    """RFC 5566 §2 / IANA: the IPsec types are 4, 5, 6 (3 is Transmit tunnel endpoint)."""
    assert TunnelType.TRANSMIT_TUNNEL_ENDPOINT.value == 3
    assert TunnelType.IPSEC_TUNNEL_MODE.value == 4
    assert TunnelType.IP_IN_IP_IPSEC_TRANSPORT_MODE.value == 5
    assert TunnelType.MPLS_IN_IP_IPSEC_TRANSPORT_MODE.value == 6
    assert [TunnelType.L2TPV3_OVER_IP, TunnelType.GRE, TunnelType.IP_IN_IP] == [1, 2, 7]


def test_a_plain_int_tunnel_type_becomes_the_enum_member() -> None:
    assert Tunnel(2).tunnel_type is TunnelType.GRE
    assert Tunnel(2) == Tunnel(TunnelType.GRE)
    assert not Tunnel(99).is_known_type
