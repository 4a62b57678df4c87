"""The error notifications RFC 7296 names, as afbr sends and takes them."""

from __future__ import annotations

from ike_pair import ADDR_A, ADDR_B, Pair, psk_configs

from afbr.ipsec import BadInput, ChildSaDeleted, IkeSa, IkeState
from afbr.ipsec.ike_child_nego import child_offer
from afbr.ipsec.ike_constants import ExchangeType, NotifyType, ProtocolId
from afbr.ipsec.ike_message import decode_message
from afbr.ipsec.ike_payloads import IkeMessage, NoncePayload, NotifyPayload, Payload, RawPayload
from afbr.ipsec.ike_sa_state import PendingRequest


def _request(
    pair: Pair, sa: IkeSa, exchange: ExchangeType, payloads: tuple[Payload, ...]
) -> IkeMessage:
    """Send an arbitrary protected request from A; return B's decrypted answer."""
    answers: list[IkeMessage] = []

    def build(sa: IkeSa, now: float) -> tuple[Payload, ...]:
        return payloads

    def on_response(sa: IkeSa, message: IkeMessage, now: float) -> None:
        answers.append(message)

    sa.queue_request(PendingRequest(exchange, build, on_response), pair.now)
    pair.a.dispatcher.after_command(sa, pair.now)
    pair.pump()
    (answer,) = answers
    return answer


def _notify(message: IkeMessage) -> int:
    (notify,) = [p for p in message.payloads if isinstance(p, NotifyPayload)]
    return notify.notify_type


def test_unsupported_critical_payload_is_answered() -> None:
    pair = Pair(*psk_configs())
    sa = pair.connect()
    answer = _request(pair, sa, ExchangeType.INFORMATIONAL, (RawPayload(200, b"?", critical=True),))
    assert _notify(answer) == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
    assert sa.state == IkeState.ESTABLISHED


def test_create_child_sa_without_sa_payload_is_invalid_syntax() -> None:
    pair = Pair(*psk_configs())
    sa = pair.connect()
    answer = _request(pair, sa, ExchangeType.CREATE_CHILD_SA, ())
    assert _notify(answer) == NotifyType.INVALID_SYNTAX


def test_rekey_of_an_unknown_child_is_child_sa_not_found() -> None:
    pair = Pair(*psk_configs())
    sa = pair.connect()
    rekey = NotifyPayload(NotifyType.REKEY_SA, b"", ProtocolId.ESP, (12345).to_bytes(4, "big"))
    payloads = child_offer(sa, 4096, sa.config.esp_proposals)
    answer = _request(
        pair,
        sa,
        ExchangeType.CREATE_CHILD_SA,
        (rekey, payloads[0], NoncePayload(bytes(32)), *payloads[1:]),
    )
    assert _notify(answer) == NotifyType.CHILD_SA_NOT_FOUND


def test_peer_that_lost_a_child_makes_us_drop_it() -> None:
    pair = Pair(*psk_configs())
    sa = pair.connect()
    sa_b = next(iter(pair.b.dispatcher.sas.values()))
    sa_b.children.clear()  # B forgot the CHILD SA (say, a bug or a restart of its kernel side)
    (spi,) = sa.children
    sa.rekey_child(spi, pair.now)
    pair.a.dispatcher.after_command(sa, pair.now)
    pair.pump()
    assert [e.inbound_spi for e in pair.a.of_type(ChildSaDeleted)] == [spi]
    assert sa.children == {}


def test_rekey_during_ike_rekey_is_temporary_failure_and_retried() -> None:
    pair = Pair(*psk_configs())
    sa_a = pair.connect()
    sa_b = next(iter(pair.b.dispatcher.sas.values()))
    sa_b.ike_rekeying = True  # as if B's own IKE rekey were under way
    (spi,) = sa_a.children
    sa_a.rekey_child(spi, pair.now)
    pair.a.dispatcher.after_command(sa_a, pair.now)
    pair.pump()
    child = sa_a.children[spi]
    assert child.state.value == "installed" and child.rekey_at <= pair.now + 2.0
    sa_b.ike_rekeying = False
    pair.advance(3)
    assert spi not in sa_a.children  # retried and replaced


def test_unknown_spi_gets_one_unprotected_invalid_ike_spi() -> None:
    pair = Pair(*psk_configs())
    sa = pair.connect()
    sa.check_liveness(pair.now)
    pair.a.dispatcher.after_command(sa, pair.now)
    (request,) = pair.a.dispatcher.datagrams_to_send(pair.now)
    forged = bytearray(request.data)
    forged[8:16] = b"\x42" * 8  # responder SPI B never handed out
    for _ in range(3):
        pair.b.dispatcher.receive_datagram(bytes(forged), ADDR_A, pair.now, ADDR_B)
    replies = pair.b.dispatcher.datagrams_to_send(pair.now)
    assert len(replies) == 1  # rate-limited
    reply = decode_message(replies[0].data)
    assert reply.header.is_response and reply.header.exchange == ExchangeType.INFORMATIONAL
    assert _notify(reply) == NotifyType.INVALID_IKE_SPI
    assert pair.b.dispatcher.counters.totals[BadInput.UNKNOWN_SPI] == 3


def test_higher_major_version_gets_invalid_major_version() -> None:
    pair = Pair(*psk_configs())
    pair.a.dispatcher.connect(pair.config_a, ADDR_A, ADDR_B, pair.now)
    (request,) = pair.a.dispatcher.datagrams_to_send(pair.now)
    v3 = bytearray(request.data)
    v3[17] = 0x30
    pair.b.dispatcher.receive_datagram(bytes(v3), ADDR_A, pair.now, ADDR_B)
    (reply,) = pair.b.dispatcher.datagrams_to_send(pair.now)
    message = decode_message(reply.data)
    assert _notify(message) == NotifyType.INVALID_MAJOR_VERSION
    assert pair.b.dispatcher.sas == {}
