"""Graceful Restart in the softwire RIB and the control plane (RFC 4724 §4.2).

Stale marking keeps forwarding, a path sent again is fresh (an identical one is no change),
End-of-RIB sweeps what was not sent again, the stale timer sweeps when End-of-RIB never comes.
The control plane renders End-of-RIB after its own routes and keeps stale paths when a
Graceful-Restart neighbor goes down without a NOTIFICATION.
GRE7 is tests/vectors/tunnel-encap.txt entry 2 (GRE, key 7); the replayed
lines are ExaBGP 5.0.15's own (exabgp_5_0_15_restart.jsonl, see below).
"""

from __future__ import annotations

import json
from dataclasses import replace
from ipaddress import IPv4Address, ip_address, ip_network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from afbr.bgp.control_plane import BgpControlPlane
from afbr.bgp.exabgp_api import ExabgpApiParser
from afbr.bgp.exabgp_config import render_exabgp_config
from afbr.bgp.exabgp_events import (
    Afi,
    EndOfRib,
    NeighborDown,
    NeighborUp,
    PathAttributes,
    PeerOpen,
    RouteAnnounce,
    RouteWithdraw,
)
from afbr.bgp.session_config import (
    BgpSessionConfig,
    NeighborConfig,
    SessionConfigError,
    SwEncap,
    SwEncapKind,
)
from afbr.bgp.softwire_rib import SoftwireRib

GRE7 = bytes.fromhex("0002000a01040000000702020800")
ATTRS = PathAttributes(local_pref=100, tunnel_encap=GRE7, tunnel_encap_flags=0xC0)
RR1, RR2 = "2001:db8::101", "2001:db8::102"
P1, P2, P3 = "198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/25"
V6 = "2001:db8:100::/48"


def announce(neighbor: str, *prefixes: str, next_hop: str = "2001:db8::a") -> RouteAnnounce:
    afi = Afi.IPV6 if ":" in prefixes[0] else Afi.IPV4
    return RouteAnnounce(neighbor, afi, ip_address(next_hop), ATTRS, prefixes)


def restart_120(_neighbor: str) -> float:
    return 120.0


def loaded_rib() -> SoftwireRib:
    rib = SoftwireRib(6)
    rib.apply(NeighborUp(RR1, "2001:db8::2", 65000, 65000))
    rib.apply(announce(RR1, P1, P2, P3))
    rib.apply(announce(RR1, V6))
    return rib


def test_marking_stale_withdraws_nothing_and_ends_the_sessions() -> None:
    rib = loaded_rib()
    before = dict(rib.best_paths())
    rib.mark_stale(10.0, restart_120)
    assert dict(rib.best_paths()) == before  # forwarding stays
    assert len(rib.stale) == 4 and rib.neighbors_up == set() and rib.end_of_rib == {}
    assert rib.next_stale_deadline() == 130.0


def test_identical_reannouncement_is_no_change_and_refreshes() -> None:
    rib = loaded_rib()
    rib.mark_stale(10.0, restart_120)
    rib.apply(NeighborUp(RR1, "2001:db8::2", 65000, 65000))
    assert rib.apply(announce(RR1, P1, P2)) == []  # no flap for the encap manager
    assert len(rib.stale) == 2  # P3 and the IPv6 prefix are still stale


def test_end_of_rib_removes_what_was_not_sent_again_per_family() -> None:
    rib = loaded_rib()
    rib.mark_stale(10.0, restart_120)
    rib.apply(NeighborUp(RR1, "2001:db8::2", 65000, 65000))
    assert rib.apply(announce(RR1, P1, next_hop="2001:db8::b")) == [P1]  # a real change
    assert rib.apply(RouteWithdraw(RR1, Afi.IPV4, (P2,))) == [P2]
    assert rib.apply(EndOfRib(RR1, Afi.IPV4)) == [P3]  # RFC 4724 §4.2
    assert rib.best(P3) is None and rib.best(V6) is not None  # IPv6 waits for its own EoR
    assert rib.apply(EndOfRib(RR1, Afi.IPV6)) == [V6]
    assert len(rib.stale) == 0 and rib.next_stale_deadline() is None
    assert sorted(prefix for prefix, _ in rib.best_paths()) == [P1]


