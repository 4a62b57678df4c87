"""IKEv2 authentication: PSK (RFC 7296 §2.15), signatures (RFC 7296 method 1, RFC 7427 method
14), raw public keys (RFC 7670) and self-signed certificates, and the RFC 5566 check that the
peer's key matches the IPsec Tunnel Authenticator it advertised in BGP (RFC 5619 §4.4.2).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from afbr.ipsec.ike_constants import AuthMethod, CertEncoding, HashAlgorithm, NotifyType
from afbr.ipsec.ike_crypto import prf
from afbr.ipsec.ike_errors import IkeAuthenticationError
from afbr.ipsec.ike_payloads import AuthPayload, CertPayload
from afbr.ipsec.ike_proposals import PrfId

log = logging.getLogger(__name__)

KEY_PAD = b"Key Pad for IKEv2"  # RFC 7296 §2.15
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

# RFC 7427 §3 / appendix A: DER AlgorithmIdentifiers, and the hash each one uses
_ALGORITHM_IDS: dict[bytes, tuple[str, hashes.HashAlgorithm | None]] = {
    bytes.fromhex("300d06092a864886f70d01010b0500"): ("rsa", hashes.SHA256()),
    bytes.fromhex("300d06092a864886f70d01010c0500"): ("rsa", hashes.SHA384()),
    bytes.fromhex("300d06092a864886f70d01010d0500"): ("rsa", hashes.SHA512()),
    bytes.fromhex("300a06082a8648ce3d040302"): ("ecdsa", hashes.SHA256()),
    bytes.fromhex("300a06082a8648ce3d040303"): ("ecdsa", hashes.SHA384()),
    bytes.fromhex("300a06082a8648ce3d040304"): ("ecdsa", hashes.SHA512()),
    bytes.fromhex("300506032b6570"): ("ed25519", None),
}
_RSA_SHA256 = bytes.fromhex("300d06092a864886f70d01010b0500")
_ECDSA_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
_ED25519 = bytes.fromhex("300506032b6570")
OUR_HASH_ALGORITHMS = (
    HashAlgorithm.SHA2_256,
    HashAlgorithm.SHA2_384,
    HashAlgorithm.SHA2_512,
    HashAlgorithm.IDENTITY,
)


@dataclass(frozen=True, slots=True)
class PskCredential:
    """A pre-shared key; `group` marks a key shared by more than one pair (RFC 5619 §3.5.2)."""

    key: bytes = field(repr=False)  # secret: kept out of repr() and so out of logs
    group: bool = False

    def __post_init__(self) -> None:
        if self.group:
            log.warning(
                "group pre-shared key in use: any holder can impersonate any AFBR "
                "(RFC 5619 §3.5.2; allowed for a mesh by §4.4.2 only when configured)"
            )


@dataclass(frozen=True, slots=True)
class KeyCredential:
    """Our private key, with the self-signed certificate (DER) to send, if any."""

    private_key: PrivateKey
    certificate_der: bytes | None = None

    def cert_payload(self) -> CertPayload:
        if self.certificate_der is not None:
            return CertPayload(CertEncoding.X509_CERT_SIGNATURE, self.certificate_der)
        spki = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return CertPayload(CertEncoding.RAW_PUBLIC_KEY, spki)  # RFC 7670 §3


LocalCredential = PskCredential | KeyCredential


@dataclass(frozen=True, slots=True)
class PeerTrust:
    """How to authenticate the peer: a PSK, or a public key (pinned, or sent by the peer in a
    raw-key/self-signed CERT payload) that must match `authenticator` when that is given.

    `authenticator` is the IPsec Tunnel Authenticator the peer advertised in BGP (RFC 5566):
    the SHA-1 (20 bytes) or SHA-256 (32 bytes) hash of its DER SubjectPublicKeyInfo.
    """

    psk: PskCredential | None = None
    public_key: PublicKey | None = None
    authenticator: bytes | None = None
    accept_sent_keys: bool = True


def signed_octets(
    message: bytes, peer_nonce: bytes, prf_id: PrfId, sk_p: bytes, id_body: bytes
) -> bytes:
    """RFC 7296 §2.15: RealMessage | NonceData | prf(SK_p, RestOfIDPayload)."""
    return message + peer_nonce + prf(prf_id, sk_p, id_body)


def psk_auth_data(prf_id: PrfId, psk: bytes, octets: bytes) -> bytes:
    """RFC 7296 §2.15: prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)."""
    return prf(prf_id, prf(prf_id, psk, KEY_PAD), octets)


def public_key_der(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_authenticator(key: PublicKey, sha256: bool = False) -> bytes:
    """The RFC 5566 authenticator value afbr advertises for `key` (hash of its SPKI DER)."""
    der = public_key_der(key)
    return hashlib.sha256(der).digest() if sha256 else hashlib.sha1(der).digest()  # noqa: S324


def check_authenticator(key: PublicKey, expected: bytes) -> None:
    """RFC 5566 / RFC 5619 §4.4.2: the key must match what the peer advertised in BGP."""
    if len(expected) not in (20, 32):
        raise IkeAuthenticationError(f"authenticator of {len(expected)} bytes")
    actual = public_key_authenticator(key, sha256=len(expected) == 32)
    if not hmac.compare_digest(actual, expected):
        raise IkeAuthenticationError("peer public key does not match its BGP authenticator")


def sign_auth(
    credential: LocalCredential, prf_id: PrfId, octets: bytes, peer_hashes: set[int]
) -> AuthPayload:
    """Our AUTH payload: method 2 for a PSK, method 14 when the peer announced SHA2-256 (or
    IDENTITY for Ed25519) in SIGNATURE_HASH_ALGORITHMS, else method 1 / 9 (RFC 7296 §3.8)."""
    if isinstance(credential, PskCredential):
        return AuthPayload(AuthMethod.SHARED_KEY_MIC, psk_auth_data(prf_id, credential.key, octets))
    key = credential.private_key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return AuthPayload(
            AuthMethod.DIGITAL_SIGNATURE, bytes([len(_ED25519)]) + _ED25519 + key.sign(octets)
        )
    if isinstance(key, ec.EllipticCurvePrivateKey):
        der = key.sign(octets, ec.ECDSA(hashes.SHA256()))
        if HashAlgorithm.SHA2_256 in peer_hashes:  # RFC 7427 §3: DER ECDSA-Sig-Value
            return AuthPayload(
                AuthMethod.DIGITAL_SIGNATURE, bytes([len(_ECDSA_SHA256)]) + _ECDSA_SHA256 + der
            )
        r, s = decode_dss_signature(der)  # RFC 4754 §7: r | s for method 9
        return AuthPayload(
            AuthMethod.ECDSA_SHA256_P256, r.to_bytes(32, "big") + s.to_bytes(32, "big")
        )
    if HashAlgorithm.SHA2_256 in peer_hashes:
        signature = key.sign(octets, padding.PKCS1v15(), hashes.SHA256())
        return AuthPayload(
            AuthMethod.DIGITAL_SIGNATURE, bytes([len(_RSA_SHA256)]) + _RSA_SHA256 + signature
        )
    # RFC 7296 §3.8 method 1: RSASSA-PKCS1-v1_5 with SHA-1, what strongSwan checks
    signature = key.sign(octets, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
    return AuthPayload(AuthMethod.RSA_DIGITAL_SIGNATURE, signature)


def peer_public_key(trust: PeerTrust, certs: list[CertPayload]) -> PublicKey:
    """The key to check the peer's AUTH with: pinned, or from a raw-key / self-signed CERT."""
    sent: PublicKey | None = None
    if certs and trust.accept_sent_keys:
        sent = _key_from_cert(certs[0])
    key = trust.public_key or sent
    if key is None:
        raise IkeAuthenticationError("no public key known for the peer")
    if (
        trust.public_key is not None
        and sent is not None
        and public_key_der(sent) != public_key_der(trust.public_key)
    ):
        raise IkeAuthenticationError("peer sent a key other than the one configured")
    if trust.authenticator is not None:
        check_authenticator(key, trust.authenticator)
    elif trust.public_key is None:
        raise IkeAuthenticationError("peer key is neither pinned nor covered by an authenticator")
    return key


