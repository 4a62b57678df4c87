"""The IKE SA's data and states: the bottom of the IKE core (RFC 7296).

`IkeSaRecord` holds everything one IKE SA knows (SPIs, keys, CHILD SAs, message ids, the request
queue, timers) and the few operations every exchange needs (send, queue a request, emit an event,
change state, close).  The exchange modules (ike_setup, ike_rekey, ike_informational,
ike_child_nego, ike_timers) are plain functions over it and import nothing above this module;
`afbr.ipsec.ike_sa.IkeSa` drives it and owns the table of which exchange handles which request.

State changes go through `transition()`, which checks `TRANSITIONS` (h11-style: the table is
the state machine) and raises `IkeTransitionError` on a change it does not list.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Self

from afbr.ipsec.ike_child import ChildSa
from afbr.ipsec.ike_config import Address, IkeConfig
from afbr.ipsec.ike_constants import (
    IKE_PORT,
    NAT_KEEPALIVE,
    NAT_T_PORT,
    NON_ESP_MARKER,
    ExchangeType,
)
from afbr.ipsec.ike_counters import BadInputLog
from afbr.ipsec.ike_crypto import IkeKeys, SkCipher
from afbr.ipsec.ike_dh import DhKeyPair, RandomSource
from afbr.ipsec.ike_events import ChildSaDeleted, IkeEvent, IkeSaDeleted, IkeSaId, IkeSaRekeyed
from afbr.ipsec.ike_payloads import IkeHeader, IkeMessage, Payload
from afbr.ipsec.ike_proposals import AlgorithmSuite
from afbr.ipsec.ike_protect import protect, unprotect

log = logging.getLogger(__name__)


class IkeState(Enum):
    IDLE = "idle"  # created, nothing sent or received
    INIT_SENT = "init-sent"  # initiator: IKE_SA_INIT request out
    HALF_OPEN = "half-open"  # responder: IKE_SA_INIT answered, waiting for IKE_AUTH
    AUTH_SENT = "auth-sent"  # initiator: IKE_AUTH request out
    ESTABLISHED = "established"
    DELETING = "deleting"  # we sent the IKE SA's delete
    CLOSED = "closed"  # gone; the dispatcher forgets it


# Every state change an IKE SA may make; anything else is a bug (IkeTransitionError).
TRANSITIONS: Mapping[IkeState, frozenset[IkeState]] = {
    IkeState.IDLE: frozenset(
        {
            IkeState.INIT_SENT,  # initiator: IKE_SA_INIT sent
            IkeState.HALF_OPEN,  # responder: IKE_SA_INIT answered
            IkeState.ESTABLISHED,  # the successor of a rekey starts established (§2.18)
            IkeState.CLOSED,  # IKE_SA_INIT refused, half-open timeout, delete before start
        }
    ),
    IkeState.INIT_SENT: frozenset({IkeState.AUTH_SENT, IkeState.CLOSED}),
    IkeState.HALF_OPEN: frozenset({IkeState.ESTABLISHED, IkeState.CLOSED}),
    IkeState.AUTH_SENT: frozenset({IkeState.ESTABLISHED, IkeState.CLOSED}),
    IkeState.ESTABLISHED: frozenset({IkeState.DELETING, IkeState.CLOSED}),
    IkeState.DELETING: frozenset({IkeState.CLOSED}),
    IkeState.CLOSED: frozenset(),
}


class IkeTransitionError(ValueError):
    """A state change not in TRANSITIONS: a bug in the core, never the peer's doing."""


@dataclass(frozen=True, slots=True)
class Datagram:
    """One UDP datagram to send, marker included (RFC 3948 §2.2 on the NAT-T port)."""

    data: bytes
    source: Address
    destination: Address


ResponseHandler = Callable[["IkeSaRecord", IkeMessage, float], None]
RequestHandler = Callable[["IkeSaRecord", IkeMessage, Address, float], tuple[Payload, ...]]


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
    build: Callable[[IkeSaRecord, float], tuple[Payload, ...] | None]  # None: nothing to send
    on_response: ResponseHandler
    for_children: bool = False  # about CHILD SAs: follows them to the successor IKE SA


@dataclass(slots=True)
class CachedResponse:
    """Our answer to the peer's last request, and what that request was (RFC 7296 §2.1: a
    retransmission gets the same answer; strongSwan compares a hash of the request too)."""

    message_id: int
    request_hash: bytes
    datagrams: list[bytes]


def request_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


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


