"""The IKEv2 SA state machine, sans-IO (RFC 7296), in the aioquic style.

Drive it with `receive_datagram(data, addr, now)` and `handle_timer(now)`; collect
`datagrams_to_send(now)` (each says which local address/port to send from) and `next_event()`;
`get_timer()` says when to call `handle_timer` next.  Time and randomness are arguments.

Exchanges are handled by functions looked up in two tables keyed by the SA's state: one for
requests from the peer (`REQUEST_HANDLERS`, filled in `ike_exchanges`) and, for our own
requests, the handler stored with the outstanding request.  The message-id window is 1 (we send
no SET_WINDOW_SIZE): one request of ours in flight; the peer's last response is cached and
re-sent for a retransmitted request (RFC 7296 §2.1, §2.2).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from afbr.ipsec.ike_child import ChildSa
from afbr.ipsec.ike_config import Address, IkeConfig
from afbr.ipsec.ike_constants import (
    IKE_PORT,
    NAT_KEEPALIVE,
    NAT_T_PORT,
    NON_ESP_MARKER,
    ExchangeType,
)
from afbr.ipsec.ike_counters import BadInput, BadInputLog
from afbr.ipsec.ike_crypto import IkeKeys, SkCipher
from afbr.ipsec.ike_dh import DhKeyPair, RandomSource
from afbr.ipsec.ike_errors import (
    IkeDecodeError,
    IkeError,
    IkeIntegrityError,
)
from afbr.ipsec.ike_events import IkeEvent, IkeSaDeleted, IkeSaId
from afbr.ipsec.ike_message import (
    decode_header,
)
from afbr.ipsec.ike_payloads import (
    IkeHeader,
    IkeMessage,
    NotifyPayload,
    Payload,
)
from afbr.ipsec.ike_proposals import AlgorithmSuite
from afbr.ipsec.ike_protect import IkeInnerDecodeError, classify, protect, unprotect

log = logging.getLogger(__name__)


class IkeState(Enum):
    IDLE = "idle"  # created, nothing sent or received
    INIT_SENT = "init-sent"  # initiator: IKE_SA_INIT request out
    HALF_OPEN = "half-open"  # responder: IKE_SA_INIT answered, waiting for IKE_AUTH
    AUTH_SENT = "auth-sent"  # initiator: IKE_AUTH request out
    ESTABLISHED = "established"
    DELETING = "deleting"  # we sent the IKE SA's delete
    CLOSED = "closed"  # gone; the dispatcher forgets it


@dataclass(frozen=True, slots=True)
class Datagram:
    """One UDP datagram to send, marker included (RFC 3948 §2.2 on the NAT-T port)."""

    data: bytes
    source: Address
    destination: Address


ResponseHandler = Callable[["IkeSa", IkeMessage, float], None]
RequestHandler = Callable[["IkeSa", IkeMessage, Address, float], tuple[Payload, ...]]


@dataclass(slots=True)
class OutstandingRequest:
    message_id: int
    exchange: ExchangeType
    data: bytes
    on_response: ResponseHandler
    sent_at: float
    next_retransmit: float
    tries: int = 1


@dataclass(slots=True)
class PendingRequest:
    exchange: ExchangeType
    build: Callable[[IkeSa, float], tuple[Payload, ...] | None]  # None: nothing to send now
    on_response: ResponseHandler
    for_children: bool = False  # about CHILD SAs: follows them to the successor IKE SA


# (state, exchange) -> handler for the peer's requests; filled by ike_exchanges
REQUEST_HANDLERS: dict[tuple[IkeState, ExchangeType], RequestHandler] = {}
# our requests' responses are only taken in these states
RESPONSE_STATES: dict[ExchangeType, frozenset[IkeState]] = {
    ExchangeType.IKE_SA_INIT: frozenset({IkeState.INIT_SENT}),
    ExchangeType.IKE_AUTH: frozenset({IkeState.AUTH_SENT}),
    ExchangeType.CREATE_CHILD_SA: frozenset({IkeState.ESTABLISHED}),
    ExchangeType.INFORMATIONAL: frozenset({IkeState.ESTABLISHED, IkeState.DELETING}),
}


@dataclass(slots=True)
class Negotiation:
    """IKE_SA_INIT / IKE_AUTH material, kept until the SA is established."""

    dh: DhKeyPair | None = None
    nonce_i: bytes = b""
    nonce_r: bytes = b""
    init_request: bytes = b""
    init_response: bytes = b""
    cookie: bytes = b""
    peer_hashes: set[int] = field(default_factory=set)
    child_spi: int = 0
    init_retries: int = 0


class IkeSa:
    """One IKE SA with one peer.  See the module docstring for how to drive it."""

    def __init__(
        self,
        config: IkeConfig,
        *,
        initiator: bool,
        local_addr: Address,
        remote_addr: Address,
        random: RandomSource,
        now: float,
        counters: BadInputLog | None = None,
        spi_i: bytes | None = None,
        spi_r: bytes = bytes(8),
    ) -> None:
        self.config = config
        self.is_initiator = initiator  # original initiator of this IKE SA (RFC 7296 §2.18)
        self.local_addr = local_addr
        self.remote_addr = remote_addr
        self.random = random
        self.counters = counters if counters is not None else BadInputLog()
        self.state = IkeState.IDLE
        self.spi_i = spi_i if spi_i is not None else random(8)
        self.spi_r = spi_r
        self.suite: AlgorithmSuite | None = None
        self.keys: IkeKeys | None = None
        self.out_cipher: SkCipher | None = None
        self.in_cipher: SkCipher | None = None
        self.nego = Negotiation()
        self.nat_local = False  # we are behind a NAT
        self.nat_remote = False  # the peer is
        self.peer_id: object = None
        self.children: dict[int, ChildSa] = {}
        self.next_request_id = 0
        self.expected_request_id = 0
        self.outstanding: OutstandingRequest | None = None
        self.queue: deque[PendingRequest] = deque()
        self.last_response: tuple[int, list[bytes]] | None = None
        self.created_at = now
        self.established_at: float | None = None
        self.last_received = now
        self.last_sent = now
        self.rekey_at: float | None = None
        self.ike_rekeying = False  # our CREATE_CHILD_SA rekeying this IKE SA is under way
        self.ike_collision: IkeSa | None = None  # the peer's rekey of it, during a collision
        self.child_collisions: dict[int, ChildSa] = {}  # old inbound SPI -> peer's new CHILD SA
        self.initial_contact = False  # the peer's IKE_AUTH said INITIAL_CONTACT (§2.4)
        self.superseded_at: float | None = None  # rekeyed: waits for its delete (§2.18)
        self.successor: IkeSa | None = None  # the IKE SA our CHILD SAs moved to
        self.keep_child = True  # initiator re-creates a CHILD SA when none is left
        self.child_retry_at = now
        self.closed_reason = ""
        self.last_request_data = b""
        self._events: deque[IkeEvent] = deque()
        self._datagrams: list[Datagram] = []

    # -- identity --------------------------------------------------------------------------------
    @property
    def id(self) -> IkeSaId:
        return IkeSaId(self.spi_i, self.spi_r)

    @property
    def local_spi(self) -> bytes:
        return self.spi_i if self.is_initiator else self.spi_r

    @property
    def nat_detected(self) -> bool:
        return self.nat_local or self.nat_remote

    @property
    def udp_encapsulation(self) -> tuple[int, int] | None:
        if self.nat_detected:
            return (self.local_addr[1], self.remote_addr[1])
        return None

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
        from afbr.ipsec.ike_timers import run_timers  # noqa: PLC0415 (avoids an import cycle)

        run_timers(self, now)

    def get_timer(self) -> float | None:
        from afbr.ipsec.ike_timers import next_deadline  # noqa: PLC0415

        return next_deadline(self)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._datagrams = self._datagrams, []
        if out:
            self.last_sent = now
        return out

    def next_event(self) -> IkeEvent | None:
        return self._events.popleft() if self._events else None

    # -- helpers for the exchange handlers -------------------------------------------------------
    def emit(self, event: IkeEvent) -> None:
        self._events.append(event)

    def send_keepalive(self) -> None:
        """RFC 3948 §2.3: one 0xFF byte on the NAT-T port keeps the NAT mapping."""
        self._datagrams.append(Datagram(NAT_KEEPALIVE, self.local_addr, self.remote_addr))

    def send_raw(self, data: bytes) -> None:
        marker = NON_ESP_MARKER if self.local_addr[1] != IKE_PORT else b""
        self._datagrams.append(Datagram(marker + data, self.local_addr, self.remote_addr))

    def queue_request(self, request: PendingRequest, now: float) -> None:
        self.queue.append(request)
        self.send_next_request(now)

    def send_next_request(self, now: float) -> None:
        while self.outstanding is None and self.queue and self.state != IkeState.CLOSED:
            pending = self.queue.popleft()
            payloads = pending.build(self, now)
            if payloads is None:
                continue
            data = self.encode(pending.exchange, payloads, False, self.next_request_id)
            timeout = self.config.timers.retransmit_timeout
            self.last_request_data = data
            self.outstanding = OutstandingRequest(
                self.next_request_id,
                pending.exchange,
                data,
                pending.on_response,
                now,
                now + timeout,
            )
            self.next_request_id += 1
            self.send_raw(data)

    def encode(
        self, exchange: ExchangeType, payloads: tuple[Payload, ...], response: bool, message_id: int
    ) -> bytes:
        """Our message, SK-protected unless it is IKE_SA_INIT."""
        return protect(self, exchange, payloads, response, message_id)

    def decode(self, header: IkeHeader, data: bytes) -> IkeMessage:
        """The peer's message, SK payload checked and opened; IkeIntegrityError if forged."""
        return unprotect(self, header, data)

    # -- commands -------------------------------------------------------------------------------
    def initiate(self, now: float) -> None:
        """Start IKE_SA_INIT (then IKE_AUTH with the first CHILD SA)."""
        from afbr.ipsec.ike_setup import start_initiator  # noqa: PLC0415

        start_initiator(self, now)

    def create_child(self, now: float) -> None:
        """Negotiate one more CHILD SA (CREATE_CHILD_SA, RFC 7296 §1.3.1)."""
        from afbr.ipsec.ike_rekey import request_new_child  # noqa: PLC0415

        request_new_child(self, now)

    def rekey_child(self, inbound_spi: int, now: float) -> None:
        """Rekey one CHILD SA (RFC 7296 §1.3.3), e.g. on the kernel's soft expiry."""
        from afbr.ipsec.ike_rekey import request_child_rekey  # noqa: PLC0415

        request_child_rekey(self, inbound_spi, now)

    def rekey(self, now: float) -> None:
        """Rekey this IKE SA (RFC 7296 §1.3.2); IkeSaRekeyed names its successor."""
        from afbr.ipsec.ike_rekey import request_ike_rekey  # noqa: PLC0415

        request_ike_rekey(self, now)

    def delete_child(self, inbound_spi: int, now: float) -> None:
        """Delete one CHILD SA; the IKE SA then no longer re-creates a missing CHILD SA."""
        self.keep_child = False
        from afbr.ipsec.ike_informational import request_child_delete  # noqa: PLC0415

        request_child_delete(self, inbound_spi, now)

    def delete(self, now: float) -> None:
        """Delete the IKE SA and its CHILD SAs (RFC 7296 §1.4.1)."""
        from afbr.ipsec.ike_informational import request_ike_delete  # noqa: PLC0415

        request_ike_delete(self, now)

    def check_liveness(self, now: float) -> None:
        """Send an empty INFORMATIONAL request (RFC 7296 §2.4)."""
        from afbr.ipsec.ike_informational import request_liveness  # noqa: PLC0415

        request_liveness(self, now)

    def hand_over_children(self, new: IkeSa, now: float) -> None:
        """IKE SA rekeyed (RFC 7296 §2.18): CHILD SAs and the requests about them move to
        `new`; this SA only waits for its delete."""
        from afbr.ipsec.ike_events import IkeSaRekeyed  # noqa: PLC0415

        new.children.update(self.children)
        self.children.clear()
        new.queue.extend(r for r in self.queue if r.for_children)
        self.queue = deque(r for r in self.queue if not r.for_children)
        self.superseded_at = now
        self.successor = new
        self.rekey_at = None
        self.ike_collision = None
        self.emit(IkeSaRekeyed(self.id, new.id, new))
        new.send_next_request(now)

    def holder_of(self, inbound_spi: int) -> IkeSa | None:
        """This SA or the successor that now holds the CHILD SA with `inbound_spi`."""
        sa: IkeSa | None = self
        while sa is not None and inbound_spi not in sa.children:
            sa = sa.successor
        return sa

    def close(self, reason: str, now: float) -> None:
        """Forget the SA: CHILD SAs deleted (events), IkeSaDeleted, timers stop."""
        if self.state == IkeState.CLOSED:
            return
        from afbr.ipsec.ike_events import ChildSaDeleted  # noqa: PLC0415

        for child in list(self.children.values()):
            self.emit(ChildSaDeleted(self.id, child.inbound_spi, child.outbound_spi, reason))
        self.children.clear()
        self.state = IkeState.CLOSED
        self.closed_reason = reason
        self.outstanding = None
        self.queue.clear()
        log.info("IKE SA %s closed: %s", self.id, reason)
        self.emit(IkeSaDeleted(self.id, reason))

    # -- receive paths ---------------------------------------------------------------------------
    def _receive_request(
        self, header: IkeHeader, data: bytes, addr: Address, now: float, local: Address | None
    ) -> None:
        if header.from_initiator == self.is_initiator:
            raise IkeDecodeError("request with our own role's initiator flag")
        if (
            self.last_response is not None
            and header.message_id == self.last_response[0]
            and header.message_id == self.expected_request_id - 1
        ):
            self.counters.count(BadInput.REPLAYED, now, f"request {header.message_id} again")
            for cached in self.last_response[1]:
                self.send_raw(cached)
            return
        if header.message_id != self.expected_request_id:
            self.counters.count(BadInput.OUT_OF_WINDOW, now, f"request id {header.message_id}")
            return
        try:
            exchange = ExchangeType(header.exchange)
        except ValueError:
            raise IkeDecodeError(f"exchange type {header.exchange}") from None
        handler = REQUEST_HANDLERS.get((self.state, exchange))
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
                self.state = IkeState.CLOSED  # refused: answer, keep nothing (RFC 7296 §2.6)
                self.closed_reason = str(exc)
        self.expected_request_id = header.message_id + 1
        response = self.encode(exchange, payloads, True, header.message_id)
        self.last_response = (header.message_id, [response])
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
        if self.state not in RESPONSE_STATES[out.exchange]:
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

    def note_authenticated(self, addr: Address, now: float, local: Address | None) -> None:
        """A message that decrypted: liveness, and NAT mapping updates (RFC 7296 §2.23)."""
        self.last_received = now
        if self.nat_remote and addr != self.remote_addr and self.state == IkeState.ESTABLISHED:
            self.remote_addr = addr
        if local is None or local[1] == self.local_addr[1]:
            return
        # RFC 7296 §2.23: a peer may move to port 4500 with or without a NAT between us;
        # RFC 7296 §2.11: the exchange goes on from and to where its request arrived.
        floated = local[1] == NAT_T_PORT and self.local_addr[1] == IKE_PORT
        if self.nat_detected or floated:
            self.local_addr = local
        if floated and addr[1] == NAT_T_PORT:
            self.remote_addr = addr
