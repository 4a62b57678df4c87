"""Payload bodies, payload chains and whole IKEv2 messages (RFC 7296 §3.2)."""

from __future__ import annotations

from afbr.ipsec.ike_buffer import IkeBuffer
from afbr.ipsec.ike_constants import (
    IKE_HEADER_LENGTH,
    IKE_VERSION,
    MAX_IKE_MESSAGE,
    NotifyType,
    PayloadType,
)
from afbr.ipsec.ike_errors import IkeDecodeError, IkeError, IkeOversizedError, IkeTruncatedError
from afbr.ipsec.ike_payloads import (
    AuthPayload,
    CertPayload,
    DeletePayload,
    IdPayload,
    IkeHeader,
    IkeMessage,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    RawPayload,
    SaPayload,
    SkPayload,
    TsPayload,
    pull_header,
    pull_sa,
    pull_ts,
    push_header,
    push_sa,
    push_ts,
)

KNOWN_PAYLOADS = frozenset(PayloadType) - {PayloadType.NONE}


def pull_payload_body(buf: IkeBuffer, payload_type: int) -> Payload:
    """Decode one payload body of `payload_type` that fills all of `buf`."""
    payload: Payload
    if payload_type == PayloadType.SA:
        return pull_sa(buf)
    if payload_type == PayloadType.KE:
        group = buf.pull_uint16()
        buf.pull_uint16()
        payload = KePayload(group, buf.pull_rest())
    elif payload_type == PayloadType.NONCE:
        nonce = buf.pull_rest()
        if not 16 <= len(nonce) <= 256:  # RFC 7296 §3.9
            raise IkeDecodeError(f"nonce of {len(nonce)} bytes")
        payload = NoncePayload(nonce)
    elif payload_type in (PayloadType.IDI, PayloadType.IDR):
        id_type = buf.pull_uint8()
        buf.pull_bytes(3)
        payload = IdPayload(PayloadType(payload_type), id_type, buf.pull_rest())
    elif payload_type == PayloadType.AUTH:
        method = buf.pull_uint8()
        buf.pull_bytes(3)
        payload = AuthPayload(method, buf.pull_rest())
    elif payload_type in (PayloadType.CERT, PayloadType.CERTREQ):
        encoding = buf.pull_uint8()
        payload = CertPayload(encoding, buf.pull_rest(), PayloadType(payload_type))
    elif payload_type == PayloadType.NOTIFY:
        payload = _pull_notify(buf)
    elif payload_type == PayloadType.DELETE:
        payload = _pull_delete(buf)
    elif payload_type in (PayloadType.TSI, PayloadType.TSR):
        return pull_ts(buf, PayloadType(payload_type))
    else:
        payload = RawPayload(payload_type, buf.pull_rest())
    buf.expect_end()
    return payload


def _pull_notify(buf: IkeBuffer) -> NotifyPayload:
    protocol = buf.pull_uint8()
    spi_size = buf.pull_uint8()
    notify_type = buf.pull_uint16()
    spi = buf.pull_bytes(spi_size)
    return NotifyPayload(notify_type, buf.pull_rest(), protocol, spi)


def _pull_delete(buf: IkeBuffer) -> DeletePayload:
    protocol = buf.pull_uint8()
    spi_size = buf.pull_uint8()
    count = buf.pull_uint16()
    if spi_size == 0 and count:
        raise IkeDecodeError("delete with SPIs of size 0")
    spis = tuple(buf.pull_bytes(spi_size) for _ in range(count))
    return DeletePayload(protocol, spis)


def push_payload_body(buf: IkeBuffer, payload: Payload) -> None:
    if isinstance(payload, SaPayload):
        push_sa(buf, payload)
    elif isinstance(payload, KePayload):
        buf.push_uint16(payload.group)
        buf.push_uint16(0)
        buf.push_bytes(payload.data)
    elif isinstance(payload, NoncePayload):
        buf.push_bytes(payload.nonce)
    elif isinstance(payload, IdPayload):
        buf.push_bytes(payload.body)
    elif isinstance(payload, AuthPayload):
        buf.push_bytes(bytes([payload.method, 0, 0, 0]) + payload.data)
    elif isinstance(payload, CertPayload):
        buf.push_uint8(payload.encoding)
        buf.push_bytes(payload.data)
    elif isinstance(payload, NotifyPayload):
        buf.push_uint8(payload.protocol)
        buf.push_uint8(len(payload.spi))
        buf.push_uint16(payload.notify_type)
        buf.push_bytes(payload.spi + payload.data)
    elif isinstance(payload, DeletePayload):
        buf.push_uint8(payload.protocol)
        buf.push_uint8(len(payload.spis[0]) if payload.spis else 0)
        buf.push_uint16(len(payload.spis))
        buf.push_bytes(b"".join(payload.spis))
    elif isinstance(payload, TsPayload):
        push_ts(buf, payload)
    else:
        buf.push_bytes(payload.data)


