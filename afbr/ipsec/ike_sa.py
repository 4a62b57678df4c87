"""The IKEv2 SA state machine, sans-IO (RFC 7296), in the aioquic style.

Drive it with `receive_datagram(data, addr, now)` and `handle_timer(now)`; collect
`datagrams_to_send(now)` (each says which local address/port to send from) and `next_event()`;
`get_timer()` says when to call `handle_timer` next.  Time and randomness are arguments.

`IkeSa` sits on top of the IKE core: the SA's data and states are `ike_sa_state.IkeSaRecord`
(with the table of allowed state changes, `TRANSITIONS`); the exchanges are plain functions over
that record in ike_setup (IKE_SA_INIT, IKE_AUTH), ike_rekey (CREATE_CHILD_SA), ike_informational
(deletes, liveness) and ike_timers.  This class owns the table of which function answers which
of the peer's requests in which state (`REQUEST_HANDLERS`); our own requests carry their
response handler with them.  The message-id window is 1 (we send no SET_WINDOW_SIZE): one request
of ours in flight; our last response is cached and re-sent for a retransmitted request (RFC 7296
§2.1, §2.2) when the retransmission is the same request, at most once per RESEND_INTERVAL.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar

from afbr.ipsec.ike_config import Address
from afbr.ipsec.ike_constants import NAT_KEEPALIVE, NON_ESP_MARKER, ExchangeType
from afbr.ipsec.ike_counters import BadInput
from afbr.ipsec.ike_errors import IkeDecodeError, IkeError, IkeIntegrityError
from afbr.ipsec.ike_events import IkeEvent
from afbr.ipsec.ike_informational import (
    handle_informational,
    request_child_delete,
    request_ike_delete,
    request_liveness,
)
from afbr.ipsec.ike_message import decode_header
from afbr.ipsec.ike_payloads import IkeHeader, NotifyPayload, Payload
from afbr.ipsec.ike_protect import IkeInnerDecodeError, classify
from afbr.ipsec.ike_rekey import (
    handle_create_child,
    refuse_while_deleting,
    request_child_rekey,
    request_ike_rekey,
    request_new_child,
)
from afbr.ipsec.ike_sa_state import (
    CachedResponse,
    Datagram,
    IkeSaRecord,
    IkeState,
    RequestHandler,
    request_hash,
)
from afbr.ipsec.ike_setup import handle_auth_request, handle_init_request, start_initiator
from afbr.ipsec.ike_timers import next_deadline, run_timers

__all__ = ["Datagram", "IkeSa", "IkeState"]

log = logging.getLogger(__name__)

RESEND_INTERVAL = 0.5  # seconds: at most one cached response re-sent per SA in this time


class IkeSa(IkeSaRecord):
    """One IKE SA with one peer.  See the module docstring for how to drive it."""

    # (state, exchange) -> the function answering the peer's request; a pair not listed is
    # counted as UNEXPECTED and not answered (RFC 7296 §2.21: nothing to say to it)
    REQUEST_HANDLERS: ClassVar[Mapping[tuple[IkeState, ExchangeType], RequestHandler]] = {
        (IkeState.IDLE, ExchangeType.IKE_SA_INIT): handle_init_request,
        (IkeState.HALF_OPEN, ExchangeType.IKE_AUTH): handle_auth_request,
        (IkeState.ESTABLISHED, ExchangeType.CREATE_CHILD_SA): handle_create_child,
        (IkeState.ESTABLISHED, ExchangeType.INFORMATIONAL): handle_informational,
        (IkeState.DELETING, ExchangeType.CREATE_CHILD_SA): refuse_while_deleting,
        (IkeState.DELETING, ExchangeType.INFORMATIONAL): handle_informational,
    }
    # our requests' responses are only taken in these states
    RESPONSE_STATES: ClassVar[Mapping[ExchangeType, frozenset[IkeState]]] = {
        ExchangeType.IKE_SA_INIT: frozenset({IkeState.INIT_SENT}),
        ExchangeType.IKE_AUTH: frozenset({IkeState.AUTH_SENT}),
        ExchangeType.CREATE_CHILD_SA: frozenset({IkeState.ESTABLISHED}),
        ExchangeType.INFORMATIONAL: frozenset({IkeState.ESTABLISHED, IkeState.DELETING}),
    }

    # -- aioquic-style interface -----------------------------------------------------------------
    def receive_datagram(
        self, data: bytes, addr: Address, now: float, local_addr: Address | None = None
    ) -> None:
        """Take one UDP datagram from `addr`; never raises for bad input (it is counted)."""
        if self.state == IkeState.CLOSED:
            self.counters.count(BadInput.UNEXPECTED, now, "datagram for a closed SA")
            return
        if data == NAT_KEEPALIVE:
            self.counters.count(BadInput.NAT_KEEPALIVE, now)
            return
        if data[:4] == NON_ESP_MARKER:
            data = data[4:]
        try:
            header = decode_header(data)
        except IkeError as exc:
            self.counters.count(classify(exc), now, str(exc))
            return
        try:
            if header.is_response:
                self._receive_response(header, data, now)
            else:
                self._receive_request(header, data, addr, now, local_addr)
        except IkeIntegrityError as exc:
            self.counters.count(BadInput.BAD_ICV, now, str(exc))
        except IkeError as exc:
            self.counters.count(classify(exc), now, str(exc))
        except (ValueError, KeyError, IndexError, TypeError, OverflowError):
            # a bug, not the peer's fault: keep the daemon up, but say so loudly
            log.exception("IKE SA %s: internal error on a datagram from %s", self.id, addr)
            self.counters.count(BadInput.MALFORMED, now, "internal error")

    def handle_timer(self, now: float) -> None:
        run_timers(self, now)

    def get_timer(self) -> float | None:
        return next_deadline(self)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._datagrams = self._datagrams, []
        if out:
            self.last_sent = now
        return out

    def next_event(self) -> IkeEvent | None:
        return self._events.popleft() if self._events else None

    # -- commands -------------------------------------------------------------------------------
    def initiate(self, now: float) -> None:
        """Start IKE_SA_INIT (then IKE_AUTH with the first CHILD SA)."""
        start_initiator(self, now)

    def create_child(self, now: float) -> None:
        """Negotiate one more CHILD SA (CREATE_CHILD_SA, RFC 7296 §1.3.1)."""
        request_new_child(self, now)

    def rekey_child(self, inbound_spi: int, now: float) -> None:
        """Rekey one CHILD SA (RFC 7296 §1.3.3), e.g. on the kernel's soft expiry."""
        request_child_rekey(self, inbound_spi, now)

    def rekey(self, now: float) -> None:
        """Rekey this IKE SA (RFC 7296 §1.3.2); IkeSaRekeyed names its successor."""
        request_ike_rekey(self, now)

    def delete_child(self, inbound_spi: int, now: float) -> None:
        """Delete one CHILD SA; the IKE SA then no longer re-creates a missing CHILD SA."""
        self.keep_child = False
        request_child_delete(self, inbound_spi, now)

    def delete(self, now: float) -> None:
        """Delete the IKE SA and its CHILD SAs (RFC 7296 §1.4.1)."""
        request_ike_delete(self, now)

    def check_liveness(self, now: float) -> None:
        """Send an empty INFORMATIONAL request (RFC 7296 §2.4)."""
        request_liveness(self, now)

    # -- receive paths ---------------------------------------------------------------------------
    def _receive_request(
        self, header: IkeHeader, data: bytes, addr: Address, now: float, local: Address | None
    ) -> None:
        if header.from_initiator == self.is_initiator:
            raise IkeDecodeError("request with our own role's initiator flag")
        if (
            self.last_response is not None
            and header.message_id == self.last_response.message_id
            and header.message_id == self.expected_request_id - 1
        ):
            self._resend_response(self.last_response, data, now)
            return
        if header.message_id != self.expected_request_id:
            self.counters.count(BadInput.OUT_OF_WINDOW, now, f"request id {header.message_id}")
            return
        try:
            exchange = ExchangeType(header.exchange)
        except ValueError:
            raise IkeDecodeError(f"exchange type {header.exchange}") from None
        handler = self.REQUEST_HANDLERS.get((self.state, exchange))
        if handler is None:
            self.counters.count(BadInput.UNEXPECTED, now, f"{exchange.name} in {self.state.value}")
            return
        try:
            message = self.decode(header, data)
        except IkeInnerDecodeError as exc:  # authentic, but a payload inside is bad (§2.21.2)
            message = None
            payloads: tuple[Payload, ...] = (NotifyPayload(exc.notify),)
            self.counters.count(BadInput.MALFORMED, now, str(exc))
        self.note_authenticated(addr, now, local)
        try:
            if message is not None:
                payloads = handler(self, message, addr, now)
        except IkeError as exc:
            log.info("IKE SA %s: refusing %s: %s", self.id, exchange.name, exc)
            payloads = (NotifyPayload(exc.notify, exc.data),)
            if exchange == ExchangeType.IKE_SA_INIT:
                self.transition(IkeState.CLOSED)  # refused: answer, keep nothing (§2.6)
                self.closed_reason = str(exc)
        self.expected_request_id = header.message_id + 1
        response = self.encode(exchange, payloads, True, header.message_id)
        self.last_response = CachedResponse(header.message_id, request_hash(data), [response])
        self.send_raw(response)

    def _resend_response(self, cached: CachedResponse, data: bytes, now: float) -> None:
        """RFC 7296 §2.1: a retransmitted request gets our answer again, if it is the request
        we answered (its hash, as strongSwan checks; the message id alone is unauthenticated)
        and at most once per RESEND_INTERVAL (no amplification of a replay flood)."""
        if request_hash(data) != cached.request_hash:
            self.counters.count(
                BadInput.MALFORMED, now, f"request {cached.message_id} again, but another one"
            )
            return
        if self.last_resend is not None and now - self.last_resend < RESEND_INTERVAL:
            self.counters.count(BadInput.RATE_LIMITED, now, f"request {cached.message_id}")
            return
        self.last_resend = now
        self.counters.count(BadInput.REPLAYED, now, f"request {cached.message_id} again")
        for response in cached.datagrams:
            self.send_raw(response)

    def _receive_response(self, header: IkeHeader, data: bytes, now: float) -> None:
        out = self.outstanding
        if out is None or header.message_id != out.message_id:
            kind = BadInput.REPLAYED if header.message_id < self.next_request_id else None
            self.counters.count(
                kind or BadInput.OUT_OF_WINDOW, now, f"response {header.message_id}"
            )
            return
        if header.exchange != out.exchange or header.from_initiator == self.is_initiator:
            raise IkeDecodeError("response does not fit our request")
        if self.state not in self.RESPONSE_STATES[out.exchange]:
            self.counters.count(BadInput.UNEXPECTED, now, "response in the wrong state")
            return
        if out.exchange == ExchangeType.IKE_SA_INIT and header.spi_i != self.spi_i:
            raise IkeDecodeError("IKE_SA_INIT response for another SPI")
        message = self.decode(header, data)
        self.outstanding = None
        self.last_received = now
        try:
            out.on_response(self, message, now)
        except IkeError as exc:
            log.info("IKE SA %s: %s exchange failed: %s", self.id, out.exchange.name, exc)
            if self.state in (IkeState.INIT_SENT, IkeState.AUTH_SENT):
                self.close(f"{out.exchange.name} failed: {exc}", now)
        self.send_next_request(now)
