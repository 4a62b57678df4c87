"""IKEv2 message and payload codec (RFC 7296 §3), pull_x/push_x pairs over an IkeBuffer.

Decoding never raises anything but IkeDecodeError (or IkeError for an unsupported critical
payload); what it accepts it re-encodes.  The SK payload stays opaque here: `ike_crypto` opens
and seals it, and `pull_payload_chain` decodes the plaintext it holds.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from afbr.ipsec.ike_buffer import IkeBuffer
from afbr.ipsec.ike_constants import (
    IKE_VERSION,
    HeaderFlag,
    PayloadType,
    TrafficSelectorType,
)
from afbr.ipsec.ike_errors import IkeDecodeError
from afbr.ipsec.ike_proposals import KEY_LENGTH_ATTRIBUTE, Proposal, Transform


@dataclass(frozen=True, slots=True)
class IkeHeader:
    """RFC 7296 §3.1; `length` is the whole message's."""

    spi_i: bytes
    spi_r: bytes
    next_payload: int
    exchange: int
    flags: HeaderFlag
    message_id: int
    length: int = 0
    version: int = IKE_VERSION

    @property
    def is_response(self) -> bool:
        return bool(self.flags & HeaderFlag.RESPONSE)

    @property
    def from_initiator(self) -> bool:
        return bool(self.flags & HeaderFlag.INITIATOR)


@dataclass(frozen=True, slots=True)
class SaPayload:
    proposals: tuple[Proposal, ...]
    payload_type: PayloadType = PayloadType.SA


@dataclass(frozen=True, slots=True)
class KePayload:
    group: int
    data: bytes
    payload_type: PayloadType = PayloadType.KE


@dataclass(frozen=True, slots=True)
class NoncePayload:
    nonce: bytes
    payload_type: PayloadType = PayloadType.NONCE


@dataclass(frozen=True, slots=True)
class IdPayload:
    """IDi or IDr (RFC 7296 §3.5); `body` is what the AUTH computation signs."""

    payload_type: PayloadType
    id_type: int
    data: bytes

    @property
    def body(self) -> bytes:
        return bytes([self.id_type, 0, 0, 0]) + self.data


@dataclass(frozen=True, slots=True)
class AuthPayload:
    method: int
    data: bytes
    payload_type: PayloadType = PayloadType.AUTH


@dataclass(frozen=True, slots=True)
class CertPayload:
    """CERT or CERTREQ (RFC 7296 §3.6, §3.7)."""

    encoding: int
    data: bytes
    payload_type: PayloadType = PayloadType.CERT


@dataclass(frozen=True, slots=True)
class NotifyPayload:
    notify_type: int
    data: bytes = b""
    protocol: int = 0
    spi: bytes = b""
    payload_type: PayloadType = PayloadType.NOTIFY


@dataclass(frozen=True, slots=True)
class DeletePayload:
    protocol: int
    spis: tuple[bytes, ...] = ()
    payload_type: PayloadType = PayloadType.DELETE


@dataclass(frozen=True, slots=True)
class TrafficSelector:
    """One address range with protocol and port range (RFC 7296 §3.13.1)."""

    start: ipaddress.IPv4Address | ipaddress.IPv6Address
    end: ipaddress.IPv4Address | ipaddress.IPv6Address
    ip_protocol: int = 0
    start_port: int = 0
    end_port: int = 65535

    @classmethod
    def from_network(cls, network: str, ip_protocol: int = 0) -> TrafficSelector:
        net = ipaddress.ip_network(network, strict=False)
        return cls(net.network_address, net.broadcast_address, ip_protocol)

    def contains(self, other: TrafficSelector) -> bool:
        return (
            self.start.version == other.start.version
            and int(self.start) <= int(other.start)
            and int(other.end) <= int(self.end)
            and self.start_port <= other.start_port
            and other.end_port <= self.end_port
            and self.ip_protocol in (0, other.ip_protocol)
        )


@dataclass(frozen=True, slots=True)
class TsPayload:
    payload_type: PayloadType
    selectors: tuple[TrafficSelector, ...]


