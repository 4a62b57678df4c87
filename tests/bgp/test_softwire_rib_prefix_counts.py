"""Per-neighbor prefix counts of the softwire RIB: paths held, and best paths."""

from __future__ import annotations

from ipaddress import ip_address

from afbr.bgp.exabgp_events import Afi, NeighborDown, PathAttributes, RouteAnnounce
from afbr.bgp.softwire_rib import SoftwireRib

# A Tunnel Encapsulation attribute with one GRE tunnel, key 7 (as in test_softwire_rib_restart).
GRE7 = bytes.fromhex("0002000a01040000000702020800")
RR1, RR2 = "2001:db8::101", "2001:db8::102"


def announce(neighbor: str, local_pref: int, *prefixes: str, encap: bytes = GRE7) -> RouteAnnounce:
    attrs = PathAttributes(local_pref=local_pref, tunnel_encap=encap, tunnel_encap_flags=0xC0)
    return RouteAnnounce(neighbor, Afi.IPV4, ip_address("2001:db8::a"), attrs, prefixes)


def test_received_counts_every_path_and_accepted_the_best() -> None:
    rib = SoftwireRib(6)
    rib.apply(announce(RR1, 100, "198.51.100.0/24", "203.0.113.0/24"))
    rib.apply(announce(RR2, 200, "198.51.100.0/24"))  # higher LOCAL_PREF: best for this one
    assert rib.prefix_counts() == {RR1: (2, 1), RR2: (1, 1)}
    rib.apply(NeighborDown(RR2, "closing connection"))
    assert rib.prefix_counts() == {RR1: (2, 2)}


def test_a_path_set_aside_whole_is_not_counted() -> None:
    rib = SoftwireRib(6)
    rib.apply(announce(RR1, 100, "198.51.100.0/24", encap=b"\xff"))  # malformed attribute
    assert rib.prefix_counts() == {}
    assert sum(rib.counters.values()) >= 1