def _next_type(payload: Payload) -> int:
    if isinstance(payload, SkPayload):
        return int(PayloadType.SK)
    return int(payload.payload_type)


def pull_payload_chain(buf: IkeBuffer, first: int) -> tuple[Payload, ...]:
    """Decode a chain of generic payloads starting with type `first` (RFC 7296 §3.2).

    An SK payload must be last (§3.14) and stays opaque.  An unknown payload with the critical
    bit set raises UNSUPPORTED_CRITICAL_PAYLOAD (§2.5); without it, it is kept raw.
    """
    payloads: list[Payload] = []
    current = first
    while current != PayloadType.NONE:
        next_type, flags, length = buf.pull_generic_header()
        critical = bool(flags & 0x80)
        if length < 4:
            raise IkeDecodeError(f"payload length {length}")
        body = buf.pull_block(length - 4)
        if current == PayloadType.SK:
            payloads.append(SkPayload(next_type, body.pull_rest()))
            buf.expect_end()
            return tuple(payloads)
        if current not in KNOWN_PAYLOADS:
            if critical:
                raise IkeError(
                    f"unsupported critical payload {current}",
                    NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD,
                )
            payloads.append(RawPayload(current, body.pull_rest()))
        else:
            payloads.append(pull_payload_body(body, current))
        current = next_type
    buf.expect_end()
    return tuple(payloads)


def push_payload_chain(buf: IkeBuffer, payloads: tuple[Payload, ...]) -> None:
    for index, payload in enumerate(payloads):
        following = payloads[index + 1] if index + 1 < len(payloads) else None
        body = IkeBuffer()
        if isinstance(payload, SkPayload):
            body.push_bytes(payload.data)
            next_type = payload.first_inner
        else:
            push_payload_body(body, payload)
            next_type = _next_type(following) if following is not None else 0
        data = body.written()
        buf.push_uint8(next_type)
        critical = isinstance(payload, RawPayload) and payload.critical
        buf.push_uint8(0x80 if critical else 0)
        buf.push_uint16(4 + len(data))
        buf.push_bytes(data)


def first_payload_type(payloads: tuple[Payload, ...]) -> int:
    return _next_type(payloads[0]) if payloads else int(PayloadType.NONE)


def encode_payloads(payloads: tuple[Payload, ...]) -> bytes:
    buf = IkeBuffer()
    push_payload_chain(buf, payloads)
    return buf.written()


def decode_payloads(data: bytes, first: int) -> tuple[Payload, ...]:
    return pull_payload_chain(IkeBuffer(data), first)


def decode_header(data: bytes) -> IkeHeader:
    """The fixed header, with the checks that let a receiver drop junk early (RFC 7296 §3.1)."""
    if len(data) > MAX_IKE_MESSAGE:
        raise IkeOversizedError(f"message of {len(data)} bytes is oversized")
    header = pull_header(IkeBuffer(data[:IKE_HEADER_LENGTH]))
    if header.version >> 4 != IKE_VERSION >> 4:
        raise IkeError(f"major version {header.version >> 4}", NotifyType.INVALID_MAJOR_VERSION)
    if header.length > len(data):
        raise IkeTruncatedError(f"header length {header.length} but datagram {len(data)}")
    if header.length != len(data):
        raise IkeDecodeError(f"header length {header.length} but datagram {len(data)}")
    return header


def decode_message(data: bytes) -> IkeMessage:
    header = decode_header(data)
    payloads = pull_payload_chain(IkeBuffer(data[IKE_HEADER_LENGTH:]), header.next_payload)
    return IkeMessage(header, payloads, data)


def encode_message(message: IkeMessage) -> bytes:
    body = encode_payloads(message.payloads)
    header = message.header
    fixed = IkeHeader(
        header.spi_i,
        header.spi_r,
        first_payload_type(message.payloads),
        header.exchange,
        header.flags,
        header.message_id,
    )
    buf = IkeBuffer()
    push_header(buf, fixed, IKE_HEADER_LENGTH + len(body))
    buf.push_bytes(body)
    return buf.written()
