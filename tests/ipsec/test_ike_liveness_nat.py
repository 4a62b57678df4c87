"""Back to back: retransmission, liveness checks, cookies, half-open limits and NAT traversal."""

from __future__ import annotations

from ike_pair import Pair, psk_configs

from afbr.ipsec import (
    BadInput,
    ChildSaDeleted,
    ChildSaEstablished,
    Datagram,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeState,
    Timers,
)
from afbr.ipsec.ike_constants import ExchangeType
from afbr.ipsec.ike_message import decode_header


def _exchange(d: Datagram) -> int:
    data = d.data[4:] if d.data[:4] == b"\0\0\0\0" else d.data
    return decode_header(data).exchange


def test_dropped_ike_auth_request_is_retransmitted() -> None:
    pair = Pair(*psk_configs())
    dropped: list[Datagram] = []

    def drop_first_auth(side: str, d: Datagram) -> bool:
        if side == "a" and _exchange(d) == ExchangeType.IKE_AUTH and not dropped:
            dropped.append(d)
            return True
        return False

    pair.drop = drop_first_auth
    pair.connect()
    assert not pair.a.of_type(IkeSaEstablished)
    pair.advance(3)
    assert dropped and len(pair.a.of_type(ChildSaEstablished)) == 1
    assert len(pair.b.of_type(ChildSaEstablished)) == 1


def test_dropped_response_is_answered_from_the_cache() -> None:
    pair = Pair(*psk_configs())
    dropped: list[Datagram] = []

    def drop_first_auth_response(side: str, d: Datagram) -> bool:
        if side == "b" and _exchange(d) == ExchangeType.IKE_AUTH and not dropped:
            dropped.append(d)
            return True
        return False

    pair.drop = drop_first_auth_response
    pair.connect()
    pair.advance(3)
    assert len(pair.a.of_type(ChildSaEstablished)) == 1
    assert len(pair.b.of_type(ChildSaEstablished)) == 1  # processed once, answered twice
    assert pair.b.dispatcher.counters.totals[BadInput.REPLAYED] == 1
    resent = [d for side, d in pair.wire if side == "b" and _exchange(d) == ExchangeType.IKE_AUTH]
    assert len(resent) == 2 and resent[0].data == resent[1].data


def test_retransmissions_back_off_then_dead_peer_closes_the_sa() -> None:
    timers = Timers(dpd_delay=10.0, retransmit_timeout=1.0, retransmit_base=2.0, retransmit_tries=3)
    pair = Pair(*psk_configs(timers=timers))
    sa = pair.connect()
    pair.drop = lambda side, d: side == "b"  # the responder dies (kill -9)
    start = len(pair.wire)
    pair.advance(11, step=0.25)
    assert sa.outstanding is not None  # the liveness check went out
    pair.advance(30, step=0.25)
    probes = [(d, side) for side, d in pair.wire[start:] if side == "a"]
    assert len(probes) == 4  # first try + 3 retransmissions
    assert sa.state == IkeState.CLOSED
    (deleted,) = pair.a.of_type(IkeSaDeleted)
    assert "unreachable" in deleted.reason
    assert len(pair.a.of_type(ChildSaDeleted)) == 1
    assert pair.a.dispatcher.sas == {}


def test_liveness_check_answered_keeps_the_sa() -> None:
    pair = Pair(*psk_configs(timers=Timers(dpd_delay=5.0)))
    sa = pair.connect()
    pair.advance(30)
    assert sa.state == IkeState.ESTABLISHED
    informational = [d for side, d in pair.wire if _exchange(d) == ExchangeType.INFORMATIONAL]
    assert len(informational) >= 4


def test_cookie_is_demanded_and_returned() -> None:
    pair = Pair(*psk_configs(), cookie_threshold=0)
    pair.connect()
    assert len(pair.b.of_type(IkeSaEstablished)) == 1
    assert pair.b.dispatcher.counters.totals[BadInput.COOKIE_REQUIRED] == 1
    requests = [d for side, d in pair.wire if side == "a" and _exchange(d) == 34]
    assert len(requests) == 2 and len(requests[1].data) > len(requests[0].data)


