"""The adapter from the BGP codec's Tunnel TLVs to the encap manager's offers."""

from __future__ import annotations

import ipaddress

from afbr.bgp.tunnel_encap_model import Tunnel
from afbr.bgp.tunnel_encap_sub_tlvs import UdpDestinationPort
from afbr.encap.model import EncapKind, EncapOffer
from afbr.encap.offers import offer_from_tunnel, remote_path

NH = ipaddress.ip_address("2001:db8::2")
PREFIX = ipaddress.ip_network("198.51.100.0/24")


def test_gre_ip_in_ip_and_l2tpv3_become_offers() -> None:
    assert offer_from_tunnel(Tunnel.gre(key=9)) == EncapOffer(EncapKind.GRE, gre_key=9)
    assert offer_from_tunnel(Tunnel.gre()) == EncapOffer(EncapKind.GRE)
    assert offer_from_tunnel(Tunnel.ip_in_ip()) == EncapOffer(EncapKind.IP_IN_IP)
    l2tp = Tunnel.l2tpv3(session_id=0x42, cookie=b"\x01\x02\x03\x04")
    assert offer_from_tunnel(l2tp) == EncapOffer(
        EncapKind.L2TPV3_IP, l2tpv3_session_id=0x42, l2tpv3_cookie=b"\x01\x02\x03\x04"
    )


def test_l2tpv3_with_a_udp_port_is_l2tpv3_over_udp() -> None:
    tunnel = Tunnel.l2tpv3(session_id=7).with_sub_tlv(UdpDestinationPort(1702))
    offer = offer_from_tunnel(tunnel)
    assert offer is not None
    assert (offer.kind, offer.udp_port, offer.l2tpv3_session_id) == (
        EncapKind.L2TPV3_UDP,
        1702,
        7,
    )


def test_ipsec_and_unknown_types_are_not_softwire_offers() -> None:
    assert offer_from_tunnel(Tunnel(4)) is None
    assert offer_from_tunnel(Tunnel(999)) is None


def test_endpoint_is_the_egress_endpoint_else_the_next_hop() -> None:
    other = ipaddress.ip_address("2001:db8::7")
    path = remote_path(PREFIX, NH, [Tunnel(999), Tunnel.gre(egress_endpoint=other)], "b")
    assert path.endpoint == other and path.encaps == (EncapOffer(EncapKind.GRE),)
    assert remote_path(PREFIX, NH, [Tunnel.ip_in_ip()]).endpoint == NH
