"""Building the outbound attribute (a local AFBR's SW-Encap set) and its JSON view."""

from __future__ import annotations

import json
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
    Tunnel,
    TunnelEgressEndpoint,
    TunnelEncapAttribute,
    TunnelType,
    UdpDestinationPort,
    decode_tunnel_encap,
    encode_tunnel_encap,
    tunnel_encap_to_json,
)

KEY_HASH = Authenticator(AuthenticatorType.SHA1_PUBLIC_KEY, bytes(range(20)))


def test_gre_builder_gives_the_gobgp_vector() -> None:
    """tunnel-encap.txt #2 (GoBGP 3.10): GRE, key 7, protocol IPv4."""
    attribute = TunnelEncapAttribute((Tunnel.gre(key=7, protocol_type=EtherType.IPV4),))
    assert encode_tunnel_encap(attribute) == bytes.fromhex("0002000a01040000000702020800")


def test_gre_without_key_has_no_encapsulation_sub_tlv() -> None:
    """RFC 9012 §3.2.4: no GRE Encapsulation sub-TLV unless a key is advertised."""
    assert Tunnel.gre() == Tunnel(TunnelType.GRE, ())
    assert encode_tunnel_encap(TunnelEncapAttribute((Tunnel.gre(),))) == bytes.fromhex("00020000")


def test_builders_put_sub_tlvs_in_type_order() -> None:
    tunnel = Tunnel.l2tpv3(
        session_id=0x42,
        cookie=bytes.fromhex("deadbeef"),
        protocol_type=EtherType.IPV6,
        authenticator=KEY_HASH,
        color=100,
        egress_endpoint=IPv6Address("2001:db8::a"),
    )
    assert tunnel.sub_tlvs == (
        L2tpv3Encapsulation(0x42, bytes.fromhex("deadbeef")),
        ProtocolType(EtherType.IPV6),
        KEY_HASH,
        Color(100),
        TunnelEgressEndpoint(IPv6Address("2001:db8::a")),
    )


def test_sw_encap_set_keeps_the_local_preference_order() -> None:
    """RFC 5565 §5: the originator's SW-Encap set, most preferred first."""
    preferred = (
        Tunnel.ipsec_tunnel_mode(authenticator=KEY_HASH, protocol_type=EtherType.IPV4),
        Tunnel.ip_in_ip_ipsec_transport(authenticator=KEY_HASH),
        Tunnel.gre(key=9, protocol_type=EtherType.IPV4),
        Tunnel.l2tpv3(session_id=1),
        Tunnel.ip_in_ip(protocol_type=EtherType.IPV4, egress_endpoint=IPv4Address("192.0.2.1")),
    )
    decoded = decode_tunnel_encap(encode_tunnel_encap(TunnelEncapAttribute(preferred)))
    assert [t.tunnel_type for t in decoded.usable_tunnels] == [
        TunnelType.IPSEC_TUNNEL_MODE,
        TunnelType.IP_IN_IP_IPSEC_TRANSPORT_MODE,
        TunnelType.GRE,
        TunnelType.L2TPV3_OVER_IP,
        TunnelType.IP_IN_IP,
    ]
    assert decoded.tunnels == preferred
    assert decoded.find(TunnelType.GRE) == preferred[2]


def test_with_authenticator_replaces_the_old_one_in_place() -> None:
    tunnel = Tunnel.gre(key=1, protocol_type=EtherType.IPV4, color=5)
    first = tunnel.with_authenticator(Authenticator(2, b"old"))
    second = first.with_authenticator(KEY_HASH)
    assert second.sub_tlvs == (GreKey(1), ProtocolType(EtherType.IPV4), KEY_HASH, Color(5))
    assert second.authenticator == KEY_HASH


def test_with_sub_tlv_adds_after_same_type() -> None:
    tunnel = Tunnel.gre(color=1).with_sub_tlv(Color(2)).with_sub_tlv(UdpDestinationPort(4789))
    assert tunnel.colors == (1, 2)
    assert tunnel.udp_port == 4789


