"""Per-neighbor bookkeeping of the control plane (`afbr neighbors`), fed the lines a real
ExaBGP 5.0.15 wrote (exabgp_5_0_15_restart.jsonl: a session up, ExaBGP restarted twice, the
reflector ending the session with a NOTIFICATION Cease/Administrative Reset (6,3))."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, ip_address, ip_network
from pathlib import Path

from afbr.bgp.control_plane import BgpControlPlane, NeighborRecord
from afbr.bgp.exabgp_events import NeighborDown, NeighborUp
from afbr.bgp.session_config import BgpSessionConfig, NeighborConfig, SwEncap, SwEncapKind

CAPTURE = (Path(__file__).parent / "exabgp_5_0_15_restart.jsonl").read_text().splitlines()
PEER = "2001:db8:ffff::1"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def plane(clock: Clock) -> BgpControlPlane:
    session = BgpSessionConfig(
        local_as=65000,
        router_id=IPv4Address("192.0.2.10"),
        core_address=ip_address("2001:db8:ffff::2"),
        neighbors=(NeighborConfig(ip_address(PEER), 65000, allow_unauthenticated=True),),
        client_prefixes=(ip_network("198.51.100.128/25"),),
        sw_encap=(SwEncap(SwEncapKind.GRE, gre_key=7),),
    )
    return BgpControlPlane(session, clock=clock)


def test_the_capture_leaves_the_notification_and_the_open_families() -> None:
    clock = Clock()
    control = plane(clock)
    seen_up_at = None
    for second, line in enumerate(CAPTURE):
        clock.now = float(second)
        control.feed_line(line)
        record = control.neighbor_records.get(PEER)
        if record is not None and record.up and seen_up_at is None:
            seen_up_at = second
    record = control.neighbor_records[PEER]
    last_down = max(
        i for i, line in enumerate(CAPTURE) if '"state": "down"' in line and PEER in line
    )
    assert record.up is False
    assert record.since == float(last_down)
    assert record.last_down_reason == "notification received (6,3)"
    assert record.families == ("ipv4/unicast", "ipv6/unicast")
    first_up = json.loads(CAPTURE[seen_up_at or 0])
    assert first_up["neighbor"]["state"] == "up"
    assert record.peer_as == first_up["neighbor"]["asn"]["peer"] == 65000
    assert record.local_address == "2001:db8:ffff::2"


def test_failed_connection_attempts_keep_the_time_and_the_notification() -> None:
    clock = Clock()
    control = plane(clock)
    control.apply(NeighborUp(PEER, "2001:db8:ffff::2", 65000, 65000))
    clock.now = 10.0
    control.apply(NeighborDown(PEER, "notification received (6,3)"))
    clock.now = 20.0
    control.apply(NeighborDown(PEER, "closing connection"))  # a reconnect that failed
    assert control.neighbor_records[PEER] == NeighborRecord(
        up=False,
        since=10.0,
        last_down_reason="notification received (6,3)",
        peer_as=65000,
        local_address="2001:db8:ffff::2",
    )
    clock.now = 30.0
    control.apply(NeighborDown(PEER, "notification sent (2,2)"))  # a later NOTIFICATION wins
    assert control.neighbor_records[PEER].last_down_reason == "notification sent (2,2)"
    assert control.neighbor_records[PEER].since == 10.0


def test_exabgp_going_away_ends_every_session_at_that_time() -> None:
    clock = Clock()
    control = plane(clock)
    control.apply(NeighborUp(PEER, "2001:db8:ffff::2", 65000, 65000))
    clock.now = 5.0
    control.connection_lost(5.0)
    record = control.neighbor_records[PEER]
    assert (record.up, record.since, record.last_down_reason) == (False, 5.0, None)
