"""RFC 5619 §3.4.1 activity in the log: BGP sessions up/down, filtered packets."""

from __future__ import annotations

import logging

import pytest

from afbr.bgp.exabgp_events import NeighborDown, NeighborUp
from afbr.daemon.activity_log import FilteredPackets, log_session_event


def test_sessions_up_and_down_are_logged_with_their_event(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "afbr.activity")
    log_session_event(NeighborUp("2001:db8::1", "2001:db8::a", 65000, 65000))
    log_session_event(NeighborDown("2001:db8::1", "hold timer expired"))
    assert [(r.levelname, r.event, r.getMessage()) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("INFO", "bgp-up", "BGP session with 2001:db8::1 up (AS 65000)"),
        ("WARNING", "bgp-down", "BGP session with 2001:db8::1 down: hold timer expired"),
    ]


def test_filtered_packets_are_logged_as_increases(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "afbr.activity")
    filtered = FilteredPackets()
    base = {"spoof_afbr0123": 5, "tunnel_from_unknown": 0, "dataplane_errors": 7}
    assert filtered.record(base) == []  # the first reading is the baseline
    later = {"spoof_afbr0123": 9, "tunnel_from_unknown": 2, "dataplane_errors": 8}
    assert filtered.record(later) == [("spoof_afbr0123", 4), ("tunnel_from_unknown", 2)]
    assert filtered.record(later) == []  # nothing new, nothing logged
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "filtered 4 decapsulated packets with an inner source the AFBR behind softwire "
        "afbr0123 did not advertise",
        "filtered 2 tunnel packets from an address that is no known AFBR endpoint",
    ]
    assert {r.event for r in caplog.records} == {"filtered"}  # type: ignore[attr-defined]


def test_a_counter_that_was_reset_becomes_the_new_base() -> None:
    filtered = FilteredPackets()
    filtered.record({"bgp_from_unknown": 10})
    assert filtered.record({"bgp_from_unknown": 3}) == []  # table rewritten: counting restarts
    assert filtered.record({"bgp_from_unknown": 5}) == [("bgp_from_unknown", 2)]
