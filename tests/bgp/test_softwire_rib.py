"""The softwire RIB: best path, implicit withdraw, neighbors going down, the core family rule,
RFC 9012 §13 handling of a bad attribute, and the tunnel endpoint (RFC 5565 §9, RFC 9012 §3.1).

Attribute values: GRE7 and VECTOR1 are tests/vectors/tunnel-encap.txt entries 2
and 1 (seen on the wire, GoBGP-decoded); the rest are built by hand as commented.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from afbr.bgp.exabgp_events import (
    Afi,
    AsPathSegment,
    AsPathSegmentType,
    EndOfRib,
    NeighborDown,
    NeighborUp,
    Origin,
    PathAttributes,
    RouteAnnounce,
    RouteRefresh,
    RouteWithdraw,
)
from afbr.bgp.softwire_rib import PathProblem, SoftwireRib, core_endpoint
from afbr.bgp.tunnel_encap import (
    ErrorHandling,
    TunnelEncapAttribute,
    TunnelEncapError,
    TunnelType,
    decode_tunnel_encap,
)

GRE7 = bytes.fromhex("0002000a01040000000702020800")
VECTOR1 = bytes.fromhex(
    "00020044010400001234020286dd0408030b000000000064061600000000000220010db8ffff00000000"
    "00000000000103160001aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa0001000e010800000042deadbeef"
    "0202080000070004020286dd"
)
IPIP = bytes.fromhex("0007000402020800")  # IP-in-IP, Protocol Type IPv4
TRUNCATED = bytes.fromhex("000200080104")  # TLV length 8 with 2 octets left: treat-as-withdraw
RR1, RR2, PEER = "2001:db8::101", "2001:db8::102", "2001:db8::103"
P1, P2, P3 = "198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/25"
BASE = PathAttributes(local_pref=100, tunnel_encap=GRE7, tunnel_encap_flags=0xC0)


def announce(
    neighbor: str,
    *prefixes: str,
    next_hop: str = "2001:db8::a",
    attrs: PathAttributes = BASE,
    afi: Afi = Afi.IPV4,
) -> RouteAnnounce:
    return RouteAnnounce(neighbor, afi, ip_address(next_hop), attrs, prefixes)


def test_first_path_is_best_and_reported() -> None:
    rib = SoftwireRib(6)
    assert rib.apply(announce(RR1, P1, P2)) == [P1, P2]
    best = rib.best(P1)
    assert best is not None and best is rib.best(P2)  # one shared path object
    assert best.endpoint == ip_address("2001:db8::a")  # RFC 5565 §9: the next hop
    assert [t.tunnel.tunnel_type for t in best.tunnels] == [TunnelType.GRE]
    assert best.tunnels[0].endpoint == best.endpoint and best.tunnels[0].tunnel.gre_key == 7
    assert best.problems == () and len(rib) == 2


def _as_path(length: int) -> tuple[AsPathSegment, ...]:
    return (AsPathSegment(AsPathSegmentType.AS_SEQUENCE, tuple(range(65001, 65001 + length))),)


# (better, worse): each differs from the other in one step of the decision process.
PREFERENCES: list[tuple[str, dict[str, object], dict[str, object]]] = [
    ("local-pref", {"local_pref": 200}, {"local_pref": 100}),
    ("local-pref default 100", {"local_pref": None}, {"local_pref": 99}),
    ("as-path", {"as_path": _as_path(1)}, {"as_path": _as_path(2)}),
    ("origin", {"origin": Origin.IGP}, {"origin": Origin.INCOMPLETE}),
    ("med", {"med": 5}, {"med": 10}),
    ("missing med is 0", {"med": None}, {"med": 1}),
    (
        "originator-id",
        {"originator_id": IPv4Address("192.0.2.1")},
        {"originator_id": IPv4Address("192.0.2.2")},
    ),
    (
        "cluster-list",
        {"cluster_list": (IPv4Address("192.0.2.7"),)},
        {"cluster_list": (IPv4Address("192.0.2.7"), IPv4Address("192.0.2.8"))},
    ),
]


@pytest.mark.parametrize(("better", "worse"), [(b, w) for _, b, w in PREFERENCES])
@pytest.mark.parametrize("better_first", [True, False])
def test_best_path_decision(
    better: dict[str, object], worse: dict[str, object], better_first: bool
) -> None:
    rib = SoftwireRib(6)
    # The better path loses every later tie-break (higher next hop, higher neighbor address).
    good = announce(RR2, P1, next_hop="2001:db8::c", attrs=replace(BASE, **better))  # type: ignore[arg-type]
    bad = announce(RR1, P1, next_hop="2001:db8::b", attrs=replace(BASE, **worse))  # type: ignore[arg-type]
    for event in (good, bad) if better_first else (bad, good):
        rib.apply(event)
    best = rib.best(P1)
    assert best is not None and best.neighbor == RR2
    assert len(rib.paths(P1)) == 2


def test_lowest_next_hop_then_neighbor_breaks_ties() -> None:
    rib = SoftwireRib(6)
    rib.apply(announce(RR2, P1, next_hop="2001:db8::b"))
    rib.apply(announce(RR1, P1, next_hop="2001:db8::c"))
    best = rib.best(P1)
    assert best is not None and best.next_hop == ip_address("2001:db8::b")
    other = SoftwireRib(6)
    other.apply(announce(RR2, P1))
    other.apply(announce(RR1, P1))
    best = other.best(P1)
    assert best is not None and best.neighbor == RR1


def test_duplicates_from_two_reflectors_do_not_churn() -> None:
    rib = SoftwireRib(6)
    assert rib.apply(announce(RR1, P1, P2)) == [P1, P2]
    assert rib.apply(announce(RR2, P1, P2)) == []  # same forwarding: nothing to redo
    assert rib.apply(RouteWithdraw(RR1, Afi.IPV4, (P1,))) == []
    best = rib.best(P1)
    assert best is not None and best.neighbor == RR2
    assert rib.apply(NeighborDown(RR2, "hold timer")) == [P1]  # P1 now has no path at all
    assert rib.best(P1) is None
    best = rib.best(P2)
    assert best is not None and best.neighbor == RR1


def test_implicit_withdraw_replaces_the_neighbors_path() -> None:
    rib = SoftwireRib(6)
    rib.apply(announce(RR1, P1))
    assert rib.apply(announce(RR1, P1, next_hop="2001:db8::b")) == [P1]
    [path] = rib.paths(P1)
    assert path.endpoint == ip_address("2001:db8::b")
    assert rib.apply(announce(RR1, P1, next_hop="2001:db8::b")) == []  # same again


def test_withdraw_and_unknown_withdraw() -> None:
    rib = SoftwireRib(6)
    rib.apply(announce(RR1, P1, P2))
    assert rib.apply(RouteWithdraw(RR1, Afi.IPV4, (P1, P3))) == [P1]
    assert rib.apply(RouteWithdraw(RR2, Afi.IPV4, (P2,))) == []
    assert rib.best(P1) is None and rib.best(P2) is not None


def test_neighbor_down_removes_only_its_paths() -> None:
    rib = SoftwireRib(6)
    rib.apply(announce(RR1, P1, P2))
    rib.apply(announce(PEER, P2, P3, next_hop="2001:db8::b"))
    changed = rib.apply(NeighborDown(RR1, "closing connection"))
    assert sorted(changed) == sorted([P1, P2])  # P2 moved to PEER's next hop
    assert rib.best(P1) is None
    best = rib.best(P2)
    assert best is not None and best.neighbor == PEER
    assert len(rib) == 2


def test_end_of_rib_tracking() -> None:
    rib = SoftwireRib(6)
    rib.apply(NeighborUp(RR1, "2001:db8::a", 65001, 65001))
    assert not rib.converged()
    rib.apply(EndOfRib(RR1, Afi.IPV4))
    assert not rib.converged()
    rib.apply(EndOfRib(RR1, Afi.IPV6))
    assert rib.converged()
    rib.apply(NeighborUp(RR2, "2001:db8::a", 65001, 65001))
    assert not rib.converged()
    rib.apply(NeighborDown(RR2, "gone"))
    assert rib.converged()
    assert rib.apply(RouteRefresh(RR1, Afi.IPV4, "query")) == []


def test_next_hop_not_of_the_core_family_is_not_used() -> None:
    rib = SoftwireRib(6)
    rib.apply(announce(RR1, P1, P2))
    # RR1 now sends an IPv4 next hop: the new path replaces the old one and cannot be used.
    assert rib.apply(announce(RR1, P1, P2, next_hop="192.0.2.10")) == [P1, P2]
    assert rib.best(P1) is None
    assert rib.counters == {PathProblem.NEXT_HOP_NOT_CORE_FAMILY.value: 2}
    rib.apply(announce(RR2, P3, next_hop="::ffff:192.0.2.10"))  # mapped: an IPv4 address
    assert rib.best(P3) is None
    assert rib.counters[PathProblem.NEXT_HOP_NOT_CORE_FAMILY.value] == 3


def test_ipv4_core_takes_ipv4_mapped_next_hops() -> None:
    rib = SoftwireRib(4)
    rib.apply(announce(RR1, "2001:db8:1::/48", next_hop="::ffff:192.0.2.10", afi=Afi.IPV6))
    best = rib.best("2001:db8:1::/48")
    assert best is not None and best.endpoint == IPv4Address("192.0.2.10")  # RFC 4798 §2
    rib.apply(announce(RR1, "2001:db8:2::/48", next_hop="2001:db8::a", afi=Afi.IPV6))
    assert rib.best("2001:db8:2::/48") is None


@pytest.mark.parametrize(
    ("next_hop", "family", "expected"),
    [
        ("2001:db8::a", 6, "2001:db8::a"),
        ("2001:db8::a", 4, None),
        ("192.0.2.1", 4, "192.0.2.1"),
        ("192.0.2.1", 6, None),
        ("::ffff:192.0.2.1", 4, "192.0.2.1"),
        ("::ffff:192.0.2.1", 6, None),
    ],
)
def test_core_endpoint(next_hop: str, family: int, expected: str | None) -> None:
    result = core_endpoint(ip_address(next_hop), family)
    assert result == (None if expected is None else ip_address(expected))


def test_unusable_next_hop_address() -> None:
    rib = SoftwireRib(6)
    rib.apply(announce(RR1, P1, next_hop="::"))
    assert rib.best(P1) is None
    assert rib.counters == {PathProblem.NEXT_HOP_INVALID.value: 1}


def test_malformed_attribute_is_treat_as_withdraw() -> None:
    rib = SoftwireRib(6)
    rib.apply(announce(RR1, P1))
    rib.apply(announce(RR2, P1, next_hop="2001:db8::b"))
    bad = replace(BASE, tunnel_encap=TRUNCATED)
    assert rib.apply(announce(RR1, P1, attrs=bad)) == [P1]  # RFC 9012 §13
    [path] = rib.paths(P1)
    assert path.neighbor == RR2
    assert rib.counters == {PathProblem.TUNNEL_ENCAP_TREAT_AS_WITHDRAW.value: 1}


def test_attribute_not_marked_transitive_is_treat_as_withdraw() -> None:
    rib = SoftwireRib(6)
    rib.apply(announce(RR1, P1, attrs=replace(BASE, tunnel_encap_flags=0x80)))  # RFC 7606 §3
    assert rib.best(P1) is None
    assert rib.counters == {PathProblem.TUNNEL_ENCAP_TREAT_AS_WITHDRAW.value: 1}


def test_other_handling_keeps_the_route_without_the_attribute() -> None:
    def decode(data: bytes) -> TunnelEncapAttribute:
        raise TunnelEncapError(3, "made up", ErrorHandling.DISCARD_TLV)

    rib = SoftwireRib(6, decode)
    assert rib.apply(announce(RR1, P1, P2)) == [P1, P2]
    best = rib.best(P1)
    assert best is not None
    assert best.tunnel_encap is None and best.tunnels == ()
    assert best.problem_kinds == (PathProblem.TUNNEL_ENCAP_DISCARDED,)
    assert "made up" in best.problems[0]
    assert rib.counters == {PathProblem.TUNNEL_ENCAP_DISCARDED.value: 2}


def test_tunnel_egress_endpoint_sub_tlv_gives_that_tunnels_endpoint() -> None:
    rib = SoftwireRib(6)
    rib.apply(announce(RR1, P1, attrs=replace(BASE, tunnel_encap=VECTOR1)))
    best = rib.best(P1)
    assert best is not None
    endpoints = {int(t.tunnel.tunnel_type): str(t.endpoint) for t in best.tunnels}
    assert endpoints == {
        TunnelType.GRE: "2001:db8:ffff::1",  # RFC 9012 §3.1
        TunnelType.L2TPV3_OVER_IP: "2001:db8::a",
        TunnelType.IP_IN_IP: "2001:db8::a",
    }


def test_egress_endpoint_of_the_wrong_family_drops_that_tunnel() -> None:
    rib = SoftwireRib(4)
    event = announce(
        RR1,
        "2001:db8:1::/48",
        next_hop="::ffff:192.0.2.10",
        attrs=replace(BASE, tunnel_encap=VECTOR1),
        afi=Afi.IPV6,
    )
    rib.apply(event)
    best = rib.best("2001:db8:1::/48")
    assert best is not None
    assert [int(t.tunnel.tunnel_type) for t in best.tunnels] == [
        TunnelType.L2TPV3_OVER_IP,
        TunnelType.IP_IN_IP,
    ]
    assert rib.counters == {PathProblem.EGRESS_ENDPOINT_NOT_CORE_FAMILY.value: 1}


def test_route_without_attribute_has_no_tunnels() -> None:
    rib = SoftwireRib(6)
    rib.apply(announce(RR1, P1, attrs=PathAttributes()))
    best = rib.best(P1)
    assert best is not None and best.tunnel_encap is None and best.tunnels == ()
    assert best.problems == ()


def test_each_distinct_attribute_is_decoded_once() -> None:
    calls: list[bytes] = []

    def counting(data: bytes) -> TunnelEncapAttribute:
        calls.append(data)
        return decode_tunnel_encap(data)

    rib = SoftwireRib(6, counting)
    for index in range(200):
        rib.apply(announce(RR1, f"10.{index}.0.0/16"))
        rib.apply(announce(RR2, f"10.{index}.0.0/16", next_hop="2001:db8::b"))
        rib.apply(announce(RR1, f"10.{index}.1.0/24", attrs=replace(BASE, tunnel_encap=IPIP)))
    assert sorted(calls) == sorted([GRE7, IPIP])


def test_a_hundred_thousand_prefixes_share_their_paths() -> None:
    rib = SoftwireRib(6)
    prefixes = [f"10.{i >> 8}.{i & 255}.0/24" for i in range(100_000)]
    for start in range(0, len(prefixes), 500):
        chunk = tuple(prefixes[start : start + 500])
        rib.apply(RouteAnnounce(RR1, Afi.IPV4, ip_address("2001:db8::a"), BASE, chunk))
        rib.apply(RouteAnnounce(RR2, Afi.IPV4, ip_address("2001:db8::a"), BASE, chunk))
    assert len(rib) == 100_000
    assert len({id(path) for _, path in rib.best_paths()}) == 1
    assert len(rib.apply(NeighborDown(RR1, "x"))) == 0  # RR2's copies take over silently
    assert len(rib.apply(NeighborDown(RR2, "x"))) == 100_000
    assert len(rib) == 0


# -- against a naive model: recompute every best path from scratch after each event -------

NEIGHBORS = (RR1, RR2, PEER)
PREFIXES = (P1, P2, P3)
ATTRIBUTE_CHOICES = (
    BASE,
    replace(BASE, local_pref=200),
    replace(BASE, med=7),
    replace(BASE, tunnel_encap=IPIP),
    replace(BASE, tunnel_encap=TRUNCATED),  # treat-as-withdraw
)
NEXT_HOPS = ("2001:db8::a", "2001:db8::b", "192.0.2.1")  # the last is not of the core

events = st.one_of(
    st.builds(
        lambda n, ps, nh, a: announce(n, *ps, next_hop=nh, attrs=a),
        st.sampled_from(NEIGHBORS),
        st.lists(st.sampled_from(PREFIXES), min_size=1, max_size=3, unique=True),
        st.sampled_from(NEXT_HOPS),
        st.sampled_from(ATTRIBUTE_CHOICES),
    ),
    st.builds(
        lambda n, ps: RouteWithdraw(n, Afi.IPV4, tuple(ps)),
        st.sampled_from(NEIGHBORS),
        st.lists(st.sampled_from(PREFIXES), min_size=1, max_size=3, unique=True),
    ),
    st.builds(lambda n: NeighborDown(n, "test"), st.sampled_from(NEIGHBORS)),
)


def _usable(event: RouteAnnounce) -> bool:
    return event.next_hop.version == 6 and event.attributes.tunnel_encap != TRUNCATED


def _model_best(model: dict[tuple[str, str], RouteAnnounce], prefix: str) -> object:
    candidates = [
        (-(e.attributes.local_pref or 100), e.attributes.med or 0, int(e.next_hop), n)
        for (n, p), e in model.items()
        if p == prefix
    ]
    if not candidates:
        return None
    _, _, next_hop, neighbor = min(candidates)
    event = model[(neighbor, prefix)]
    return (neighbor, next_hop, event.attributes.tunnel_encap)


@settings(max_examples=300)
@given(st.lists(events, max_size=25))
def test_rib_matches_a_from_scratch_model(sequence: list[RouteAnnounce]) -> None:
    rib = SoftwireRib(6)
    model: dict[tuple[str, str], RouteAnnounce] = {}
    for event in sequence:
        before = {p: rib.best(p) for p in PREFIXES}
        changed = rib.apply(event)
        if isinstance(event, RouteAnnounce):
            for prefix in event.prefixes:
                model.pop((event.neighbor, prefix), None)
                if _usable(event):
                    model[(event.neighbor, prefix)] = event
        elif isinstance(event, RouteWithdraw):
            for prefix in event.prefixes:
                model.pop((event.neighbor, prefix), None)
        else:
            model = {k: v for k, v in model.items() if k[0] != event.neighbor}
        for prefix in PREFIXES:
            best = rib.best(prefix)
            got = (
                None
                if best is None
                else (best.neighbor, int(best.next_hop), best.attributes.tunnel_encap)
            )
            assert got == _model_best(model, prefix)
            old = before[prefix]
            moved = (old is None) != (best is None) or (
                old is not None and best is not None and old.forwarding != best.forwarding
            )
            assert (prefix in changed) == moved