def _key_from_cert(cert: CertPayload) -> PublicKey:
    try:
        if cert.encoding == CertEncoding.RAW_PUBLIC_KEY:
            loaded = serialization.load_der_public_key(cert.data)
        elif cert.encoding == CertEncoding.X509_CERT_SIGNATURE:
            certificate = x509.load_der_x509_certificate(cert.data)
            certificate.verify_directly_issued_by(certificate)  # self-signed: signature checks
            loaded = certificate.public_key()
        else:
            raise IkeAuthenticationError(f"certificate encoding {cert.encoding} unsupported")
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
        raise IkeAuthenticationError(f"unusable CERT payload: {exc}") from exc
    if not isinstance(
        loaded, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
    ):
        raise IkeAuthenticationError("peer key type unsupported")
    return loaded


def verify_auth(
    auth: AuthPayload, octets: bytes, prf_id: PrfId, trust: PeerTrust, certs: list[CertPayload]
) -> None:
    """Check the peer's AUTH payload; IkeAuthenticationError (AUTHENTICATION_FAILED) if not."""
    if auth.method == AuthMethod.SHARED_KEY_MIC:
        if trust.psk is None:
            raise IkeAuthenticationError("peer used a PSK where a signature was expected")
        expected = psk_auth_data(prf_id, trust.psk.key, octets)
        if not hmac.compare_digest(expected, auth.data):
            raise IkeAuthenticationError("PSK AUTH does not verify")
        return
    if trust.psk is not None and trust.public_key is None and trust.authenticator is None:
        raise IkeAuthenticationError("peer used a signature where a PSK was expected")
    key = peer_public_key(trust, certs)
    try:
        _verify_signature(auth, octets, key)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise IkeAuthenticationError(f"signature does not verify: {exc}") from exc