@pytest.mark.parametrize(
    "build",
    [
        lambda: Tunnel(TunnelType.IP_IN_IP, (GreKey(1),)),
        lambda: Tunnel(TunnelType.GRE, (L2tpv3Encapsulation(1),)),
        lambda: Tunnel.l2tpv3(session_id=1, cookie=b"abc"),
        lambda: Tunnel.gre(key=1 << 32),
        lambda: Tunnel(0x10000),
        lambda: Authenticator(AuthenticatorType.SHA1_PUBLIC_KEY, b"short"),
        lambda: UdpDestinationPort(70000),
    ],
)
def test_builders_refuse_what_cannot_be_encoded(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]


def test_encode_refuses_a_sub_tlv_too_long_for_its_length_field() -> None:
    attribute = TunnelEncapAttribute((Tunnel(TunnelType.GRE, (RawSubTlv(5, bytes(256)),)),))
    with pytest.raises(ValueError, match="do not fit"):
        encode_tunnel_encap(attribute)


def test_json_of_the_gobgp_gre_vector() -> None:
    attribute = decode_tunnel_encap(bytes.fromhex("0002000a01040000000702020800"))
    assert tunnel_encap_to_json(attribute) == {
        "tunnels": [
            {
                "type": 2,
                "name": "gre",
                "discarded": False,
                "sub_tlvs": [
                    {"type": 1, "name": "encapsulation", "gre_key": 7},
                    {
                        "type": 2,
                        "name": "protocol-type",
                        "ethertype": "0x0800",
                        "ethertype_name": "ipv4",
                    },
                ],
            }
        ],
        "warnings": [],
    }


def test_json_of_every_sub_tlv_kind_is_serializable() -> None:
    tunnel = Tunnel.l2tpv3(
        session_id=7,
        cookie=b"\x01\x02\x03\x04",
        protocol_type=0x1234,
        authenticator=KEY_HASH,
        color=3,
        egress_endpoint=IPv4Address("198.51.100.7"),
    ).with_sub_tlv(RawSubTlv(200, b"\xff"))
    view = tunnel_encap_to_json(TunnelEncapAttribute((tunnel, Tunnel(99))))
    json.dumps(view)
    sub_tlvs = view["tunnels"][0]["sub_tlvs"]  # type: ignore[index]
    assert sub_tlvs == [
        {"type": 1, "name": "encapsulation", "session_id": 7, "cookie": "01020304"},
        {"type": 2, "name": "protocol-type", "ethertype": "0x1234", "ethertype_name": None},
        {
            "type": 3,
            "name": "ipsec-tunnel-authenticator",
            "authenticator_type": 1,
            "authenticator_type_name": "sha1-public-key",
            "authenticator": bytes(range(20)).hex(),
        },
        {"type": 4, "name": "color", "color": 3, "flags": 0},
        {
            "type": 6,
            "name": "tunnel-egress-endpoint",
            "address_family": 1,
            "address": "198.51.100.7",
            "reserved": 0,
        },
        {"type": 200, "name": None, "raw": True, "value": "ff"},
    ]
    assert view["tunnels"][1] == {  # type: ignore[index]
        "type": 99,
        "name": None,
        "discarded": False,
        "sub_tlvs": [],
    }


def test_json_lists_warnings_and_discarded_tunnels() -> None:
    data = bytes.fromhex("0002000a01040000000702020800" + "0007000c060a000000000001e0000001")
    view = tunnel_encap_to_json(decode_tunnel_encap(data))
    assert [tunnel["discarded"] for tunnel in view["tunnels"]] == [False, True]  # type: ignore[attr-defined]
    assert view["warnings"] == [
        {
            "offset": 18,
            "tunnel_index": 1,
            "sub_tlv_index": 0,
            "reason": "Tunnel Egress Endpoint 224.0.0.1 is not a unicast address",
            "handling": "discard-tlv",
            "reference": "RFC 9012 §13",
        }
    ]
    raw_endpoint = view["tunnels"][1]["sub_tlvs"][0]  # type: ignore[index]
    assert raw_endpoint["name"] == "tunnel-egress-endpoint"
    assert raw_endpoint["raw"] is True
