"""IKEv2 key derivation and SK payload protection (RFC 7296 §2.13, §2.14, §2.17, §3.14).

SK payloads: AES-GCM-16 per RFC 5282 and AES-CBC + HMAC-SHA2-256-128 per RFC 7296 §3.14 /
RFC 4868.  Key material for GCM carries its 4-byte salt at the end (RFC 5282 §7.1).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from afbr.ipsec.ike_constants import IKE_HEADER_LENGTH
from afbr.ipsec.ike_errors import IkeDecodeError, IkeIntegrityError
from afbr.ipsec.ike_proposals import (
    INTEG_ICV_LENGTH,
    AlgorithmSuite,
    EncrId,
    IntegId,
    PrfId,
)

PRF_HASH = {
    PrfId.PRF_HMAC_SHA2_256: "sha256",
    PrfId.PRF_HMAC_SHA2_384: "sha384",
    PrfId.PRF_HMAC_SHA2_512: "sha512",
}
INTEG_HASH = {IntegId.AUTH_HMAC_SHA2_256_128: "sha256", IntegId.AUTH_HMAC_SHA2_512_256: "sha512"}
GCM_ICV_LENGTH = 16  # RFC 5282 §3: AES-GCM-16
GCM_IV_LENGTH = 8  # RFC 5282 §3.1
CBC_BLOCK = 16


def prf(prf_id: PrfId, key: bytes, data: bytes) -> bytes:
    """RFC 7296 §2.13 prf: HMAC with the negotiated hash (RFC 4868)."""
    return hmac.digest(key, data, PRF_HASH[prf_id])


def prf_plus(prf_id: PrfId, key: bytes, seed: bytes, length: int) -> bytes:
    """RFC 7296 §2.13: T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n)."""
    output = b""
    block = b""
    counter = 1
    while len(output) < length:
        if counter > 255:
            raise ValueError("prf+ asked for more than 255 blocks")
        block = prf(prf_id, key, block + seed + bytes([counter]))
        output += block
        counter += 1
    return output[:length]


def prf_output_length(prf_id: PrfId) -> int:
    return hashlib.new(PRF_HASH[prf_id]).digest_size


@dataclass(frozen=True, slots=True)
class IkeKeys:
    """SKEYSEED and the seven keys of RFC 7296 §2.14."""

    # secrets all: kept out of repr() and so out of logs and tracebacks
    skeyseed: bytes = field(repr=False)
    sk_d: bytes = field(repr=False)
    sk_ai: bytes = field(repr=False)
    sk_ar: bytes = field(repr=False)
    sk_ei: bytes = field(repr=False)
    sk_er: bytes = field(repr=False)
    sk_pi: bytes = field(repr=False)
    sk_pr: bytes = field(repr=False)


def derive_ike_keys(
    suite: AlgorithmSuite,
    shared: bytes,
    *,
    nonce_i: bytes,
    nonce_r: bytes,
    spi_i: bytes,
    spi_r: bytes,
    old_sk_d: bytes | None = None,
) -> IkeKeys:
    """RFC 7296 §2.14 (initial SA) or §2.18 (rekey: `old_sk_d` from the SA being replaced)."""
    if suite.prf is None:
        raise ValueError("an IKE suite needs a PRF")
    prf_id = suite.prf
    if old_sk_d is None:
        skeyseed = prf(prf_id, nonce_i + nonce_r, shared)
    else:
        skeyseed = prf(prf_id, old_sk_d, shared + nonce_i + nonce_r)  # RFC 7296 §2.18
    prf_len = prf_output_length(prf_id)
    integ = suite.integrity_key_bytes
    encr = suite.encryption_key_bytes
    sizes = [prf_len, integ, integ, encr, encr, prf_len, prf_len]
    stream = prf_plus(prf_id, skeyseed, nonce_i + nonce_r + spi_i + spi_r, sum(sizes))
    parts = []
    offset = 0
    for size in sizes:
        parts.append(stream[offset : offset + size])
        offset += size
    return IkeKeys(skeyseed, *parts)


@dataclass(frozen=True, slots=True)
class ChildKeys:
    """KEYMAT split as RFC 7296 §2.17 orders it: initiator-to-responder first."""

    encr_i: bytes = field(repr=False)  # secrets: kept out of repr()
    integ_i: bytes = field(repr=False)
    encr_r: bytes = field(repr=False)
    integ_r: bytes = field(repr=False)


def derive_child_keys(
    prf_id: PrfId,
    sk_d: bytes,
    suite: AlgorithmSuite,
    *,
    nonce_i: bytes,
    nonce_r: bytes,
    shared: bytes = b"",
) -> ChildKeys:
    """KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (RFC 7296 §2.17)."""
    encr = suite.encryption_key_bytes
    integ = suite.integrity_key_bytes
    stream = prf_plus(prf_id, sk_d, shared + nonce_i + nonce_r, 2 * (encr + integ))
    return ChildKeys(
        stream[:encr],
        stream[encr : encr + integ],
        stream[encr + integ : 2 * encr + integ],
        stream[2 * encr + integ :],
    )


@dataclass(frozen=True, slots=True)
class SkCipher:
    """One direction's SK payload protection: encryption key (with salt) and integrity key."""

    suite: AlgorithmSuite
    encryption_key: bytes = field(repr=False)  # secrets: kept out of repr()
    integrity_key: bytes = field(repr=False)

    @property
    def iv_length(self) -> int:
        return GCM_IV_LENGTH if self.suite.is_aead else CBC_BLOCK

    @property
    def icv_length(self) -> int:
        return GCM_ICV_LENGTH if self.suite.is_aead else INTEG_ICV_LENGTH[self.suite.integrity]

    def overhead(self, plaintext_length: int) -> int:
        """Bytes the SK body adds around `plaintext_length` bytes of inner payloads."""
        return self.iv_length + self._padded_length(plaintext_length) + self.icv_length

    def _padded_length(self, plaintext_length: int) -> int:
        if self.suite.is_aead:
            return plaintext_length + 1  # RFC 5282 §3: no alignment needed, pad length 0
        return (plaintext_length + 1 + CBC_BLOCK - 1) // CBC_BLOCK * CBC_BLOCK

    def seal(self, associated: bytes, plaintext: bytes, iv: bytes) -> bytes:
        """The SK payload body (IV | ciphertext | ICV); `associated` is the message up to it.

        `associated` must already hold the final lengths (header and SK payload header).
        """
        padded = self._padded_length(len(plaintext))
        pad = padded - len(plaintext) - 1
        block = plaintext + bytes(pad) + bytes([pad])  # RFC 7296 §3.14 padding
        if self.suite.is_aead:
            key, salt = self.encryption_key[:-4], self.encryption_key[-4:]
            # RFC 5282 §5.1: AAD is the IKE header and the SK payload header
            return iv + AESGCM(key).encrypt(salt + iv, block, associated)
        encryptor = Cipher(algorithms.AES(self.encryption_key), modes.CBC(iv)).encryptor()
        body = iv + encryptor.update(block) + encryptor.finalize()
        mac = hmac.digest(self.integrity_key, associated + body, INTEG_HASH[self.suite.integrity])
        return body + mac[: self.icv_length]  # RFC 7296 §3.14: checksum over the whole message

    def open(self, associated: bytes, body: bytes) -> bytes:
        """The inner payload bytes of an SK payload body; IkeIntegrityError if it fails."""
        if len(body) < self.iv_length + self.icv_length + 1:
            raise IkeDecodeError("SK payload shorter than IV and ICV")
        iv = body[: self.iv_length]
        if self.suite.is_aead:
            key, salt = self.encryption_key[:-4], self.encryption_key[-4:]
            try:
                block = AESGCM(key).decrypt(salt + iv, body[self.iv_length :], associated)
            except InvalidTag as exc:
                raise IkeIntegrityError("SK payload ICV does not verify") from exc
        else:
            mac = hmac.digest(
                self.integrity_key,
                associated + body[: -self.icv_length],
                INTEG_HASH[self.suite.integrity],
            )
            if not hmac.compare_digest(mac[: self.icv_length], body[-self.icv_length :]):
                raise IkeIntegrityError("SK payload checksum does not verify")
            ciphertext = body[self.iv_length : -self.icv_length]
            if len(ciphertext) % CBC_BLOCK or not ciphertext:
                raise IkeDecodeError("CBC ciphertext not a whole number of blocks")
            decryptor = Cipher(algorithms.AES(self.encryption_key), modes.CBC(iv)).decryptor()
            block = decryptor.update(ciphertext) + decryptor.finalize()
        pad = block[-1]
        if pad + 1 > len(block):
            raise IkeDecodeError("SK padding longer than the plaintext")
        return block[: -pad - 1]


def sk_ciphers(suite: AlgorithmSuite, keys: IkeKeys, initiator: bool) -> tuple[SkCipher, SkCipher]:
    """(outbound, inbound) SK ciphers for the side that is (or is not) the original initiator."""
    from_i = SkCipher(suite, keys.sk_ei, keys.sk_ai)
    from_r = SkCipher(suite, keys.sk_er, keys.sk_ar)
    return (from_i, from_r) if initiator else (from_r, from_i)


def header_and_sk_prefix_length() -> int:
    return IKE_HEADER_LENGTH + 4


def encryption_is_null(suite: AlgorithmSuite) -> bool:
    return suite.encryption == EncrId.ENCR_NULL
