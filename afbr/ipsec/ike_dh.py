"""Diffie-Hellman groups 19 (ECP-256), 31 (Curve25519) and 14 (MODP-2048) for IKEv2 KE payloads.

Private values come from the caller's random source so exchanges replay deterministically.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from afbr.ipsec.ike_constants import NotifyType
from afbr.ipsec.ike_errors import IkeError
from afbr.ipsec.ike_proposals import DhGroup

RandomSource = Callable[[int], bytes]

log = logging.getLogger(__name__)

# RFC 3526 §3: 2048-bit MODP group, generator 2
MODP_2048_PRIME = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404"
    "DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406"
    "B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD"
    "24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E46"
    "2E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D226"
    "1898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
try:  # OpenSSL's modular exponentiation, 2-3x faster than Python's pow for group 14
    from cryptography.hazmat.primitives.asymmetric import dh as _ffdh

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # `cryptography` deprecates finite-field DH
        _MODP_NUMBERS: _ffdh.DHParameterNumbers | None = _ffdh.DHParameterNumbers(
            MODP_2048_PRIME, 2
        )
except ImportError:  # pragma: no cover - a future `cryptography` without it
    _MODP_NUMBERS = None


def modp_power(base: int, exponent: int) -> int:
    """base ** exponent mod the group 14 prime (OpenSSL when `cryptography` still has FFDH)."""
    if _MODP_NUMBERS is not None:
        numbers = _MODP_NUMBERS
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                private = _ffdh.DHPrivateNumbers(exponent, _ffdh.DHPublicNumbers(2, numbers))
                peer = _ffdh.DHPublicNumbers(base, numbers).public_key()
                return int.from_bytes(private.private_key().exchange(peer), "big")
        except (ValueError, TypeError, AttributeError):
            pass  # fall back to Python below
    _warn_not_constant_time()
    return pow(base, exponent, MODP_2048_PRIME)


@functools.cache
def _warn_not_constant_time() -> None:
    """Said once per process: Python's `pow` takes time that depends on the exponent, our
    private DH value, so a peer timing many exchanges could learn about it."""
    log.warning(
        "MODP-2048 (DH group 14) falls back to Python's pow, which is not constant-time; "
        "prefer ECP-256 or Curve25519 proposals"
    )


PUBLIC_VALUE_LENGTH = {DhGroup.MODP_2048: 256, DhGroup.ECP_256: 64, DhGroup.CURVE25519: 32}
SHARED_SECRET_LENGTH = {DhGroup.MODP_2048: 256, DhGroup.ECP_256: 32, DhGroup.CURVE25519: 32}


@dataclass(frozen=True, slots=True)
class DhKeyPair:
    """Our half of one exchange: the group, the value for the KE payload, the private key."""

    group: DhGroup
    public: bytes
    # int: MODP exponent; secret, kept out of repr()
    private: int | ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey = field(repr=False)


def generate_keypair(group: DhGroup, random: RandomSource) -> DhKeyPair:
    if group == DhGroup.CURVE25519:
        key = x25519.X25519PrivateKey.from_private_bytes(random(32))
        return DhKeyPair(group, key.public_key().public_bytes_raw(), key)
    if group == DhGroup.ECP_256:
        scalar = int.from_bytes(random(40), "big") % (_P256_ORDER - 1) + 1
        ec_key = ec.derive_private_key(scalar, ec.SECP256R1())
        point = ec_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        # RFC 5903 §7: the KE data is x | y, without the point-format octet
        return DhKeyPair(group, point[1:], ec_key)
    if group == DhGroup.MODP_2048:
        # 256-bit exponent: twice the group's ~112-bit strength (RFC 3526 §8, NIST SP 800-57);
        # plain modular arithmetic, since `cryptography` deprecates finite-field DH
        exponent = int.from_bytes(random(32), "big") | (1 << 255)
        public = modp_power(2, exponent)
        return DhKeyPair(group, public.to_bytes(256, "big"), exponent)
    raise IkeError(f"DH group {group} unsupported", NotifyType.INVALID_KE_PAYLOAD)


def shared_secret(pair: DhKeyPair, peer_public: bytes) -> bytes:
    """g^ir, fixed length, after checking the peer's value (RFC 8247 §2.4, RFC 6989)."""
    if len(peer_public) != PUBLIC_VALUE_LENGTH[pair.group]:
        raise IkeError(f"KE data of {len(peer_public)} bytes", NotifyType.INVALID_SYNTAX)
    try:
        if isinstance(pair.private, x25519.X25519PrivateKey):
            peer_x = x25519.X25519PublicKey.from_public_bytes(peer_public)
            secret = pair.private.exchange(peer_x)  # refuses the all-zero result (RFC 8031 §2)
        elif isinstance(pair.private, ec.EllipticCurvePrivateKey):
            peer_ec = ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), b"\x04" + peer_public
            )  # checks that the point is on the curve (RFC 6989 §2.3)
            secret = pair.private.exchange(ec.ECDH(), peer_ec)
        else:
            value = int.from_bytes(peer_public, "big")
            if not 1 < value < MODP_2048_PRIME - 1:  # RFC 6989 §2.1
                raise IkeError("MODP public value out of range", NotifyType.INVALID_SYNTAX)
            secret = modp_power(value, pair.private).to_bytes(256, "big")
    except ValueError as exc:
        raise IkeError(f"bad peer KE value: {exc}", NotifyType.INVALID_SYNTAX) from exc
    return secret.rjust(SHARED_SECRET_LENGTH[pair.group], b"\0")
