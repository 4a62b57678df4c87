"""The side-car's mesh view and audit, fed with the events the ExaBGP parser produces."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address

from afbr.bgp.exabgp_events import Afi, NeighborDown, PathAttributes, RouteAnnounce, RouteWithdraw
from afbr.bgp.mesh_view import MeshView
from afbr.bgp.tunnel_encap import (
    Authenticator,
    Tunnel,
    TunnelEncapAttribute,
    encode_tunnel_encap,
)

AUTH = bytes(range(20))


def attrs(
    *tunnels: Tunnel, originator: str | None = None, raw: bytes | None = None
) -> PathAttributes:
    value = raw if raw is not None else encode_tunnel_encap(TunnelEncapAttribute(tunnels))
    return PathAttributes(
        local_pref=100,
        originator_id=IPv4Address(originator) if originator else None,
        tunnel_encap=value,
    )


def announce(neighbor: str, next_hop: str, a: PathAttributes, *prefixes: str) -> RouteAnnounce:
    return RouteAnnounce(neighbor, Afi.IPV4, ip_address(next_hop), a, prefixes)


GOOD = attrs(
    Tunnel.gre(key=7).with_authenticator(Authenticator(1, AUTH)),
    Tunnel.ip_in_ip(),
    originator="192.0.2.10",
)


def test_two_reflectors_reflecting_one_afbr_make_one_entry() -> None:
    view = MeshView(core_family=6, require_authenticator=True)
    for rr in ("2001:db8::1", "2001:db8::2"):
        view.apply(announce(rr, "2001:db8::a", GOOD, "198.51.100.0/25"))
    afbrs = view.afbrs()
    assert list(afbrs) == ["192.0.2.10"]
    entry = afbrs["192.0.2.10"]
    assert entry["prefixes"] == ["198.51.100.0/25"]
    assert entry["tunnel_types"] == [2, 7]
    assert entry["authenticator"] == AUTH.hex()
    assert view.audit() == []
    assert view.summary()["conflicts"] == 0


def test_each_kind_of_finding_is_reported_with_its_rfc() -> None:
    view = MeshView(core_family=6, require_authenticator=True)
    view.apply(announce("rr", "2001:db8::a", GOOD, "198.51.100.0/25"))
    view.apply(
        announce(
            "rr2", "2001:db8::b", attrs(Tunnel.gre(), originator="192.0.2.11"), "198.51.100.0/25"
        )
    )  # claims A's prefix, and has no authenticator
    view.apply(
        announce("rr", "192.0.2.99", attrs(Tunnel.gre(), originator="192.0.2.12"), "203.0.113.0/24")
    )  # IPv4 next hop over an IPv6 core
    view.apply(
        announce(
            "rr",
            "2001:db8::d",
            attrs(raw=bytes.fromhex("0002000a01"), originator="192.0.2.13"),
            "203.0.113.128/25",
        )
    )
    findings = {(row["afbr"], row["rfc"]) for row in view.audit()}
    assert ("192.0.2.11", "RFC 5566 §4; RFC 5619 §4.4.2") in findings
    assert ("192.0.2.10, 192.0.2.11", "RFC 5565 §5") in findings
    assert ("192.0.2.12", "RFC 5565 §9") in findings
    assert ("192.0.2.13", "RFC 9012 §13") in findings
    assert view.conflicts() == {"198.51.100.0/25": ["192.0.2.10", "192.0.2.11"]}


def test_withdraw_and_neighbor_down_forget_routes() -> None:
    view = MeshView(core_family=6)
    view.apply(announce("rr1", "2001:db8::a", GOOD, "198.51.100.0/25", "198.51.100.128/25"))
    view.apply(RouteWithdraw("rr1", Afi.IPV4, ("198.51.100.0/25",)))
    assert view.afbrs()["192.0.2.10"]["prefixes"] == ["198.51.100.128/25"]
    view.apply(NeighborDown("rr1", "closed"))
    assert view.afbrs() == {}