def _verify_signature(auth: AuthPayload, octets: bytes, key: PublicKey) -> None:
    if auth.method == AuthMethod.RSA_DIGITAL_SIGNATURE and isinstance(key, rsa.RSAPublicKey):
        key.verify(auth.data, octets, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
        return
    if auth.method == AuthMethod.ECDSA_SHA256_P256 and isinstance(key, ec.EllipticCurvePublicKey):
        if len(auth.data) != 64:
            raise IkeAuthenticationError("ECDSA-256 signature length")
        r, s = int.from_bytes(auth.data[:32], "big"), int.from_bytes(auth.data[32:], "big")
        key.verify(encode_dss_signature(r, s), octets, ec.ECDSA(hashes.SHA256()))
        return
    if auth.method != AuthMethod.DIGITAL_SIGNATURE or not auth.data:
        raise IkeAuthenticationError(f"AUTH method {auth.method} not accepted with this key")
    length = auth.data[0]  # RFC 7427 §3: length, AlgorithmIdentifier, signature
    algorithm = _ALGORITHM_IDS.get(auth.data[1 : 1 + length])
    signature = auth.data[1 + length :]
    if algorithm is None:
        raise IkeAuthenticationError("signature algorithm not supported")
    kind, digest = algorithm
    if kind == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(signature, octets)
    elif kind == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey) and digest is not None:
        key.verify(signature, octets, ec.ECDSA(digest))
    elif kind == "rsa" and isinstance(key, rsa.RSAPublicKey) and digest is not None:
        key.verify(signature, octets, padding.PKCS1v15(), digest)
    else:
        raise IkeAuthenticationError("signature algorithm does not fit the peer's key")


def hash_algorithms_data() -> bytes:
    """Our SIGNATURE_HASH_ALGORITHMS notify data (RFC 7427 §4)."""
    return b"".join(h.to_bytes(2, "big") for h in OUR_HASH_ALGORITHMS)


def parse_hash_algorithms(data: bytes) -> set[int]:
    return {int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data) - 1, 2)}


AUTH_FAILED = NotifyType.AUTHENTICATION_FAILED