class IkeSaRecord:
    """One IKE SA's data, and the operations the exchanges share.  Driven by ike_sa.IkeSa."""

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
        self._state = IkeState.IDLE
        self.spi_i = spi_i if spi_i is not None else random(8)
        self.spi_r = spi_r
        self.suite: AlgorithmSuite | None = None
        self.keys: IkeKeys | None = None
        self.out_cipher: SkCipher | None = None
        self.in_cipher: SkCipher | None = None
        self.nego = Negotiation()
        self.nat_local = False  # we are behind a NAT
        self.nat_remote = False  # the peer is
        self.peer_id: object = None  # the peer's Identity, once it authenticated
        self.children: dict[int, ChildSa] = {}
        self.next_request_id = 0
        self.expected_request_id = 0
        self.outstanding: OutstandingRequest | None = None
        self.queue: deque[PendingRequest] = deque()
        self.last_response: CachedResponse | None = None
        self.last_resend: float | None = None  # when a cached response was last sent again
        self.created_at = now
        self.established_at: float | None = None
        self.last_received = now
        self.last_sent = now
        self.rekey_at: float | None = None
        self.ike_rekeying = False  # our CREATE_CHILD_SA rekeying this IKE SA is under way
        self.ike_collision: Self | None = None  # the peer's rekey of it, during a collision
        self.child_collisions: dict[int, ChildSa] = {}  # old inbound SPI -> peer's new CHILD SA
        self.initial_contact = False  # the peer's IKE_AUTH said INITIAL_CONTACT (§2.4)
        self.superseded_at: float | None = None  # rekeyed: waits for its delete (§2.18)
        self.successor: Self | None = None  # the IKE SA our CHILD SAs moved to
        self.rekeyed_to: dict[IkeSaId, Self] = {}  # every IKE SA a rekey of this one made
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

    # -- state -----------------------------------------------------------------------------------
    @property
    def state(self) -> IkeState:
        return self._state

    def transition(self, new: IkeState) -> None:
        """Change state; only the changes TRANSITIONS lists are allowed."""
        if new not in TRANSITIONS[self._state]:
            raise IkeTransitionError(f"IKE SA {self.id}: {self._state.value} -> {new.value}")
        self._state = new

    # -- output ----------------------------------------------------------------------------------
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
        while self.outstanding is None and self.queue and self._state != IkeState.CLOSED:
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
        return protect(
            (self.spi_i, self.spi_r),
            self.is_initiator,
            self.out_cipher,
            self.random,
            exchange=exchange,
            payloads=payloads,
            response=response,
            message_id=message_id,
        )

    def decode(self, header: IkeHeader, data: bytes) -> IkeMessage:
        """The peer's message, SK payload checked and opened; IkeIntegrityError if forged."""
        return unprotect(self.in_cipher, header, data)

    # -- life cycle ------------------------------------------------------------------------------
    def spawn(
        self, *, initiator: bool, spis: tuple[bytes, bytes], now: float, state: IkeState
    ) -> Self:
        """A new IKE SA of the same kind with this one's peer, config and counters (the
        successor of a rekey, RFC 7296 §2.18), remembered in `rekeyed_to`."""
        new = type(self)(
            self.config,
            initiator=initiator,
            local_addr=self.local_addr,
            remote_addr=self.remote_addr,
            random=self.random,
            now=now,
            counters=self.counters,
            spi_i=spis[0],
            spi_r=spis[1],
        )
        new.transition(state)
        self.rekeyed_to[new.id] = new
        return new

    def hand_over_children(self, new: Self, now: float) -> None:
        """IKE SA rekeyed (RFC 7296 §2.18): CHILD SAs and the requests about them move to
        `new`; this SA only waits for its delete."""
        new.children.update(self.children)
        self.children.clear()
        new.queue.extend(r for r in self.queue if r.for_children)
        self.queue = deque(r for r in self.queue if not r.for_children)
        self.superseded_at = now
        self.successor = new
        self.rekey_at = None
        self.ike_collision = None
        self.emit(IkeSaRekeyed(self.id, new.id))
        new.send_next_request(now)

    def holder_of(self, inbound_spi: int) -> Self | None:
        """This SA or the successor that now holds the CHILD SA with `inbound_spi`."""
        sa: Self | None = self
        while sa is not None and inbound_spi not in sa.children:
            sa = sa.successor
        return sa

    def close(self, reason: str, now: float) -> None:
        """Forget the SA: CHILD SAs deleted (events), IkeSaDeleted, timers stop."""
        if self._state == IkeState.CLOSED:
            return
        for child in list(self.children.values()):
            self.emit(ChildSaDeleted(self.id, child.inbound_spi, child.outbound_spi, reason))
        self.children.clear()
        self.transition(IkeState.CLOSED)
        self.closed_reason = reason
        self.outstanding = None
        self.queue.clear()
        log.info("IKE SA %s closed: %s", self.id, reason)
        self.emit(IkeSaDeleted(self.id, reason))

    def note_authenticated(self, addr: Address, now: float, local: Address | None) -> None:
        """A message that decrypted: liveness, and NAT mapping updates (RFC 7296 §2.23)."""
        self.last_received = now
        if self.nat_remote and addr != self.remote_addr and self._state == IkeState.ESTABLISHED:
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
