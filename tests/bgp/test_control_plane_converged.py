"""Convergence is End-of-RIB for the families each neighbor's OPEN offered (RFC 4724 §2)."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address, ip_network

from afbr.bgp.control_plane import BgpControlPlane
from afbr.bgp.exabgp_events import Afi, EndOfRib, NeighborUp, PeerOpen
from afbr.bgp.session_config import BgpSessionConfig, NeighborConfig, SwEncap, SwEncapKind

RR = "2001:db8::1"


def plane() -> BgpControlPlane:
    return BgpControlPlane(
        BgpSessionConfig(
            local_as=65000,
            router_id=IPv4Address("192.0.2.1"),
            core_address=ip_address("2001:db8::a"),
            neighbors=(NeighborConfig(ip_address(RR), 65000, md5_key="rr1"),),
            client_prefixes=(ip_network("198.51.100.0/24"),),
            sw_encap=(SwEncap(SwEncapKind.GRE),),
        )
    )


def test_a_neighbor_offering_one_family_converges_on_its_end_of_rib() -> None:
    cp = plane()
    cp.apply(PeerOpen(RR, frozenset({Afi.IPV4})))
    cp.apply(NeighborUp(RR, "2001:db8::a", 65000, 65000))
    assert not cp.converged()
    cp.apply(EndOfRib(RR, Afi.IPV4))
    assert cp.converged()


def test_without_its_open_both_families_are_awaited() -> None:
    cp = plane()
    cp.apply(NeighborUp(RR, "2001:db8::a", 65000, 65000))
    cp.apply(EndOfRib(RR, Afi.IPV4))
    assert not cp.converged()
    cp.apply(EndOfRib(RR, Afi.IPV6))
    assert cp.converged()
