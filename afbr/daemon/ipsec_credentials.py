"""The IPsec agent's credentials and IKE configuration, from afbr's config: the algorithm
suites by their config names, this AFBR's private key, the pairwise (or group) PSKs, and the
IkeConfig for one peer (RFC 5619 §4.4.2: PSK, or a public key checked against the peer's RFC 5566
authenticator)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from afbr.bgp.keyfile import load_key_file, read_private_file
from afbr.config import AfbrConfig
from afbr.ipsec import (
    ESP_AES_CBC_SHA256,
    ESP_AES_GCM_128,
    ESP_AES_GCM_256,
    ESP_NULL_SHA256,
    IKE_AES_CBC_SHA256,
    IKE_AES_GCM_128,
    IKE_AES_GCM_256,
    AlgorithmSuite,
    Identity,
    IkeConfig,
    KeyCredential,
    PeerTrust,
    PskCredential,
    Timers,
)
from afbr.ipsec.ike_auth import public_key_der

log = logging.getLogger("afbr.ipsec")

ESP_SUITES: dict[str, AlgorithmSuite] = {
    "aes-gcm-16-128": ESP_AES_GCM_128,
    "aes-gcm-16-256": ESP_AES_GCM_256,
    "aes-cbc-256-sha256": ESP_AES_CBC_SHA256,
    "null-sha256": ESP_NULL_SHA256,  # RFC 5619 §4.4.2: integrity only, always offered
}
IKE_SUITES: dict[str, AlgorithmSuite] = {
    "aes-gcm-16-128-prf-sha256-ecp256": IKE_AES_GCM_128,
    "aes-gcm-16-256-prf-sha512-x25519": IKE_AES_GCM_256,
    "aes-cbc-256-sha256-modp2048": IKE_AES_CBC_SHA256,
}


def local_private_key(config: AfbrConfig) -> Any:
    """This AFBR's private key (auth: pubkey), or None.  The file is refused (KeyFileError)
    if it is a symbolic link, group/other-accessible or someone else's, at start and reload."""
    if config.ipsec.auth != "pubkey" or config.ipsec.private_key is None:
        return None
    return serialization.load_pem_private_key(read_private_file(config.ipsec.private_key), None)


def load_psks(config: AfbrConfig) -> dict[str, bytes]:
    """The IKE pre-shared keys by peer core address (or `mesh`), with auth: psk."""
    if config.ipsec.auth != "psk" or config.ipsec.keys_file is None:
        return {}
    ring = load_key_file(Path(config.ipsec.keys_file))
    return {name: secret.reveal() for name, secret in ring.items()}


def public_key_bytes(key: Any) -> bytes | None:
    """The DER SubjectPublicKeyInfo of a private key's public half (None for None)."""
    return None if key is None else public_key_der(key.public_key())


def ike_config(
    config: AfbrConfig,
    remote: str,
    psks: dict[str, bytes],
    private_key: Any,
    authenticator: bytes | None,
) -> IkeConfig | None:
    """The IKE configuration towards `remote`, or None (logged) when it has no key."""
    ipsec = config.ipsec
    if private_key is not None:
        credential: Any = KeyCredential(private_key)
        trust = PeerTrust(authenticator=authenticator)
    else:
        psk = psks.get("mesh" if ipsec.group_psk else remote)
        if psk is None:
            log.error("no IKE pre-shared key for %s in %s", remote, ipsec.keys_file)
            return None
        credential = PskCredential(psk, group=ipsec.group_psk)
        trust = PeerTrust(psk=credential)
    return IkeConfig(
        local_id=Identity.address(str(config.core.address)),
        remote_id=Identity.address(remote),
        credential=credential,
        peer_trust=trust,
        ike_proposals=tuple(IKE_SUITES[name] for name in ipsec.ike),
        esp_proposals=tuple(ESP_SUITES[name] for name in ipsec.esp),
        timers=Timers(
            dpd_delay=float(ipsec.dpd_seconds),
            child_rekey=float(ipsec.rekey_seconds),
            child_lifetime=ipsec.rekey_seconds * 1.1,
        ),
    )
