"""The IPsec agent's keeper: who initiates when, repairs, start-overs, backoff, duplicates."""

from __future__ import annotations

import itertools

import pytest

from afbr.daemon.ipsec_keeper import (
    IkeSaView,
    IkeStatus,
    Initiate,
    PeerKeeper,
    PeerView,
    RepairChild,
    StartOver,
    redundant,
)

PEER = "2001:db8::b"


def view(ike: IkeStatus = IkeStatus.NONE, **changes: object) -> PeerView:
    fields: dict[str, object] = {
        "remote": PEER,
        "lower": True,
        "ike": ike,
        "keyed": False,
        "broken": (),
        "initiating": False,
    }
    fields.update(changes)
    return PeerView(**fields)  # type: ignore[arg-type]


def test_the_lower_address_initiates_at_once_the_higher_a_little_later() -> None:
    keeper = PeerKeeper(higher_delay=0.5)
    assert keeper.decide(view(lower=True), 10.0) == [Initiate(PEER, "no IKE SA")]
    higher = PeerKeeper(higher_delay=0.5)
    assert higher.decide(view(lower=False), 10.0) == []
    assert higher.next_deadline() == 10.5
    assert higher.decide(view(lower=False), 10.5) == [Initiate(PEER, "no IKE SA")]


def test_without_an_sa_the_keeper_keeps_trying_with_bounded_backoff() -> None:
    keeper = PeerKeeper(backoff_first=1.0, factor=1.5, ceiling=30.0)
    tries: list[float] = []
    now = 0.0
    while now < 600.0:
        ike = IkeStatus.CONNECTING if tries else IkeStatus.NONE  # our attempt, under way
        if keeper.decide(view(ike=ike, initiating=bool(tries)), now):
            tries.append(now)
        now = round(now + 0.05, 2)
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert gaps[:3] == pytest.approx([1.0, 1.5, 2.25], abs=0.051)
    assert max(gaps) <= 30.05 and gaps[-1] >= 29.95  # bounded, and it never gives up
    assert keeper.counters["initiations"] == len(tries)


def test_nobody_initiates_while_the_peer_is_connecting_to_us() -> None:
    keeper = PeerKeeper()
    assert keeper.decide(view(ike=IkeStatus.CONNECTING, initiating=False), 0.0) == []
    assert keeper.decide(view(ike=IkeStatus.CONNECTING, initiating=False), 0.9) == []
    # the peer's attempt went nowhere: our own try follows
    assert keeper.decide(view(), 2.0) == [Initiate(PEER, "no IKE SA")]


def test_a_healthy_peer_resets_the_backoff() -> None:
    keeper = PeerKeeper()
    for t in (0.0, 1.0, 2.5, 4.75):
        assert keeper.decide(view(), t)
    assert keeper.attempts(PEER) == 4
    assert keeper.decide(view(IkeStatus.ESTABLISHED, keyed=True), 5.0) == []
    assert keeper.attempts(PEER) == 0
    assert keeper.decide(view(), 6.0) == [Initiate(PEER, "no IKE SA")]  # at once again


def test_a_child_sa_lost_from_the_kernel_is_rekeyed_then_started_over() -> None:
    keeper = PeerKeeper(repair_timeout=5.0)
    broken = view(IkeStatus.ESTABLISHED, broken=(0x1234,))
    assert keeper.decide(broken, 0.0) == [RepairChild(PEER, 0x1234)]
    assert keeper.decide(broken, 4.9) == []  # one repair at a time
    (action,) = keeper.decide(broken, 5.0)
    assert isinstance(action, StartOver) and action.remote == PEER
    assert keeper.counters == {"initiations": 0, "repairs": 1, "start_overs": 1}


def test_an_ike_sa_without_any_child_sa_gets_a_new_one() -> None:
    keeper = PeerKeeper()
    assert keeper.decide(view(IkeStatus.ESTABLISHED), 0.0) == [RepairChild(PEER, 0)]


def test_a_repaired_peer_needs_no_start_over() -> None:
    keeper = PeerKeeper(repair_timeout=5.0)
    assert keeper.decide(view(IkeStatus.ESTABLISHED, broken=(7,)), 0.0)
    assert keeper.decide(view(IkeStatus.ESTABLISHED, keyed=True), 1.0) == []
    assert keeper.decide(view(IkeStatus.ESTABLISHED, keyed=True), 9.0) == []
    assert keeper.counters["start_overs"] == 0


def test_duplicates_from_a_simultaneous_start_the_higher_address_drops_its_own() -> None:
    ours = IkeSaView(b"o", True, established_at=10.0, last_received=10.0)
    theirs = IkeSaView(b"t", False, established_at=10.1, last_received=10.1)
    assert redundant([ours, theirs], lower=True) == ([], [])
    # not yet shown alive after ours came up: probe it first (a stale SA must not win)
    stale = IkeSaView(b"t", False, established_at=5.0, last_received=5.0)
    assert redundant([ours, stale], lower=False) == ([], [b"t"])
    assert redundant([ours, theirs], lower=False) == ([b"o"], [])
    assert redundant([ours], lower=False) == ([], [])
