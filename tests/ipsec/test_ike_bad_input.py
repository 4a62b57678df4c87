"""Bad input: garbage, truncated, oversized, replayed, out-of-window and forged datagrams never
raise out of the core and never change an SA's state; each kind is counted."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ike_pair import Pair, psk_configs
from ipsec_vectors import VECTORS, ike_datagrams

from afbr.ipsec import BadInput, BadInputLog, IkeSa
from afbr.ipsec.ike_constants import IKE_HEADER_LENGTH
from afbr.ipsec.ike_sa import RESEND_INTERVAL


def fingerprint(sa: IkeSa) -> tuple[object, ...]:
    children = sorted(
        (c.inbound_spi, c.outbound_spi, c.state.value, c.keys) for c in sa.children.values()
    )
    return (
        sa.state,
        sa.id,
        sa.keys,
        sa.next_request_id,
        sa.expected_request_id,
        sa.remote_addr,
        sa.local_addr,
        tuple(children),
        sa.outstanding is None,
    )


@pytest.fixture(scope="module")
def established() -> tuple[Pair, list[bytes]]:
    pair = Pair(*psk_configs())
    pair.connect()
    sa = pair.a.dispatcher.sas[next(iter(pair.a.dispatcher.sas))]
    sa.check_liveness(pair.now)  # one INFORMATIONAL exchange on the wire too
    pair.a.dispatcher.after_command(sa, pair.now)
    pair.pump()
    return pair, [d.data for _, d in pair.wire]


def _states(pair: Pair) -> dict[int, tuple[object, ...]]:
    return {id(sa): fingerprint(sa) for ep in (pair.a, pair.b) for sa in ep.dispatcher.sas.values()}


def _unchanged(pair: Pair, before: dict[int, tuple[object, ...]]) -> None:
    """SAs that existed are untouched; a datagram that is a fresh IKE_SA_INIT request may only
    have opened a half-open responder SA (what the cookie threshold limits)."""
    after = _states(pair)
    assert {k: after.get(k) for k in before} == before
    for key in after.keys() - before.keys():
        assert after[key][0].value == "half-open"
    for ep in (pair.a, pair.b):  # forget them again so the next example starts clean
        for spi, sa in list(ep.dispatcher.sas.items()):
            if id(sa) not in before:
                del ep.dispatcher.sas[spi]
        ep.dispatcher._by_init.clear()


def _feed_both(pair: Pair, data: bytes) -> None:
    pair.b.dispatcher.receive_datagram(data, ("192.0.2.1", 500), pair.now, ("192.0.2.2", 500))
    pair.a.dispatcher.receive_datagram(data, ("192.0.2.2", 500), pair.now, ("192.0.2.1", 500))
    pair.a.dispatcher.datagrams_to_send(pair.now)
    pair.b.dispatcher.datagrams_to_send(pair.now)


def _mutations(wire: list[bytes]) -> st.SearchStrategy[bytes]:
    captured = [d.payload for d in ike_datagrams(VECTORS / "gcm-v4.pcap")]
    base = st.sampled_from(wire + captured)

    def flip(data: bytes, position: int, value: int) -> bytes:
        position %= len(data)
        return data[:position] + bytes([value]) + data[position + 1 :]

    return st.one_of(
        st.binary(max_size=600),
        st.builds(lambda d, n: d[: n % (len(d) + 1)], base, st.integers(0, 2000)),
        st.builds(flip, base, st.integers(0, 2000), st.integers(0, 255)),
        st.builds(lambda d, extra: d + extra, base, st.binary(min_size=1, max_size=40)),
    )


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzzed_datagrams_never_raise_nor_change_state(
    established: tuple[Pair, list[bytes]], data: st.DataObject
) -> None:
    pair, wire = established
    before = _states(pair)
    datagram = data.draw(_mutations(wire))
    _feed_both(pair, datagram)
    _unchanged(pair, before)


def test_each_kind_is_counted(established: tuple[Pair, list[bytes]]) -> None:
    pair, wire = established
    before = _states(pair)
    counters = pair.b.dispatcher.counters.totals
    seen = dict(counters)
    auth_request = wire[2]
    _feed_both(pair, b"\x01\x02garbage")
    _feed_both(pair, auth_request[:-10])
    _feed_both(pair, auth_request + bytes(70000))
    _feed_both(pair, auth_request)  # replayed
    header = bytearray(auth_request)
    header[20:24] = (7).to_bytes(4, "big")  # message id 7: out of the window
    _feed_both(pair, bytes(header))
    pair.now += RESEND_INTERVAL  # B may send its cached answer again
    _feed_both(pair, wire[-2])  # the last request again: answered from B's cache
    malformed = counters[BadInput.MALFORMED]
    forged = bytearray(wire[-2])  # the last request with one ciphertext bit flipped
    forged[IKE_HEADER_LENGTH + 20] ^= 1
    pair.b.dispatcher.receive_datagram(
        bytes(forged), ("192.0.2.1", 500), pair.now, ("192.0.2.2", 500)
    )
    unknown = bytearray(auth_request)
    unknown[8:16] = b"\x99" * 8
    _feed_both(pair, bytes(unknown))
    for kind in (BadInput.TRUNCATED, BadInput.OVERSIZED, BadInput.REPLAYED, BadInput.UNKNOWN_SPI):
        assert counters[kind] > seen.get(kind, 0), kind
    assert counters[BadInput.OUT_OF_WINDOW] + counters[BadInput.REPLAYED] > seen.get(
        BadInput.OUT_OF_WINDOW, 0
    )
    # its message id is the one answered last, but it is not the request answered: dropped
    assert counters[BadInput.MALFORMED] > malformed
    assert sum(counters.values()) > sum(seen.values()) + 6
    _unchanged(pair, before)


def test_forged_request_in_window_is_bad_icv_and_ignored() -> None:
    pair = Pair(*psk_configs())
    sa = pair.connect()
    sa.check_liveness(pair.now)
    pair.a.dispatcher.after_command(sa, pair.now)
    (request,) = pair.a.dispatcher.datagrams_to_send(pair.now)
    sa_b = next(iter(pair.b.dispatcher.sas.values()))
    before = fingerprint(sa_b)
    forged = bytearray(request.data)
    forged[-1] ^= 0x80
    pair.b.dispatcher.receive_datagram(bytes(forged), request.source, pair.now, request.destination)
    assert pair.b.dispatcher.counters.totals[BadInput.BAD_ICV] == 1
    assert fingerprint(sa_b) == before
    assert pair.b.dispatcher.datagrams_to_send(pair.now) == []
    # the genuine one still works afterwards
    pair.b.dispatcher.receive_datagram(request.data, request.source, pair.now, request.destination)
    assert sa_b.expected_request_id == before[4] + 1


def test_bad_input_is_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    log = BadInputLog(interval=60.0)
    with caplog.at_level(logging.WARNING, logger="afbr.ipsec.ike_counters"):
        for i in range(100):
            log.count(BadInput.GARBAGE, 1000.0 + i * 0.1)
        assert len(caplog.records) == 1
        log.count(BadInput.TRUNCATED, 1061.0)
        assert len(caplog.records) == 2
    assert "truncated=1" in caplog.records[1].getMessage()
    assert "garbage=99" in caplog.records[1].getMessage()
    assert log.totals[BadInput.GARBAGE] == 100
