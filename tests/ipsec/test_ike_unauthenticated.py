"""What an unauthenticated sender can make the IKE core do: resend cached answers only for the
request answered and not faster than RESEND_INTERVAL; cookies that reveal nothing of the secret;
half-open responders forgotten on time; no peer identity before it is proven."""

from __future__ import annotations

from dataclasses import replace

import pytest
from ike_pair import Pair, psk_configs, seeded

from afbr.ipsec import (
    AuthenticationFailed,
    BadInput,
    Datagram,
    Identity,
    IkeState,
    PeerTrust,
    PskCredential,
    Timers,
)
from afbr.ipsec.ike_constants import ExchangeType, NotifyType
from afbr.ipsec.ike_message import decode_header, decode_message
from afbr.ipsec.ike_payloads import IkeMessage, NotifyPayload
from afbr.ipsec.ike_sa import RESEND_INTERVAL


def _body(d: Datagram) -> bytes:
    return d.data[4:] if d.data[:4] == b"\0\0\0\0" else d.data


def _liveness_request(pair: Pair) -> tuple[bytes, Datagram]:
    """A's liveness request as B received it, and B's answer."""
    sa = pair.connect()
    sa.check_liveness(pair.now)
    pair.a.dispatcher.after_command(sa, pair.now)
    pair.pump()
    (request,) = [
        d
        for side, d in pair.wire[-2:]
        if side == "a" and decode_header(_body(d)).exchange == ExchangeType.INFORMATIONAL
    ]
    return request.data, pair.wire[-1][1]


def _b_sends(pair: Pair) -> list[Datagram]:
    return pair.b.dispatcher.datagrams_to_send(pair.now)


def _feed_b(pair: Pair, data: bytes) -> None:
    pair.b.dispatcher.receive_datagram(data, pair.a.address, pair.now, pair.b.address)


def test_retransmitted_request_is_answered_from_the_cache() -> None:
    pair = Pair(*psk_configs())
    request, answer = _liveness_request(pair)
    pair.now += RESEND_INTERVAL
    _feed_b(pair, request)
    assert [d.data for d in _b_sends(pair)] == [answer.data]
    assert pair.b.dispatcher.counters.totals[BadInput.REPLAYED] == 1


def test_other_request_with_the_answered_message_id_is_dropped() -> None:
    pair = Pair(*psk_configs())
    request, _ = _liveness_request(pair)
    pair.now += RESEND_INTERVAL
    other = bytearray(request)
    other[-1] ^= 1  # same header and message id, other bytes: not the request we answered
    _feed_b(pair, bytes(other))
    assert _b_sends(pair) == []
    totals = pair.b.dispatcher.counters.totals
    assert totals[BadInput.REPLAYED] == 0 and totals[BadInput.MALFORMED] == 1


def test_cached_answers_are_resent_at_most_once_per_interval() -> None:
    pair = Pair(*psk_configs())
    request, answer = _liveness_request(pair)
    pair.now += RESEND_INTERVAL
    sent = []
    for _ in range(10):  # a replay flood within one interval: one answer
        _feed_b(pair, request)
        sent += _b_sends(pair)
        pair.now += RESEND_INTERVAL / 10
    assert len(sent) == 1
    totals = pair.b.dispatcher.counters.totals
    assert totals[BadInput.REPLAYED] == 1 and totals[BadInput.RATE_LIMITED] == 9
    pair.now += RESEND_INTERVAL
    _feed_b(pair, request)
    assert [d.data for d in _b_sends(pair)] == [answer.data]


def test_cookie_version_id_is_not_part_of_the_secret() -> None:
    seed = 7
    pair = Pair(*psk_configs(), seed=seed, cookie_threshold=0)
    pair.connect()
    secret = seeded(seed + 1000)(32)  # B's dispatcher draws its cookie secret first
    (answer,) = [d for side, d in pair.wire if side == "b"][:1]
    cookie = decode_message(_body(answer)).notify(NotifyType.COOKIE)
    assert isinstance(cookie, NotifyPayload)
    assert len(cookie.data) == 36
    assert cookie.data[:4] != secret[:4]
    assert secret[:4] not in cookie.data


def test_cookie_of_the_previous_secret_is_accepted_one_period_more() -> None:
    pair = Pair(*psk_configs(), cookie_threshold=0)
    dispatcher = pair.b.dispatcher
    dispatcher.handle_timer(pair.now)
    pair.a.dispatcher.connect(pair.config_a, pair.a.address, pair.b.address, pair.now)
    (first,) = pair.a.dispatcher.datagrams_to_send(pair.now)
    _feed_b(pair, first.data)
    (cookie_answer,) = _b_sends(pair)
    cookie = decode_message(_body(cookie_answer)).notify(NotifyType.COOKIE)
    assert cookie is not None
    request = decode_message(_body(first))
    with_cookie = IkeMessage(request.header, (cookie, *request.payloads))
    for _ in range(2):  # valid with the current secret, then with the previous one
        assert dispatcher._cookie_ok(with_cookie, pair.a.address)
        pair.now += 300.0
        dispatcher.handle_timer(pair.now)
    assert not dispatcher._cookie_ok(with_cookie, pair.a.address)


def test_half_open_responders_are_forgotten_when_get_timer_says() -> None:
    timers = Timers(half_open_timeout=5.0, dpd_delay=1000.0)
    pair = Pair(*psk_configs(timers=timers))
    start = pair.now
    pair.connect()
    deadline = pair.b.dispatcher.get_timer()
    assert deadline is not None and deadline <= start + timers.half_open_timeout
    pair.b.dispatcher.handle_timer(start + timers.half_open_timeout + 0.1)
    assert pair.b.dispatcher._by_init == {}


@pytest.mark.parametrize("failure", ["identity", "psk"])
def test_peer_id_is_set_only_once_the_peer_authenticated(failure: str) -> None:
    a, b = psk_configs()
    if failure == "identity":
        b = replace(b, remote_id=Identity.fqdn("c.example"))
    else:
        other = PskCredential(b"another key, not the pairwise one")
        b = replace(b, credential=other, peer_trust=PeerTrust(psk=other))
    pair = Pair(a, b)
    pair.a.dispatcher.connect(pair.config_a, pair.a.address, pair.b.address, pair.now)
    pair.pump(rounds=1)  # IKE_SA_INIT done: B holds a half-open SA
    (responder,) = pair.b.dispatcher.sas.values()
    pair.pump()
    assert responder.state == IkeState.CLOSED
    assert responder.peer_id is None
    (failed,) = pair.b.of_type(AuthenticationFailed)
    assert failed.remote_id == Identity.fqdn("a.example")  # the claim is still reported


def test_peer_id_is_set_when_authenticated() -> None:
    pair = Pair(*psk_configs())
    sa = pair.connect()
    assert sa.peer_id == Identity.fqdn("b.example")
    (responder,) = pair.b.dispatcher.sas.values()
    assert responder.peer_id == Identity.fqdn("a.example")
