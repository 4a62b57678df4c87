"""Routes IKE datagrams to IKE SAs by SPI, creates responders, and guards against floods:
cookies once half-open SAs pile up (RFC 7296 §2.6) and a hard cap on half-open SAs.

Same driving interface as an IkeSa; `connect` starts an initiator.  Every kind of bad input is
counted in `counters` (one BadInputLog shared with the SAs) and logged once per interval.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections import deque
from collections.abc import Callable

from afbr.ipsec.ike_config import Address, IkeConfig
from afbr.ipsec.ike_constants import (
    IKE_PORT,
    NAT_KEEPALIVE,
    NON_ESP_MARKER,
    ExchangeType,
    HeaderFlag,
    NotifyType,
    PayloadType,
)
from afbr.ipsec.ike_counters import BadInput, BadInputLog
from afbr.ipsec.ike_dh import RandomSource
from afbr.ipsec.ike_errors import IkeError
from afbr.ipsec.ike_events import IkeEvent, IkeSaEstablished, IkeSaRekeyed
from afbr.ipsec.ike_message import decode_header, decode_message, encode_message
from afbr.ipsec.ike_payloads import IkeHeader, IkeMessage, NoncePayload, NotifyPayload
from afbr.ipsec.ike_protect import classify
from afbr.ipsec.ike_sa import IkeSa
from afbr.ipsec.ike_sa_state import Datagram, IkeState

COOKIE_SECRET_LIFETIME = 300.0  # seconds; the previous secret stays valid for one more period


class IkeDispatcher:
    def __init__(
        self,
        config_for: Callable[[Address], IkeConfig | None],
        random: RandomSource,
        *,
        cookie_threshold: int = 64,
        half_open_limit: int = 1024,
        counters: BadInputLog | None = None,
    ) -> None:
        self.config_for = config_for  # the configuration for a peer address, or None
        self.random = random
        self.cookie_threshold = cookie_threshold
        self.half_open_limit = half_open_limit
        self.counters = counters if counters is not None else BadInputLog()
        self.sas: dict[bytes, IkeSa] = {}  # by our SPI
        self._by_init: dict[tuple[bytes, Address], IkeSa] = {}  # responders by (SPIi, peer)
        self._events: deque[IkeEvent] = deque()
        self._datagrams: list[Datagram] = []
        # (VersionIDofSecret, secret), newest first: the version is a counter, not secret bits
        self._secret_version = 1
        self._secrets: list[tuple[bytes, bytes]] = [(_version_id(1), random(32))]
        self._secret_rotated: float | None = None
        self._last_unprotected: float | None = None

    # -- commands ----------------------------------------------------------------------------
    def connect(
        self, config: IkeConfig, local_addr: Address, remote_addr: Address, now: float
    ) -> IkeSa:
        sa = IkeSa(
            config,
            initiator=True,
            local_addr=local_addr,
            remote_addr=remote_addr,
            random=self.random,
            now=now,
            counters=self.counters,
        )
        self.sas[sa.spi_i] = sa
        sa.initiate(now)
        self._drain(sa, now)
        return sa

    def all_sas(self) -> list[IkeSa]:
        """Every IKE SA known, established or under way (half-open responders included)."""
        return list({id(sa): sa for sa in (*self.sas.values(), *self._by_init.values())}.values())

    def after_command(self, sa: IkeSa, now: float) -> None:
        """Call after driving an SA directly (rekey, delete...) to collect its output."""
        self._drain(sa, now)

    @property
    def half_open(self) -> int:
        return sum(1 for sa in self._by_init.values() if sa.state == IkeState.HALF_OPEN)

    # -- driving interface -------------------------------------------------------------------
    def receive_datagram(
        self, data: bytes, addr: Address, now: float, local_addr: Address | None = None
    ) -> None:
        if data == NAT_KEEPALIVE:
            self.counters.count(BadInput.NAT_KEEPALIVE, now)
            return
        body = data[4:] if data[:4] == NON_ESP_MARKER else data
        try:
            header = decode_header(body)
        except IkeError as exc:
            self.counters.count(classify(exc), now, str(exc))
            if exc.notify == NotifyType.INVALID_MAJOR_VERSION:
                self._unprotected_error(
                    body, addr, local_addr, now, NotifyType.INVALID_MAJOR_VERSION
                )
            return
        if (
            header.spi_r == bytes(8)
            and header.exchange == ExchangeType.IKE_SA_INIT
            and not header.is_response
        ):
            self._init_request(header, body, addr, now, local_addr)
            return
        our_spi = header.spi_r if header.from_initiator else header.spi_i
        sa = self.sas.get(our_spi)
        if sa is None:
            self.counters.count(BadInput.UNKNOWN_SPI, now, f"SPI {our_spi.hex()} from {addr}")
            self._unprotected_error(body, addr, local_addr, now, NotifyType.INVALID_IKE_SPI)
            return
        sa.receive_datagram(data, addr, now, local_addr)
        self._drain(sa, now)

    def handle_timer(self, now: float) -> None:
        for sa in list(
            {id(sa): sa for sa in (*self.sas.values(), *self._by_init.values())}.values()
        ):
            deadline = sa.get_timer()
            if deadline is not None and deadline <= now:
                sa.handle_timer(now)
                self._drain(sa, now)
        self.counters.flush(now)
        for key, sa in list(self._by_init.items()):  # kept to recognise IKE_SA_INIT retransmits
            if now - sa.created_at > sa.config.timers.half_open_timeout:
                del self._by_init[key]
        if self._secret_rotated is None:
            self._secret_rotated = now
        elif now - self._secret_rotated >= COOKIE_SECRET_LIFETIME:
            self._secret_version += 1
            newest = (_version_id(self._secret_version), self.random(32))
            self._secrets = [newest, self._secrets[0]]
            self._secret_rotated = now

    def get_timer(self) -> float | None:
        half_open_ends = (
            sa.created_at + sa.config.timers.half_open_timeout for sa in self._by_init.values()
        )  # when handle_timer forgets a responder kept to recognise IKE_SA_INIT retransmits
        deadlines = [min(half_open_ends, default=1e18)]
        deadlines += [
            t
            for sa in {*self.sas.values(), *self._by_init.values()}
            if (t := sa.get_timer()) is not None
        ]
        deadline = min(deadlines)
        return None if deadline >= 1e18 else deadline

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._datagrams = self._datagrams, []
        return out

    def next_event(self) -> IkeEvent | None:
        return self._events.popleft() if self._events else None

    # -- internals ---------------------------------------------------------------------------
    def _drain(self, sa: IkeSa, now: float) -> None:
        self._datagrams += sa.datagrams_to_send(now)
        peer_restarted = False
        while (event := sa.next_event()) is not None:
            self._events.append(event)
            if isinstance(event, IkeSaRekeyed):
                new = sa.rekeyed_to[event.new_ike_sa]
                self.sas[new.local_spi] = new
                self._drain(new, now)
            peer_restarted |= isinstance(event, IkeSaEstablished) and sa.initial_contact
        if peer_restarted:  # make-before-break: the new SA's CHILD SAs first, then the stale go
            self._initial_contact(sa, now)
        if sa.state == IkeState.CLOSED and self.sas.get(sa.local_spi) is sa:
            del self.sas[sa.local_spi]
        if sa.state == IkeState.CLOSED:
            for key in [k for k, v in self._by_init.items() if v is sa]:
                del self._by_init[key]

    def _initial_contact(self, sa: IkeSa, now: float) -> None:
        """RFC 7296 §2.4: the peer restarted; its older SAs are stale, drop them silently.

        Older means established before the peer started this one: an SA of ours that is
        under way, or came up while this one was being set up, is the other half of a
        simultaneous start (both ends initiated at once, both sent INITIAL_CONTACT), not a
        leftover; dropping it would leave each end with the SA the other one dropped."""
        for other in list(self.sas.values()):
            same_peer = other.peer_id == sa.peer_id and other.remote_addr[0] == sa.remote_addr[0]
            older = other.established_at is not None and other.established_at < sa.created_at
            if other is not sa and same_peer and older and other.state != IkeState.CLOSED:
                other.close("peer restarted (INITIAL_CONTACT)", now)
                self._drain(other, now)

    def _init_request(
        self, header: IkeHeader, data: bytes, addr: Address, now: float, local: Address | None
    ) -> None:
        existing = self._by_init.get((header.spi_i, addr))
        if existing is not None:  # a retransmission: the SA answers from its cache
            existing.receive_datagram(data, addr, now, local)
            self._drain(existing, now)
            return
        half_open = self.half_open
        if half_open >= self.half_open_limit:
            self.counters.count(BadInput.HALF_OPEN_LIMIT, now, f"from {addr}")
            return
        if half_open >= self.cookie_threshold:  # RFC 7296 §2.6: stateless until proven
            try:
                message = decode_message(data)
            except IkeError as exc:
                self.counters.count(classify(exc), now, str(exc))
                return
            if not self._cookie_ok(message, addr):
                self.counters.count(BadInput.COOKIE_REQUIRED, now, f"from {addr}")
                self._send_cookie(message, addr, local, now)
                return
        config = self.config_for(addr)
        if config is None:
            self.counters.count(BadInput.UNKNOWN_PEER, now, f"IKE_SA_INIT from {addr}")
            return
        local_addr = local or (_any_address(addr), addr[1] if addr[1] != IKE_PORT else IKE_PORT)
        sa = IkeSa(
            config,
            initiator=False,
            local_addr=local_addr,
            remote_addr=addr,
            random=self.random,
            now=now,
            counters=self.counters,
            spi_i=header.spi_i,
        )
        sa.receive_datagram(data, addr, now, local)
        if sa.state == IkeState.HALF_OPEN:
            self.sas[sa.spi_r] = sa
            self._by_init[(header.spi_i, addr)] = sa
        self._drain(sa, now)

    def _cookie(self, message: IkeMessage, addr: Address, secret: tuple[bytes, bytes]) -> bytes:
        nonce = message.first(PayloadType.NONCE)
        nonce_data = nonce.nonce if isinstance(nonce, NoncePayload) else b""
        packed = ipaddress.ip_address(addr[0]).packed
        # RFC 7296 §2.6: Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)
        version, key = secret
        digest = hashlib.sha256(nonce_data + packed + message.header.spi_i + key).digest()
        return version + digest

    def _cookie_ok(self, message: IkeMessage, addr: Address) -> bool:
        first = message.payloads[0] if message.payloads else None
        if not isinstance(first, NotifyPayload) or first.notify_type != NotifyType.COOKIE:
            return False
        secret = next((s for s in self._secrets if s[0] == first.data[:4]), None)
        return secret is not None and hmac.compare_digest(
            first.data, self._cookie(message, addr, secret)
        )

    def _send_cookie(
        self, message: IkeMessage, addr: Address, local: Address | None, now: float
    ) -> None:
        header = IkeHeader(
            message.header.spi_i, bytes(8), 0, ExchangeType.IKE_SA_INIT, HeaderFlag.RESPONSE, 0
        )
        cookie = self._cookie(message, addr, self._secrets[0])
        reply = encode_message(IkeMessage(header, (NotifyPayload(NotifyType.COOKIE, cookie),)))
        source = local or (_any_address(addr), IKE_PORT)
        marker = NON_ESP_MARKER if source[1] != IKE_PORT else b""
        self._datagrams.append(Datagram(marker + reply, source, addr))

    def _unprotected_error(
        self, data: bytes, addr: Address, local: Address | None, now: float, notify: NotifyType
    ) -> None:
        """RFC 7296 §2.5 INVALID_MAJOR_VERSION / §2.21.4 INVALID_IKE_SPI: an unprotected answer
        to a request, at most one per second so that it cannot be used to amplify a flood."""
        if len(data) < 28 or data[19] & HeaderFlag.RESPONSE:
            return
        if self._last_unprotected is not None and now - self._last_unprotected < 1.0:
            return
        self._last_unprotected = now
        flags = HeaderFlag.RESPONSE | (
            HeaderFlag.NONE if data[19] & HeaderFlag.INITIATOR else HeaderFlag.INITIATOR
        )
        exchange = ExchangeType.INFORMATIONAL if notify == NotifyType.INVALID_IKE_SPI else data[18]
        header = IkeHeader(
            data[:8], data[8:16], 0, exchange, flags, int.from_bytes(data[20:24], "big")
        )
        payload = NotifyPayload(
            notify, bytes([0x20]) if notify == NotifyType.INVALID_MAJOR_VERSION else b""
        )
        reply = encode_message(IkeMessage(header, (payload,)))
        source = local or (_any_address(addr), IKE_PORT)
        marker = NON_ESP_MARKER if source[1] != IKE_PORT else b""
        self._datagrams.append(Datagram(marker + reply, source, addr))


def _version_id(counter: int) -> bytes:
    """RFC 7296 §2.6 VersionIDofSecret: which secret made a cookie; a counter, so that the
    cookie says nothing about the secret itself."""
    return (counter & 0xFFFF_FFFF).to_bytes(4, "big")


def _any_address(peer: Address) -> str:
    return "::" if ":" in peer[0] else "0.0.0.0"  # noqa: S104 (the adapter fills in the real one)
