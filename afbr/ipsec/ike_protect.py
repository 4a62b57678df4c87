"""Protecting and unprotecting whole IKE messages with an SA's SK ciphers (RFC 7296 §3.14),
and the classification of what went wrong with a datagram."""

from __future__ import annotations

from afbr.ipsec.ike_buffer import IkeBuffer
from afbr.ipsec.ike_constants import IKE_HEADER_LENGTH, ExchangeType, HeaderFlag, PayloadType
from afbr.ipsec.ike_counters import BadInput
from afbr.ipsec.ike_crypto import SkCipher
from afbr.ipsec.ike_dh import RandomSource
from afbr.ipsec.ike_errors import (
    IkeDecodeError,
    IkeError,
    IkeIntegrityError,
    IkeOversizedError,
    IkeTruncatedError,
)
from afbr.ipsec.ike_message import (
    decode_payloads,
    encode_message,
    encode_payloads,
    pull_payload_chain,
)
from afbr.ipsec.ike_payloads import IkeHeader, IkeMessage, Payload, SkPayload, push_header


class IkeInnerDecodeError(IkeError):
    """A payload inside an SK payload that verified is malformed or unsupported-critical."""


def protect(
    spis: tuple[bytes, bytes],
    initiator: bool,
    cipher: SkCipher | None,
    random: RandomSource,
    *,
    exchange: ExchangeType,
    payloads: tuple[Payload, ...],
    response: bool,
    message_id: int,
) -> bytes:
    """One message of ours: `initiator` is the original initiator's flag (RFC 7296 §3.1),
    `cipher` our outbound SK keys (None before IKE_SA_INIT completes)."""
    flags = HeaderFlag.INITIATOR if initiator else HeaderFlag.NONE
    if response:
        flags |= HeaderFlag.RESPONSE
    spi_i, spi_r = spis
    if exchange == ExchangeType.IKE_SA_INIT:
        header = IkeHeader(spi_i, spi_r, 0, exchange, flags, message_id)
        return encode_message(IkeMessage(header, payloads))
    if cipher is None:
        raise IkeError("no keys to protect the message")
    inner = encode_payloads(payloads)
    sk_length = 4 + cipher.overhead(len(inner))
    buf = IkeBuffer()
    first = int(payloads[0].payload_type) if payloads else 0
    header = IkeHeader(spi_i, spi_r, PayloadType.SK, exchange, flags, message_id)
    push_header(buf, header, IKE_HEADER_LENGTH + sk_length)
    buf.push_uint8(first)  # RFC 7296 §3.14: the SK payload's Next Payload is the first inner
    buf.push_uint8(0)
    buf.push_uint16(sk_length)
    associated = buf.written()
    iv = random(cipher.iv_length)
    return associated + cipher.seal(associated, inner, iv)


def unprotect(cipher: SkCipher | None, header: IkeHeader, data: bytes) -> IkeMessage:
    """The peer's message; `cipher` our inbound SK keys (None before IKE_SA_INIT completes)."""
    payloads = pull_payload_chain(IkeBuffer(data[IKE_HEADER_LENGTH:]), header.next_payload)
    if header.exchange == ExchangeType.IKE_SA_INIT:
        return IkeMessage(header, payloads, data)
    if len(payloads) != 1 or not isinstance(payloads[0], SkPayload):
        raise IkeDecodeError("protected exchange without a single SK payload")
    if cipher is None:
        raise IkeDecodeError("SK payload before keys exist")
    sk = payloads[0]
    plaintext = cipher.open(data[: len(data) - len(sk.data)], sk.data)
    try:
        inner = decode_payloads(plaintext, sk.first_inner)
    except IkeError as exc:
        raise IkeInnerDecodeError(str(exc), exc.notify) from exc
    return IkeMessage(header, inner, data)


def classify(exc: IkeError) -> BadInput:
    if isinstance(exc, IkeTruncatedError):
        return BadInput.TRUNCATED
    if isinstance(exc, IkeOversizedError):
        return BadInput.OVERSIZED
    if isinstance(exc, IkeIntegrityError):
        return BadInput.BAD_ICV
    if isinstance(exc, IkeDecodeError | IkeInnerDecodeError):
        return BadInput.MALFORMED
    return BadInput.GARBAGE
