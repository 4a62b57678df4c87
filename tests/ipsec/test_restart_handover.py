"""A restart of afbr hands the traffic from the old SAs to new ones without a gap (issue 6).

Real IKE exchanges (two in-memory dispatchers, ike_pair) produce the events; real XFRM states
in a namespace of the UML kernel take them (ESP SAs need the kernel's esp4, which the host
lacks).  The installer's scheduler is the one thing not real: the test keeps the delayed
actions and runs them when it says time has passed, so every step between can be checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from ike_pair import ADDR_A, ADDR_B, Pair, psk_configs, seeded

from afbr.dataplane.xfrm import REQID_MIN, list_sas
from afbr.dataplane.xfrm_socket import XfrmSocket
from afbr.ipsec import ChildSaDeleted, ChildSaEstablished, IkeDispatcher, IkeEvent
from afbr.ipsec.xfrm_adapter import LINGER, SWITCH_DELAY, PeerBinding, XfrmChildInstaller
from afbr.lab.netns import Lab

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

BINDING = PeerBinding(if_id=0x5A01, reqid=REQID_MIN + 0x5A01)


class Clock:
    """The installer's scheduler, run by hand: `advance` runs what has come due."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def schedule(self, delay: float, action: Callable[[], None]) -> None:
        self.pending.append((self.now + delay, action))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = sorted((t, i) for i, (t, _a) in enumerate(self.pending) if t <= self.now)
        actions = [self.pending[i][1] for _t, i in due]
        self.pending = [p for p in self.pending if p[0] > self.now]
        for action in actions:
            action()


@pytest.fixture
def xfrm(lab: Lab) -> Iterator[XfrmSocket]:
    host = lab.host("rh")
    with XfrmSocket(host.name) as sock:
        yield sock


def kernel_spis(sock: XfrmSocket) -> set[int]:
    return {state.spi for state in list_sas(sock)}


def installer_for(sock: XfrmSocket, peer: str, clock: Clock) -> XfrmChildInstaller:
    return XfrmChildInstaller(
        sock, lambda ip: BINDING if ip == peer else None, schedule=clock.schedule
    )


def apply_all(installer: XfrmChildInstaller, events: list[IkeEvent]) -> None:
    for event in events:
        installer.apply(event)
    assert installer.failures == 0


def restart_a(pair: Pair) -> None:
    """A loses its IKE state (afbr restarted) and connects again, with INITIAL_CONTACT."""
    pair.now += 1.0  # a restart takes time: the old SA is from before the new one
    pair.a.dispatcher = IkeDispatcher(lambda addr: pair.config_a, seeded(77))
    pair.a.dispatcher.connect(pair.config_a, ADDR_A, ADDR_B, pair.now)
    pair.pump()


def spis(event: IkeEvent) -> tuple[int, int]:
    assert isinstance(event, ChildSaEstablished)
    return event.child.inbound.spi, event.child.outbound.spi


def test_the_peer_of_a_restarted_afbr_switches_late_and_drops_the_old_pair_later(
    xfrm: XfrmSocket,
) -> None:
    clock = Clock()
    b = installer_for(xfrm, ADDR_A[0], clock)
    pair = Pair(*psk_configs())
    pair.connect()
    apply_all(b, pair.b.events)
    (old_in, old_out) = spis(pair.b.of_type(ChildSaEstablished)[0])
    assert kernel_spis(xfrm) == {old_in, old_out}  # first contact: both at once

    seen = len(pair.b.events)
    restart_a(pair)
    new_events = pair.b.events[seen:]
    assert any(isinstance(e, ChildSaDeleted) for e in new_events)  # INITIAL_CONTACT
    apply_all(b, new_events)
    (new_in, new_out) = spis(pair.b.of_type(ChildSaEstablished)[-1])
    # A installs its new inbound SA only when B's answer arrives: B keeps sending on the old
    # pair, and keeps receiving on it (A's packets in flight), but can receive on the new one
    assert kernel_spis(xfrm) == {old_in, old_out, new_in}
    clock.advance(SWITCH_DELAY)
    assert kernel_spis(xfrm) == {old_in, old_out, new_in, new_out}
    clock.advance(LINGER)
    assert kernel_spis(xfrm) == {new_in, new_out}
    assert set(b.children) == {new_in}


def test_a_restarted_afbr_switches_at_once_and_drops_its_orphans_after_the_peer_switched(
    xfrm: XfrmSocket,
) -> None:
    clock = Clock()
    pair = Pair(*psk_configs())
    pair.connect()
    before = installer_for(xfrm, ADDR_B[0], clock)  # A's previous run
    apply_all(before, pair.a.events)
    (old_in, old_out) = spis(pair.a.of_type(ChildSaEstablished)[0])

    a = installer_for(xfrm, ADDR_B[0], clock)  # A's new run finds them in the kernel
    orphans = [s.ref for s in list_sas(xfrm) if s.reqid == BINDING.reqid]
    a.adopt_orphans(ADDR_B[0], orphans)
    seen = len(pair.a.events)
    restart_a(pair)
    apply_all(a, pair.a.events[seen:])
    (new_in, new_out) = spis(pair.a.of_type(ChildSaEstablished)[-1])
    # the initiator: B answered with its inbound SA in place, so both new SAs go in now;
    # the old inbound SA still takes B's packets until B switches
    assert kernel_spis(xfrm) == {old_in, old_out, new_in, new_out}
    clock.advance(SWITCH_DELAY)
    assert old_in in kernel_spis(xfrm)
    clock.advance(LINGER)
    assert kernel_spis(xfrm) == {new_in, new_out}
    assert a.orphans == {}


def test_without_an_older_pair_the_responder_switches_at_once(xfrm: XfrmSocket) -> None:
    clock = Clock()
    b = installer_for(xfrm, ADDR_A[0], clock)
    pair = Pair(*psk_configs())
    pair.connect()
    apply_all(b, pair.b.events)
    assert len(kernel_spis(xfrm)) == 2
    assert clock.pending == []