@dataclass(frozen=True, slots=True)
class RawPayload:
    """Vendor ID, CP, EAP and unknown non-critical payloads, kept as bytes."""

    payload_type: int
    data: bytes
    critical: bool = False


@dataclass(frozen=True, slots=True)
class SkPayload:
    """The encrypted payload (RFC 7296 §3.14): `first_inner` is its Next Payload field."""

    first_inner: int
    data: bytes
    payload_type: PayloadType = PayloadType.SK


Payload = (
    SaPayload
    | KePayload
    | NoncePayload
    | IdPayload
    | AuthPayload
    | CertPayload
    | NotifyPayload
    | DeletePayload
    | TsPayload
    | RawPayload
    | SkPayload
)


@dataclass(frozen=True, slots=True)
class IkeMessage:
    header: IkeHeader
    payloads: tuple[Payload, ...] = field(default_factory=tuple)
    raw: bytes = b""  # the datagram it was decoded from (IKE_SA_INIT messages are signed)

    def notify(self, notify_type: int) -> NotifyPayload | None:
        for payload in self.payloads:
            if isinstance(payload, NotifyPayload) and payload.notify_type == notify_type:
                return payload
        return None

    def error_notify(self) -> NotifyPayload | None:
        for payload in self.payloads:
            if isinstance(payload, NotifyPayload) and payload.notify_type < 16384:
                return payload
        return None

    def first(self, payload_type: int) -> Payload | None:
        for payload in self.payloads:
            if payload.payload_type == payload_type:
                return payload
        return None


# -- header --------------------------------------------------------------------------------------
def pull_header(buf: IkeBuffer) -> IkeHeader:
    spi_i = buf.pull_bytes(8)
    spi_r = buf.pull_bytes(8)
    next_payload = buf.pull_uint8()
    version = buf.pull_uint8()
    exchange = buf.pull_uint8()
    flags = HeaderFlag(buf.pull_uint8() & 0x38)
    message_id = buf.pull_uint32()
    length = buf.pull_uint32()
    return IkeHeader(spi_i, spi_r, next_payload, exchange, flags, message_id, length, version)


def push_header(buf: IkeBuffer, header: IkeHeader, length: int) -> None:
    buf.push_bytes(header.spi_i)
    buf.push_bytes(header.spi_r)
    buf.push_uint8(header.next_payload)
    buf.push_uint8(header.version)
    buf.push_uint8(header.exchange)
    buf.push_uint8(int(header.flags))
    buf.push_uint32(header.message_id)
    buf.push_uint32(length)


# -- SA payload ----------------------------------------------------------------------------------
def pull_transform(buf: IkeBuffer) -> Transform:
    transform_type, _, transform_id = buf.pull_generic_header()
    key_length = None
    while not buf.eof():
        attr_type = buf.pull_uint16()
        if attr_type & 0x8000:  # RFC 7296 §3.3.5: TV format
            value = buf.pull_uint16()
        else:
            value = int.from_bytes(buf.pull_bytes(buf.pull_uint16()), "big")
        if attr_type & 0x7FFF == KEY_LENGTH_ATTRIBUTE:
            key_length = value
        else:
            raise IkeDecodeError(f"unknown transform attribute {attr_type & 0x7FFF}")
    return Transform(transform_type, transform_id, key_length)


def push_transform(buf: IkeBuffer, transform: Transform, last: bool) -> None:
    attrs = b""
    if transform.key_length is not None:
        attrs = (0x8000 | KEY_LENGTH_ATTRIBUTE).to_bytes(2, "big")
        attrs += transform.key_length.to_bytes(2, "big")
    buf.push_uint8(0 if last else 3)
    buf.push_uint8(0)
    buf.push_uint16(8 + len(attrs))
    buf.push_uint8(transform.transform_type)
    buf.push_uint8(0)
    buf.push_uint16(transform.transform_id)
    buf.push_bytes(attrs)