def test_stale_timer_sweeps_without_end_of_rib() -> None:
    rib = loaded_rib()
    rib.mark_stale(10.0, restart_120)
    rib.apply(announce(RR1, P1))
    assert rib.sweep_stale(129.9) == []
    assert sorted(rib.sweep_stale(130.0)) == sorted([P2, P3, V6])
    assert [prefix for prefix, _ in rib.best_paths()] == [P1]
    assert rib.sweep_stale(1000.0) == [] and rib.apply(EndOfRib(RR1, Afi.IPV4)) == []


def test_stale_path_gives_way_to_the_other_reflector_without_a_change() -> None:
    rib = loaded_rib()
    rib.apply(announce(RR2, P1))  # the same path through the second reflector
    rib.mark_stale(None, restart_120, neighbor=RR1)  # RR1's session went down
    assert rib.neighbors_up == set() and len(rib.stale) == 4
    assert rib.sweep_stale(5.0) == []  # the clock starts at this first sweep
    assert rib.next_stale_deadline() == 125.0
    assert sorted(rib.sweep_stale(125.0)) == sorted([P2, P3, V6])  # P1: RR2's copy, same
    best = rib.best(P1)
    assert best is not None and best.neighbor == RR2


def test_neighbor_down_without_graceful_restart_forgets_its_stale_paths() -> None:
    rib = loaded_rib()
    rib.mark_stale(10.0, restart_120)
    assert len(rib.apply(NeighborDown(RR1, "notification received (6,2)"))) == 4
    assert len(rib.stale) == 0 and len(rib) == 0


@settings(max_examples=60, deadline=None)
@given(
    resent=st.sets(st.sampled_from([P1, P2, P3, V6])),
    moved=st.sets(st.sampled_from([P1, P2, P3, V6])),
)
def test_after_both_end_of_ribs_the_rib_is_what_was_sent_again(
    resent: set[str], moved: set[str]
) -> None:
    rib = loaded_rib()
    rib.mark_stale(0.0, restart_120)
    changed: list[str] = []
    for prefix in sorted(resent):
        hop = "2001:db8::b" if prefix in moved else "2001:db8::a"
        changed += rib.apply(announce(RR1, prefix, next_hop=hop))
    changed += rib.apply(EndOfRib(RR1, Afi.IPV4)) + rib.apply(EndOfRib(RR1, Afi.IPV6))
    assert {prefix for prefix, _ in rib.best_paths()} == resent
    # Reported: exactly the prefixes whose forwarding differs from before the restart.
    expected = (resent & moved) | ({P1, P2, P3, V6} - resent)
    assert sorted(changed) == sorted(expected)


def session(graceful_restart: int) -> BgpSessionConfig:
    return BgpSessionConfig(
        local_as=65000,
        router_id=IPv4Address("192.0.2.10"),
        core_address=ip_address("2001:db8::2"),
        neighbors=(
            NeighborConfig(
                ip_address(RR1),
                65000,
                allow_unauthenticated=True,
                graceful_restart=graceful_restart,
            ),
        ),
        client_prefixes=(ip_network("198.51.100.128/25"),),
        sw_encap=(SwEncap(SwEncapKind.GRE, gre_key=7),),
    )


def test_control_plane_sends_end_of_rib_after_its_routes() -> None:
    control = BgpControlPlane(session(120))
    control.apply(PeerOpen(RR1, frozenset({Afi.IPV4, Afi.IPV6})))
    commands = control.apply(NeighborUp(RR1, "2001:db8::2", 65000, 65000))
    assert commands[0].startswith(f"neighbor {RR1} announce attributes next-hop 2001:db8::2 ")
    assert commands[1:] == [
        f"neighbor {RR1} announce eor ipv4 unicast",
        f"neighbor {RR1} announce eor ipv6 unicast",
    ]
    plain = BgpControlPlane(session(0))
    plain.apply(PeerOpen(RR1, frozenset({Afi.IPV4, Afi.IPV6})))
    assert len(plain.apply(NeighborUp(RR1, "x", 1, 1))) == 1  # ExaBGP sends End-of-RIB


