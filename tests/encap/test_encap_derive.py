"""The encap manager's derivation of desired state (pure functions, no kernel)."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from afbr.encap.derive import derive_desired, parse_address, tunnel_name
from afbr.encap.model import (
    EncapKind,
    EncapOffer,
    IpsecMode,
    LocalEncapPolicy,
    RemotePath,
)
from afbr.encap.mtu import tunnel_mtu

net = ipaddress.ip_network
addr = ipaddress.ip_address
GRE = EncapOffer(EncapKind.GRE, gre_key=7)
IPIP = EncapOffer(EncapKind.IP_IN_IP)
L2TP_IP = EncapOffer(EncapKind.L2TPV3_IP, l2tpv3_session_id=0x200, l2tpv3_cookie=b"\x01" * 8)
L2TP_UDP = EncapOffer(EncapKind.L2TPV3_UDP, l2tpv3_session_id=0x300, udp_port=1702)
POLICY = LocalEncapPolicy(
    preference=(EncapKind.GRE, EncapKind.IP_IN_IP, EncapKind.L2TPV3_IP, EncapKind.L2TPV3_UDP),
    local_v4=ipaddress.IPv4Address("192.0.2.1"),
    local_v6=ipaddress.IPv6Address("2001:db8::1"),
    gre_key=5,
    l2tpv3_session_id=0x100,
    l2tpv3_cookie=b"\xaa" * 4,
    bgp_neighbors=frozenset({addr("2001:db8::99")}),
)


def path(prefix: str, endpoint: str, *offers: EncapOffer) -> RemotePath:
    return RemotePath(net(prefix), addr(endpoint), offers, afbr_id=endpoint)


def test_first_local_preference_the_remote_offered_is_chosen() -> None:
    desired = derive_desired([path("198.51.100.0/24", "2001:db8::2", IPIP, GRE)], POLICY)
    (route,) = desired.routes
    chosen = {t.name: t for t in desired.tunnels}[route.tunnel]
    assert chosen.kind is EncapKind.GRE
    assert chosen.offer.gre_key == 7  # the remote's key is what we send
    assert chosen.local_gre_key == 5  # ours is what we accept
    assert chosen.local == addr("2001:db8::1")
    assert chosen.inner_families == {4}


def test_a_kind_the_remote_did_not_offer_is_never_chosen() -> None:
    policy = LocalEncapPolicy(preference=(EncapKind.GRE,), local_v4=POLICY.local_v4)
    desired = derive_desired([path("2001:db8:5::/48", "192.0.2.2", IPIP)], policy)
    assert desired.tunnels == () and desired.routes == ()
    assert [p.prefix for p in desired.unusable] == [net("2001:db8:5::/48")]


def test_every_common_kind_gets_a_tunnel_but_routes_use_the_preferred() -> None:
    desired = derive_desired([path("198.51.100.0/24", "2001:db8::2", IPIP, GRE)], POLICY)
    assert sorted(t.kind for t in desired.tunnels) == [EncapKind.GRE, EncapKind.IP_IN_IP]
    assert len(desired.routes) == 1


def test_one_tunnel_per_endpoint_and_encapsulation_and_one_route_per_prefix() -> None:
    paths = [
        path("198.51.100.0/25", "2001:db8::2", GRE),
        path("198.51.100.128/25", "2001:db8::2", GRE),
        path("203.0.113.0/24", "2001:db8::3", GRE),
    ]
    desired = derive_desired(paths, POLICY)
    assert len(desired.tunnels) == 2
    assert [str(r.prefix) for r in desired.routes] == [
        "198.51.100.0/25",
        "198.51.100.128/25",
        "203.0.113.0/24",
    ]
    by_prefix = {str(r.prefix): r.tunnel for r in desired.routes}
    assert by_prefix["198.51.100.0/25"] == by_prefix["198.51.100.128/25"]
    assert by_prefix["203.0.113.0/24"] != by_prefix["198.51.100.0/25"]


def test_names_are_stable_short_and_prefixed() -> None:
    name = tunnel_name(addr("2001:db8::2"), GRE)
    assert name == tunnel_name(addr("2001:db8::2"), GRE)
    assert name != tunnel_name(addr("2001:db8::3"), GRE)
    assert name != tunnel_name(addr("2001:db8::2"), EncapOffer(EncapKind.GRE, gre_key=8))
    assert name.startswith("afbr") and len(name) == 15


def test_l2tpv3_serves_one_endpoint_the_others_fall_back() -> None:
    policy = LocalEncapPolicy(
        preference=(EncapKind.L2TPV3_IP, EncapKind.L2TPV3_UDP, EncapKind.GRE),
        local_v4=POLICY.local_v4,
        l2tpv3_session_id=0x100,
    )
    paths = [
        path("198.51.100.0/24", "192.0.2.3", L2TP_IP, L2TP_UDP, GRE),
        path("203.0.113.0/24", "192.0.2.2", L2TP_IP, L2TP_UDP, GRE),
    ]
    desired = derive_desired(paths, policy)
    kinds = {(str(t.remote), t.kind) for t in desired.tunnels}
    # the lowest endpoint keeps L2TPv3 over IP only (and GRE to receive); the other uses GRE
    assert kinds == {
        ("192.0.2.2", EncapKind.L2TPV3_IP),
        ("192.0.2.2", EncapKind.GRE),
        ("192.0.2.3", EncapKind.GRE),
    }
    names = {t.name: t.kind for t in desired.tunnels}
    assert sorted(names[r.tunnel] for r in desired.routes) == [
        EncapKind.GRE,
        EncapKind.L2TPV3_IP,
    ]
    l2tp = next(t for t in desired.tunnels if t.kind is EncapKind.L2TPV3_IP)
    assert (l2tp.local_session_id, l2tp.offer.l2tpv3_session_id) == (0x100, 0x200)


def test_l2tpv3_needs_a_local_session_id() -> None:
    policy = LocalEncapPolicy(preference=(EncapKind.L2TPV3_IP,), local_v4=POLICY.local_v4)
    desired = derive_desired([path("198.51.100.0/24", "192.0.2.2", L2TP_IP)], policy)
    assert desired.tunnels == ()


def test_a_core_family_without_a_local_address_is_unusable() -> None:
    policy = LocalEncapPolicy(local_v6=POLICY.local_v6)
    desired = derive_desired([path("2001:db8:9::/48", "192.0.2.2", GRE)], policy)
    assert desired.tunnels == () and len(desired.unusable) == 1


def test_mtu_is_the_underlay_minus_the_encapsulation() -> None:
    # RFC 5565 §4.3; header sizes from RFC 2784/2890 (GRE), RFC 3931 (L2TPv3), RFC 4719 (Eth).
    assert tunnel_mtu(EncapKind.GRE, 6, GRE, 1500) == 1500 - 40 - 8
    assert tunnel_mtu(EncapKind.GRE, 4, EncapOffer(EncapKind.GRE), 1500) == 1476
    assert tunnel_mtu(EncapKind.IP_IN_IP, 4, IPIP, 1500) == 1480
    assert tunnel_mtu(EncapKind.IP_IN_IP, 6, IPIP, 9000, extra=60) == 9000 - 40 - 60
    assert tunnel_mtu(EncapKind.L2TPV3_IP, 4, L2TP_IP, 1500) == 1500 - 20 - 4 - 8 - 14
    assert tunnel_mtu(EncapKind.L2TPV3_UDP, 6, L2TP_UDP, 1500) == 1500 - 40 - 8 - 4 - 4 - 14
    desired = derive_desired(
        [path("198.51.100.0/24", "2001:db8::2", GRE)],
        LocalEncapPolicy(local_v6=POLICY.local_v6, underlay_mtu=1400, extra_overhead=10),
    )
    assert desired.tunnels[0].mtu == 1400 - 48 - 10


def test_filter_sets_follow_what_each_afbr_advertised() -> None:
    paths = [
        path("198.51.100.0/24", "2001:db8::2", GRE, IPIP),
        path("203.0.113.0/24", "2001:db8::2", GRE),
        path("192.0.2.128/25", "2001:db8::3", GRE),
    ]
    desired = derive_desired(paths, POLICY)
    sources = dict(desired.filters.tunnel_sources)
    for tunnel in desired.tunnels:
        expected = {str(p.prefix) for p in paths if p.endpoint == tunnel.remote}
        assert {str(p) for p in sources[tunnel.name]} == expected
    assert desired.filters.afbr_endpoints == {addr("2001:db8::2"), addr("2001:db8::3")}
    assert desired.filters.bgp_neighbors == POLICY.bgp_neighbors


def test_ipsec_needs_one_entry_per_tunnel_when_policy_asks() -> None:
    paths = [path("198.51.100.0/24", "2001:db8::2", GRE)]
    assert derive_desired(paths, POLICY).ipsec == ()
    policy = LocalEncapPolicy(local_v6=POLICY.local_v6, ipsec=IpsecMode.TRANSPORT)
    (need,) = derive_desired(paths, policy).ipsec
    assert need.mode is IpsecMode.TRANSPORT and need.remote == addr("2001:db8::2")


def test_an_ipv4_mapped_next_hop_means_an_ipv4_core() -> None:
    assert parse_address("::ffff:192.0.2.2") == addr("192.0.2.2")
    assert parse_address("2001:db8::2") == addr("2001:db8::2")


_paths = st.lists(
    st.builds(
        path,
        st.sampled_from(["198.51.100.0/24", "203.0.113.0/24", "2001:db8:7::/48", "10.0.0.0/8"]),
        st.sampled_from(["2001:db8::2", "2001:db8::3", "192.0.2.9"]),
        st.sampled_from([GRE, IPIP, L2TP_IP, L2TP_UDP]),
    ),
    max_size=8,
    unique_by=lambda p: p.prefix,
)


@given(_paths, st.randoms())
def test_the_result_does_not_depend_on_path_order(paths: list[RemotePath], rnd: object) -> None:
    shuffled = list(paths)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert derive_desired(paths, POLICY) == derive_desired(shuffled, POLICY)