def pull_proposal(buf: IkeBuffer) -> Proposal:
    number, protocol, spi_and_count = buf.pull_generic_header()
    spi_size, count = spi_and_count >> 8, spi_and_count & 0xFF
    spi = buf.pull_bytes(spi_size)
    transforms = []
    for index in range(count):
        last, _, length = buf.pull_generic_header()
        if length < 8:
            raise IkeDecodeError("transform shorter than its header")
        transforms.append(pull_transform(buf.pull_block(length - 4)))
        if (last == 0) != (index == count - 1):
            raise IkeDecodeError("transform count and last-substructure flags disagree")
    buf.expect_end()
    return Proposal(number, protocol, spi, tuple(transforms))


def push_proposal(buf: IkeBuffer, proposal: Proposal, last: bool) -> None:
    inner = IkeBuffer()
    for index, transform in enumerate(proposal.transforms):
        push_transform(inner, transform, index == len(proposal.transforms) - 1)
    body = inner.written()
    buf.push_uint8(0 if last else 2)
    buf.push_uint8(0)
    buf.push_uint16(8 + len(proposal.spi) + len(body))
    buf.push_uint8(proposal.number)
    buf.push_uint8(proposal.protocol)
    buf.push_uint8(len(proposal.spi))
    buf.push_uint8(len(proposal.transforms))
    buf.push_bytes(proposal.spi)
    buf.push_bytes(body)


def pull_sa(buf: IkeBuffer) -> SaPayload:
    proposals = []
    while not buf.eof():
        last, _, length = buf.pull_generic_header()
        if length < 8:
            raise IkeDecodeError("proposal shorter than its header")
        proposals.append(pull_proposal(buf.pull_block(length - 4)))
        if last == 0 and not buf.eof():
            raise IkeDecodeError("data after the last proposal")
    if not proposals:
        raise IkeDecodeError("SA payload without proposals")
    return SaPayload(tuple(proposals))


def push_sa(buf: IkeBuffer, payload: SaPayload) -> None:
    for index, proposal in enumerate(payload.proposals):
        push_proposal(buf, proposal, index == len(payload.proposals) - 1)


# -- traffic selectors ---------------------------------------------------------------------------
_TS_ADDRESS_SIZE: dict[int, int] = {
    TrafficSelectorType.TS_IPV4_ADDR_RANGE: 4,
    TrafficSelectorType.TS_IPV6_ADDR_RANGE: 16,
}


def pull_ts(buf: IkeBuffer, payload_type: PayloadType) -> TsPayload:
    count = buf.pull_uint8()
    buf.pull_bytes(3)
    selectors = []
    for _ in range(count):
        ts_type, ip_protocol, length = buf.pull_generic_header()
        if ts_type not in _TS_ADDRESS_SIZE or length != 8 + 2 * _TS_ADDRESS_SIZE[ts_type]:
            raise IkeDecodeError(f"traffic selector type {ts_type} length {length}")
        start_port = buf.pull_uint16()
        end_port = buf.pull_uint16()
        make = (
            ipaddress.IPv4Address
            if ts_type == TrafficSelectorType.TS_IPV4_ADDR_RANGE
            else (ipaddress.IPv6Address)
        )
        start = make(buf.pull_bytes(_TS_ADDRESS_SIZE[ts_type]))
        end = make(buf.pull_bytes(_TS_ADDRESS_SIZE[ts_type]))
        selectors.append(TrafficSelector(start, end, ip_protocol, start_port, end_port))
    buf.expect_end()
    return TsPayload(payload_type, tuple(selectors))


def push_ts(buf: IkeBuffer, payload: TsPayload) -> None:
    buf.push_uint8(len(payload.selectors))
    buf.push_bytes(b"\0\0\0")
    for ts in payload.selectors:
        v4 = ts.start.version == 4
        buf.push_uint8(
            TrafficSelectorType.TS_IPV4_ADDR_RANGE if v4 else TrafficSelectorType.TS_IPV6_ADDR_RANGE
        )
        buf.push_uint8(ts.ip_protocol)
        buf.push_uint16(16 if v4 else 40)
        buf.push_uint16(ts.start_port)
        buf.push_uint16(ts.end_port)
        buf.push_bytes(ts.start.packed)
        buf.push_bytes(ts.end.packed)