def test_end_of_rib_only_for_the_families_the_neighbor_offered() -> None:
    # A peer resets the session on an End-of-RIB of a family it did not negotiate (GoBGP:
    # "Address-family rf 131073 not available for session").
    control = BgpControlPlane(session(120))
    control.apply(PeerOpen(RR1, frozenset({Afi.IPV6})))
    commands = control.apply(NeighborUp(RR1, "2001:db8::2", 65000, 65000))
    assert [c for c in commands if " eor " in c] == [f"neighbor {RR1} announce eor ipv6 unicast"]
    unknown = BgpControlPlane(session(120))  # no OPEN seen: no End-of-RIB at all
    assert not [c for c in unknown.apply(NeighborUp(RR1, "x", 1, 1)) if " eor " in c]


def test_control_plane_connection_lost_then_end_of_rib() -> None:
    control = BgpControlPlane(session(120))
    control.apply(NeighborUp(RR1, "2001:db8::2", 65000, 65000))
    control.apply(announce(RR1, P1, P2))
    control.take_changes()
    generation = control.generation
    control.connection_lost(50.0)
    assert control.take_changes() == set() and control.generation == generation
    assert control.snapshot(51.0)["stale_paths"] == 2
    control.apply(NeighborUp(RR1, "2001:db8::2", 65000, 65000))
    control.apply(announce(RR1, P1))
    control.apply(EndOfRib(RR1, Afi.IPV4))
    assert control.take_changes() == {P2} and control.generation == generation + 1
    control.connection_lost(60.0)
    assert control.sweep_stale(179.0) == [] and control.sweep_stale(180.0) == [P1]
    assert control.take_changes() == {P1}


def test_control_plane_keeps_stale_paths_unless_a_notification_ended_the_session() -> None:
    control = BgpControlPlane(session(120))
    control.apply(announce(RR1, P1))
    control.apply(NeighborDown(RR1, "closing connection"))  # TCP gone: RFC 4724 §4.2
    assert control.rib.best(P1) is not None and control.take_changes() == {P1}
    control.apply(NeighborDown(RR1, "notification received (6,2)"))
    assert control.rib.best(P1) is None and control.take_changes() == {P1}
    plain = BgpControlPlane(session(0))  # no Graceful Restart: down is down
    plain.apply(announce(RR1, P1))
    plain.apply(NeighborDown(RR1, "closing connection"))
    assert plain.rib.best(P1) is None


def test_graceful_restart_is_rendered_with_manual_end_of_rib() -> None:
    argv = ["/usr/bin/afbr-bridge"]
    text = render_exabgp_config(session(120), None, argv, warn=lambda _: None)
    assert "        graceful-restart 120;" in text and "    manual-eor true;" in text
    assert "            open;" in text  # the neighbor's families, for End-of-RIB
    off = render_exabgp_config(session(0), None, argv, warn=lambda _: None)
    assert "graceful-restart" not in off and "manual-eor" not in off and "open;" not in off


@pytest.mark.parametrize("bad", [-1, 4096])
def test_restart_time_is_twelve_bits(bad: int) -> None:
    with pytest.raises(SessionConfigError, match="RFC 4724"):
        session(bad)
    assert session(4095).neighbors[0].graceful_restart == 4095


# Recorded from ExaBGP 5.0.15 under `afbr run` (A's side of test_daemon_graceful_restart.py,
# GoBGP reflector 2001:db8:ffff::1 with Graceful Restart): process 1 is killed (SIGKILL) after
# its End-of-RIBs; process 2, started by the supervisor, flaps "connected"/"down: closing
# connection" while GoBGP clears the old session, comes "up" (the same JSON as a first up),
# gets End-of-RIB ipv6, B's route, End-of-RIB ipv4, and is stopped ("stop, message [shutting
# down]"); process 3 belongs to the restarted daemon.
RESTART = (Path(__file__).parent / "exabgp_5_0_15_restart.jsonl").read_text().splitlines()
RR_GOBGP, B_PREFIX = "2001:db8:ffff::1", "198.51.100.128/25"


