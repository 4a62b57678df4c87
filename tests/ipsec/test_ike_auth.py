"""Authentication: signatures (RFC 7427 / RFC 7296 method 1), raw keys, self-signed
certificates, the RFC 5566 authenticator check, and PSK failures."""

from __future__ import annotations

import datetime
import logging
from dataclasses import replace
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from ike_pair import Pair, psk_configs

from afbr.ipsec import (
    AuthenticationFailed,
    ChildSaEstablished,
    Identity,
    IkeConfig,
    IkeSaEstablished,
    KeyCredential,
    PeerTrust,
    PskCredential,
    public_key_authenticator,
)
from afbr.ipsec.ike_auth import PrivateKey, sign_auth, verify_auth
from afbr.ipsec.ike_constants import AuthMethod, HashAlgorithm
from afbr.ipsec.ike_errors import IkeAuthenticationError
from afbr.ipsec.ike_proposals import PrfId


@cache
def key_of(kind: str, n: int = 0) -> PrivateKey:
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed(key: PrivateKey, name: str) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))
    )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    from cryptography.hazmat.primitives.serialization import Encoding

    return builder.sign(key, algorithm).public_bytes(Encoding.DER)


def key_configs(
    kind: str, *, certificate: bool = False, pin: bool = False
) -> tuple[IkeConfig, IkeConfig]:
    ka, kb = key_of(kind, 1), key_of(kind, 2)
    a, b = psk_configs()
    cred_a = KeyCredential(ka, self_signed(ka, "a.example") if certificate else None)
    cred_b = KeyCredential(kb, self_signed(kb, "b.example") if certificate else None)
    # each side knows the other's authenticator from BGP (RFC 5566); optionally a pinned key
    trust_a = PeerTrust(
        authenticator=public_key_authenticator(kb.public_key()),
        public_key=kb.public_key() if pin else None,
    )
    trust_b = PeerTrust(
        authenticator=public_key_authenticator(ka.public_key(), sha256=True),
        public_key=ka.public_key() if pin else None,
    )
    return replace(a, credential=cred_a, peer_trust=trust_a), replace(
        b, credential=cred_b, peer_trust=trust_b
    )


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519", "rsa"])
@pytest.mark.parametrize("certificate", [False, True])
def test_signature_authentication_with_raw_keys_and_certificates(
    kind: str, certificate: bool
) -> None:
    pair = Pair(*key_configs(kind, certificate=certificate))
    pair.connect()
    assert len(pair.a.of_type(ChildSaEstablished)) == 1
    assert len(pair.b.of_type(ChildSaEstablished)) == 1
    assert pair.b.of_type(IkeSaEstablished)[0].remote_id == Identity.fqdn("a.example")


def test_pinned_keys_without_sending_them() -> None:
    a, b = key_configs("ecdsa", pin=True)
    pair = Pair(replace(a, send_certificate=False), replace(b, send_certificate=False))
    pair.connect()
    assert len(pair.a.of_type(ChildSaEstablished)) == 1


def test_authenticator_mismatch_is_authentication_failed_and_installs_nothing() -> None:
    a, b = key_configs("ecdsa")
    wrong = public_key_authenticator(key_of("ed25519").public_key())
    b = replace(b, peer_trust=PeerTrust(authenticator=wrong))
    pair = Pair(a, b)
    pair.connect()
    (failed_b,) = pair.b.of_type(AuthenticationFailed)
    assert "authenticator" in failed_b.reason
    assert pair.a.of_type(AuthenticationFailed)  # refused by the responder
    for ep in (pair.a, pair.b):
        assert not ep.of_type(ChildSaEstablished) and not ep.of_type(IkeSaEstablished)
        assert ep.dispatcher.sas == {}


def test_initiator_rejects_responder_with_wrong_key() -> None:
    a, b = key_configs("ed25519")
    a = replace(
        a, peer_trust=PeerTrust(authenticator=public_key_authenticator(key_of("rsa").public_key()))
    )
    pair = Pair(a, b)
    pair.connect()
    assert pair.a.of_type(AuthenticationFailed)
    assert not pair.a.of_type(ChildSaEstablished)


def test_wrong_psk_is_authentication_failed() -> None:
    a, b = psk_configs()
    other = PskCredential(b"another key, not the pairwise one")
    pair = Pair(a, replace(b, credential=other, peer_trust=PeerTrust(psk=other)))
    pair.connect()
    assert pair.b.of_type(AuthenticationFailed)
    assert pair.a.of_type(AuthenticationFailed)
    assert not pair.a.of_type(ChildSaEstablished) and not pair.b.of_type(ChildSaEstablished)


def test_wrong_identity_is_authentication_failed() -> None:
    a, b = psk_configs()
    pair = Pair(a, replace(b, remote_id=Identity.fqdn("c.example")))
    pair.connect()
    assert "c.example" in pair.b.of_type(AuthenticationFailed)[0].reason


def test_psk_peer_offering_a_signature_is_refused() -> None:
    a, _ = key_configs("ecdsa")
    _, b = psk_configs()
    pair = Pair(a, b)
    pair.connect()
    assert pair.b.of_type(AuthenticationFailed)


def test_group_psk_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        PskCredential(b"shared by the whole mesh", group=True)
    assert "RFC 5619" in caplog.text


@pytest.mark.parametrize(
    ("kind", "hashes_announced", "method"),
    [
        ("rsa", set(), AuthMethod.RSA_DIGITAL_SIGNATURE),  # RFC 7296 method 1, SHA-1
        ("rsa", {HashAlgorithm.SHA2_256}, AuthMethod.DIGITAL_SIGNATURE),
        ("ecdsa", set(), AuthMethod.ECDSA_SHA256_P256),
        ("ecdsa", {HashAlgorithm.SHA2_256}, AuthMethod.DIGITAL_SIGNATURE),
        ("ed25519", {HashAlgorithm.IDENTITY}, AuthMethod.DIGITAL_SIGNATURE),
    ],
)
def test_auth_methods_sign_and_verify(
    kind: str, hashes_announced: set[int], method: AuthMethod
) -> None:
    key = key_of(kind)
    octets = b"signed octets " * 20
    auth = sign_auth(KeyCredential(key), PrfId.PRF_HMAC_SHA2_256, octets, hashes_announced)
    assert auth.method == method
    trust = PeerTrust(public_key=key.public_key())
    verify_auth(auth, octets, PrfId.PRF_HMAC_SHA2_256, trust, [])
    with pytest.raises(IkeAuthenticationError):
        verify_auth(auth, octets + b"x", PrfId.PRF_HMAC_SHA2_256, trust, [])
    tampered = replace(auth, data=auth.data[:-1] + bytes([auth.data[-1] ^ 1]))
    with pytest.raises(IkeAuthenticationError):
        verify_auth(tampered, octets, PrfId.PRF_HMAC_SHA2_256, trust, [])


def test_rsa_method_1_is_pkcs1_v15_sha1() -> None:
    key = key_of("rsa")
    assert isinstance(key, rsa.RSAPrivateKey)
    auth = sign_auth(KeyCredential(key), PrfId.PRF_HMAC_SHA2_256, b"octets", set())
    from cryptography.hazmat.primitives.asymmetric import padding

    key.public_key().verify(auth.data, b"octets", padding.PKCS1v15(), hashes.SHA1())
