"""The IKE SA's tables, walked: every (state, exchange) request from the peer is handled by
the function `IkeSa.REQUEST_HANDLERS` names or counted as UNEXPECTED and left unanswered, and
every state change the exchanges make (setup, rekeys and their collisions, deletes, liveness,
failures, timeouts) is one `TRANSITIONS` lists; each listed transition and handler is used."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from ike_pair import ADDR_A, ADDR_B, Pair, psk_configs, seeded

from afbr.ipsec import (
    BadInput,
    Identity,
    IkeSa,
    IkeState,
    PeerTrust,
    PskCredential,
    Timers,
)
from afbr.ipsec.ike_constants import ExchangeType, HeaderFlag
from afbr.ipsec.ike_message import encode_message
from afbr.ipsec.ike_payloads import IkeHeader, IkeMessage, Payload
from afbr.ipsec.ike_proposals import IKE_AES_GCM_128, IKE_AES_GCM_256
from afbr.ipsec.ike_sa_state import (
    TRANSITIONS,
    IkeSaRecord,
    IkeTransitionError,
    RequestHandler,
)

Transition = tuple[IkeState, IkeState]


# -- the tables themselves -------------------------------------------------------------------------
def test_transition_table_is_total_and_everything_is_reachable() -> None:
    assert set(TRANSITIONS) == set(IkeState)
    assert TRANSITIONS[IkeState.CLOSED] == frozenset()
    reached, todo = {IkeState.IDLE}, [IkeState.IDLE]
    while todo:
        for target in TRANSITIONS[todo.pop()]:
            if target not in reached:
                reached.add(target)
                todo.append(target)
    assert reached == set(IkeState)
    for state in IkeState:  # and every state can still end
        assert state == IkeState.CLOSED or IkeState.CLOSED in TRANSITIONS[state]


def test_request_handlers_only_in_states_that_answer() -> None:
    for state, exchange in IkeSa.REQUEST_HANDLERS:
        assert isinstance(exchange, ExchangeType)
        assert state not in (IkeState.CLOSED, IkeState.INIT_SENT, IkeState.AUTH_SENT)


def test_unlisted_transition_raises() -> None:
    a, _ = psk_configs()
    sa = IkeSa(a, initiator=True, local_addr=ADDR_A, remote_addr=ADDR_B, random=seeded(1), now=0)
    with pytest.raises(IkeTransitionError):
        sa.transition(IkeState.DELETING)
    assert sa.state == IkeState.IDLE


# -- every (state, exchange) request from the peer -------------------------------------------------
def _sa_in(state: IkeState) -> tuple[Pair, IkeSa]:
    """A pair and one of its SAs in `state`."""
    pair = Pair(*psk_configs())
    if state == IkeState.IDLE:
        _, config_b = psk_configs()
        sa = IkeSa(
            config_b,
            initiator=False,
            local_addr=ADDR_B,
            remote_addr=ADDR_A,
            random=seeded(5),
            now=pair.now,
            spi_i=bytes(range(1, 9)),
        )
        return pair, sa
    sa = pair.a.dispatcher.connect(pair.config_a, pair.a.address, pair.b.address, pair.now)
    if state == IkeState.INIT_SENT:
        return pair, sa
    pair.pump(rounds=1)
    if state == IkeState.AUTH_SENT:
        return pair, sa
    if state == IkeState.HALF_OPEN:
        (responder,) = pair.b.dispatcher.sas.values()
        return pair, responder
    pair.pump()
    if state == IkeState.DELETING:
        sa.delete(pair.now)
    elif state == IkeState.CLOSED:
        sa.close("test", pair.now)
    assert sa.state == state
    return pair, sa


def _request_from_peer(sa: IkeSa, exchange: ExchangeType) -> bytes:
    flags = HeaderFlag.NONE if sa.is_initiator else HeaderFlag.INITIATOR
    header = IkeHeader(sa.spi_i, sa.spi_r, 0, exchange, flags, sa.expected_request_id)
    return encode_message(IkeMessage(header, ()))


def _cases() -> Iterator[tuple[IkeState, ExchangeType]]:
    for state in IkeState:
        for exchange in ExchangeType:
            if (state, exchange) not in IkeSa.REQUEST_HANDLERS:
                yield state, exchange


@pytest.mark.parametrize(("state", "exchange"), list(_cases()))
def test_unhandled_request_is_counted_and_not_answered(
    state: IkeState, exchange: ExchangeType
) -> None:
    pair, sa = _sa_in(state)
    sa.datagrams_to_send(pair.now)
    counters = sa.counters.totals
    before = counters[BadInput.UNEXPECTED]
    expected_id = sa.expected_request_id
    sa.receive_datagram(_request_from_peer(sa, exchange), sa.remote_addr, pair.now)
    assert counters[BadInput.UNEXPECTED] == before + 1
    assert sa.datagrams_to_send(pair.now) == []
    assert sa.state == state and sa.expected_request_id == expected_id


# -- every state change made by the exchanges ------------------------------------------------------
@pytest.fixture
def handled(monkeypatch: pytest.MonkeyPatch) -> set[tuple[IkeState, ExchangeType]]:
    """Records which entries of the request handler table answered something."""
    used: set[tuple[IkeState, ExchangeType]] = set()

    def recorded(key: tuple[IkeState, ExchangeType], handler: RequestHandler) -> RequestHandler:
        def run(
            sa: IkeSaRecord, message: IkeMessage, addr: tuple[str, int], now: float
        ) -> tuple[Payload, ...]:
            used.add(key)
            return handler(sa, message, addr, now)

        return run

    table = {key: recorded(key, handler) for key, handler in IkeSa.REQUEST_HANDLERS.items()}
    monkeypatch.setattr(IkeSa, "REQUEST_HANDLERS", table)
    return used


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[Transition]]:
    """Records every transition; an unlisted one fails the test even where the core would
    only log it as an internal error."""
    transitions: set[Transition] = set()
    original = IkeSaRecord.transition

    def spy(self: IkeSaRecord, new: IkeState) -> None:
        change = (self.state, new)
        assert new in TRANSITIONS[self.state], f"unlisted transition {change}"
        transitions.add(change)
        original(self, new)

    monkeypatch.setattr(IkeSaRecord, "transition", spy)
    yield transitions


def _established(pair: Pair) -> IkeSa:
    sa = pair.connect()
    assert sa.state == IkeState.ESTABLISHED
    return sa


def _command(pair: Pair, sa: IkeSa, action: Callable[[IkeSa, float], None]) -> None:
    action(sa, pair.now)
    pair.a.dispatcher.after_command(sa, pair.now)
    pair.pump()


def _scenarios() -> dict[str, Callable[[], None]]:
    def setup_rekey_delete() -> None:
        pair = Pair(*psk_configs())
        sa = _established(pair)
        _command(pair, sa, lambda s, now: s.check_liveness(now))
        _command(pair, sa, lambda s, now: s.rekey_child(next(iter(s.children)), now))
        _command(pair, sa, lambda s, now: s.rekey(now))
        (new,) = [s for s in pair.a.dispatcher.sas.values() if s.state == IkeState.ESTABLISHED]
        _command(pair, new, lambda s, now: s.delete(now))

    def rekey_collisions() -> None:
        pair = Pair(*psk_configs())
        sa_a = _established(pair)
        (sa_b,) = pair.b.dispatcher.sas.values()
        sa_a.rekey(pair.now)
        sa_b.rekey(pair.now)
        pair.a.dispatcher.after_command(sa_a, pair.now)
        pair.b.dispatcher.after_command(sa_b, pair.now)
        pair.pump()
        pair.advance(40, step=1.0)

    def frequent_rekeys() -> None:
        timers = Timers(ike_rekey=30.0, child_rekey=20.0, child_lifetime=40.0)
        pair = Pair(*psk_configs(timers=timers))
        _established(pair)
        pair.advance(200, step=1.0)

    def dead_peer() -> None:
        timers = Timers(dpd_delay=5.0, retransmit_timeout=1.0, retransmit_tries=2)
        pair = Pair(*psk_configs(timers=timers))
        _established(pair)
        pair.drop = lambda side, d: side == "b"
        pair.advance(30, step=0.5)

    def authentication_fails() -> None:
        a, b = psk_configs()
        other = PskCredential(b"another key, not the pairwise one")
        Pair(a, replace(b, credential=other, peer_trust=PeerTrust(psk=other))).connect()
        Pair(a, replace(b, remote_id=Identity.fqdn("c.example"))).connect()

    def init_refused() -> None:  # NO_PROPOSAL_CHOSEN
        a, b = psk_configs()
        a, b = (
            replace(a, ike_proposals=(IKE_AES_GCM_128,)),
            replace(b, ike_proposals=(IKE_AES_GCM_256,)),
        )
        Pair(a, b).connect()

    def half_open_times_out() -> None:
        pair = Pair(*psk_configs())
        pair.drop = lambda side, d: side == "a" and len(pair.wire) > 1
        pair.a.dispatcher.connect(pair.config_a, ADDR_A, ADDR_B, pair.now)
        pair.pump()
        pair.advance(40, step=1.0)

    def peer_deletes() -> None:
        pair = Pair(*psk_configs())
        _established(pair)
        (sa_b,) = pair.b.dispatcher.sas.values()
        sa_b.delete(pair.now)
        pair.b.dispatcher.after_command(sa_b, pair.now)
        pair.pump()

    def requests_cross_our_delete() -> None:
        for peer_action in (IkeSa.create_child, IkeSa.delete):  # refused; simultaneous deletes
            pair = Pair(*psk_configs())
            sa_a = _established(pair)
            (sa_b,) = pair.b.dispatcher.sas.values()
            sa_a.delete(pair.now)
            peer_action(sa_b, pair.now)
            pair.a.dispatcher.after_command(sa_a, pair.now)
            pair.b.dispatcher.after_command(sa_b, pair.now)
            pair.pump()
            assert sa_a.state == sa_b.state == IkeState.CLOSED

    def delete_before_start() -> None:
        a, _ = psk_configs()
        sa = IkeSa(
            a, initiator=True, local_addr=ADDR_A, remote_addr=ADDR_B, random=seeded(3), now=0
        )
        sa.delete(0.0)

    return {
        f.__name__: f
        for f in (
            setup_rekey_delete,
            rekey_collisions,
            frequent_rekeys,
            dead_peer,
            authentication_fails,
            init_refused,
            half_open_times_out,
            peer_deletes,
            requests_cross_our_delete,
            delete_before_start,
        )
    }


def test_every_state_change_is_listed_and_every_listed_one_happens(
    seen: set[Transition], handled: set[tuple[IkeState, ExchangeType]]
) -> None:
    for scenario in _scenarios().values():
        scenario()
    assert handled == set(IkeSa.REQUEST_HANDLERS), "handlers no exchange uses"
    listed = {(state, target) for state, targets in TRANSITIONS.items() for target in targets}
    assert seen <= listed
    assert listed - seen == set(), "transitions no exchange makes: drop them from the table"