def test_wrong_cookie_is_refused_again() -> None:
    pair = Pair(*psk_configs(), cookie_threshold=0)
    sa = pair.a.dispatcher.connect(pair.config_a, ("192.0.2.1", 500), ("192.0.2.2", 500), pair.now)
    sa.nego.cookie = b"\x01" * 36  # a forged cookie before the real one
    (first,) = pair.a.dispatcher.datagrams_to_send(pair.now)
    pair.b.dispatcher.receive_datagram(first.data, first.source, pair.now, first.destination)
    assert pair.b.dispatcher.counters.totals[BadInput.COOKIE_REQUIRED] == 1
    assert pair.b.dispatcher.sas == {}


def test_half_open_limit_and_timeout() -> None:
    pair = Pair(*psk_configs(), half_open_limit=2, cookie_threshold=100)
    initiators = []
    pair.drop = lambda side, d: side == "a" and _exchange(d) == ExchangeType.IKE_AUTH
    for _ in range(3):
        initiators.append(
            pair.a.dispatcher.connect(
                pair.config_a, ("192.0.2.1", 500), ("192.0.2.2", 500), pair.now
            )
        )
        pair.pump()
    assert pair.b.dispatcher.half_open == 2
    assert pair.b.dispatcher.counters.totals[BadInput.HALF_OPEN_LIMIT] == 1
    pair.advance(31, step=1.0)
    assert pair.b.dispatcher.half_open == 0
    assert pair.b.dispatcher.sas == {}


def test_nat_detected_moves_to_4500_with_marker_and_keepalives() -> None:
    pair = Pair(*psk_configs(timers=Timers(nat_keepalive=20.0, dpd_delay=1000.0)))
    pair.nat_b_sees_a = ("203.0.113.7", 40000)  # A sits behind a NAT
    pair.connect()
    child_a, child_b = pair.a.of_type(ChildSaEstablished)[0], pair.b.of_type(ChildSaEstablished)[0]
    assert child_a.child.udp_encapsulation == (4500, 4500)
    assert child_b.child.udp_encapsulation == (4500, 40001)
    assert pair.a.of_type(IkeSaEstablished)[0].nat_detected
    auth = [d for side, d in pair.wire if side == "a"][1]
    assert auth.source == ("192.0.2.1", 4500) and auth.destination[1] == 4500
    assert auth.data[:4] == b"\0\0\0\0"
    start = len(pair.wire)
    pair.advance(45, step=1.0)
    keepalives = [d for side, d in pair.wire[start:] if side == "a" and d.data == b"\xff"]
    assert len(keepalives) == 2
    assert not [d for side, d in pair.wire[start:] if side == "b" and d.data == b"\xff"]


def test_forced_udp_encapsulation_without_nat() -> None:
    a, b = psk_configs()
    from dataclasses import replace

    pair = Pair(replace(a, force_udp_encapsulation=True), b)
    pair.connect()
    child_a, child_b = pair.a.of_type(ChildSaEstablished)[0], pair.b.of_type(ChildSaEstablished)[0]
    assert child_a.child.udp_encapsulation == (4500, 4500)
    assert child_b.child.udp_encapsulation == (4500, 4500)


def test_no_nat_stays_on_500() -> None:
    pair = Pair(*psk_configs())
    pair.connect()
    assert all(d.source[1] == 500 and d.data[:4] != b"\0\0\0\0" for _, d in pair.wire)


def test_ipv6_outer_with_nat_detection() -> None:
    from dataclasses import replace

    a, b = psk_configs()
    pair = Pair(
        replace(a, force_udp_encapsulation=True),
        b,
        addresses=(("2001:db8::a", 500), ("2001:db8::b", 500)),
    )
    pair.connect()
    child_a, child_b = pair.a.of_type(ChildSaEstablished)[0], pair.b.of_type(ChildSaEstablished)[0]
    assert child_a.child.outbound.destination == "2001:db8::b"
    assert child_b.child.udp_encapsulation == (4500, 4500)
    assert child_a.child.outbound == child_b.child.inbound


def test_lost_ike_sa_init_response_is_resent_from_the_cache() -> None:
    pair = Pair(*psk_configs())
    dropped: list[Datagram] = []

    def drop_first_init_response(side: str, d: Datagram) -> bool:
        if side == "b" and _exchange(d) == ExchangeType.IKE_SA_INIT and not dropped:
            dropped.append(d)
            return True
        return False

    pair.drop = drop_first_init_response
    pair.connect()
    pair.advance(3)
    assert len(pair.a.of_type(ChildSaEstablished)) == 1
    assert len(pair.b.dispatcher.sas) == 1  # the retransmission found the same half-open SA
    assert pair.b.dispatcher.counters.totals[BadInput.REPLAYED] == 1