def by_process(lines: list[str]) -> list[list[str]]:
    processes: dict[int, list[str]] = {}
    for line in lines:
        processes.setdefault(json.loads(line)["pid"], []).append(line)
    return list(processes.values())


def test_recorded_exabgp_restart_keeps_the_route_without_a_change() -> None:
    first, second, _ = by_process(RESTART)
    config = replace(session(120), core_address=ip_address("2001:db8:ffff::2"))
    config = replace(
        config, neighbors=(replace(config.neighbors[0], address=ip_address(RR_GOBGP)),)
    )
    control = BgpControlPlane(config)
    for line in first:
        control.feed_line(line)
    assert control.take_changes() == {B_PREFIX} and control.rib.converged()
    control.connection_lost(100.0)  # SIGKILL: the bridge connection ends, no event at all
    commands = []
    for line in second[:-2]:  # up to the stop
        commands += control.feed_line(line)
        assert control.rib.best(B_PREFIX) is not None  # never a moment without it
    assert commands[-2:] == [
        f"neighbor {RR_GOBGP} announce eor ipv4 unicast",  # after our route (RFC 4724 §4.1)
        f"neighbor {RR_GOBGP} announce eor ipv6 unicast",
    ]
    assert commands[-3].startswith(f"neighbor {RR_GOBGP} announce attributes ")
    assert control.take_changes() == set()  # re-announced identically: no change at all
    assert len(control.rib.stale) == 0 and control.rib.neighbors_up == {RR_GOBGP}
    stop, shutdown = second[-2:]
    assert "stop, message [shutting down]" in stop and '"shutdown"' in shutdown
    control.feed_line(stop)  # no NOTIFICATION: kept, stale, for the next ExaBGP
    assert control.rib.best(B_PREFIX) is not None and len(control.rib.stale) == 1
    assert control.sweep_stale(200.0) == [] and control.sweep_stale(320.0) == [B_PREFIX]


def test_recorded_open_gives_the_families_for_end_of_rib() -> None:
    first, *_ = by_process(RESTART)
    [line] = [line for line in first if '"type": "open"' in line]
    assert ExabgpApiParser().parse_line(line) == [
        PeerOpen(RR_GOBGP, frozenset({Afi.IPV4, Afi.IPV6}))
    ]
    sent = line.replace('"direction": "receive"', '"direction": "send"')
    assert ExabgpApiParser().parse_line(sent) == []  # our own OPEN says nothing of the peer
    no_mp = json.loads(line)
    del no_mp["neighbor"]["open"]["capabilities"]["1"]
    parsed = ExabgpApiParser().parse_line(json.dumps(no_mp))
    assert parsed == [PeerOpen(RR_GOBGP, frozenset({Afi.IPV4}))]  # RFC 4760 §8


@settings(max_examples=200, deadline=None)
@given(
    capabilities=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=12),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(["name", "families", "1", "x"]), inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_odd_open_lines_raise_only_our_error(capabilities: object) -> None:
    first, *_ = by_process(RESTART)
    [line] = [line for line in first if '"type": "open"' in line]
    message = json.loads(line)
    message["neighbor"]["open"]["capabilities"] = {"1": capabilities}
    message["neighbor"]["open"]["capabilities"]["2"] = {
        "name": "multiprotocol",
        "families": capabilities,
    }
    parser = ExabgpApiParser()
    events = parser.feed(json.dumps(message))  # feed() counts our errors, never raises
    assert all(isinstance(event, PeerOpen) for event in events)


def test_recorded_notification_ends_the_session_for_good() -> None:
    *_, third = by_process(RESTART)
    notification = next(line for line in third if "notification received (6,3)" in line)
    config = replace(session(120), core_address=ip_address("2001:db8:ffff::2"))
    config = replace(
        config, neighbors=(replace(config.neighbors[0], address=ip_address(RR_GOBGP)),)
    )
    control = BgpControlPlane(config)
    for line in third[: third.index(notification)]:
        control.feed_line(line)
    assert control.rib.best(B_PREFIX) is not None
    control.feed_line(notification)  # RFC 4724 §4.2 does not apply after a NOTIFICATION
    assert control.rib.best(B_PREFIX) is None and len(control.rib.stale) == 0
