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


def test_ipsec_tunnel_mode_is_the_esp_softwire_other_types_are_not_offers() -> None:
    assert offer_from_tunnel(Tunnel(4)) == EncapOffer(EncapKind.ESP_TUNNEL)  # RFC 5566 §2
    for other in (3, 5, 6, 999):
        assert offer_from_tunnel(Tunnel(other)) is None


def test_endpoint_is_the_egress_endpoint_else_the_next_hop() -> None:
    other = ipaddress.ip_address("2001:db8::7")
    path = remote_path(PREFIX, NH, [Tunnel(999), Tunnel.gre(egress_endpoint=other)], "b")
    assert path.endpoint == other and path.encaps == (EncapOffer(EncapKind.GRE),)
    assert remote_path(PREFIX, NH, [Tunnel.ip_in_ip()]).endpoint == NH


def test_esp_softwire_only_with_ipsec_and_it_needs_sas() -> None:
    from afbr.encap.derive import derive_desired
    from afbr.encap.model import IpsecMode, LocalEncapPolicy

    path = remote_path(PREFIX, NH, [Tunnel.ipsec_tunnel_mode(), Tunnel.gre()], "b")
    local = ipaddress.ip_address("2001:db8::1")
    plain = LocalEncapPolicy(preference=(EncapKind.ESP_TUNNEL, EncapKind.GRE), local_v6=local)
    desired = derive_desired([path], plain)  # no IKE agent keying it: GRE
    assert [t.kind for t in desired.tunnels] == [EncapKind.GRE] and desired.ipsec == ()
    secure = LocalEncapPolicy(
        preference=(EncapKind.ESP_TUNNEL,), local_v6=local, ipsec=IpsecMode.TUNNEL
    )
    desired = derive_desired([path], secure)
    (tunnel,) = desired.tunnels
    assert tunnel.kind is EncapKind.ESP_TUNNEL
    assert tunnel.mtu == 1500 - 40 - 57  # RFC 5565 §4.3: outer IPv6 + ESP worst case
    assert [(n.tunnel, n.remote) for n in desired.ipsec] == [(tunnel.name, NH)]
    assert desired.routes[0].tunnel == tunnel.name
