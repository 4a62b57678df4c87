"""Key material never shows in repr() (and so never in a log line or a traceback), and the
MODP fallback to Python's non-constant-time `pow` says so once."""

from __future__ import annotations

import logging

import pytest
from ike_pair import PSK, Pair, psk_configs

from afbr.ipsec import IKE_AES_CBC_SHA256, IKE_AES_GCM_128, ChildSaEstablished, IkeSa, ike_dh
from afbr.ipsec.ike_dh import DhGroup, generate_keypair


def _secrets_of(sa: IkeSa) -> list[bytes]:
    assert sa.keys is not None and sa.out_cipher is not None and sa.in_cipher is not None
    keys = sa.keys
    return [
        keys.skeyseed,
        keys.sk_d,
        keys.sk_ai,
        keys.sk_ar,
        keys.sk_ei,
        keys.sk_er,
        keys.sk_pi,
        keys.sk_pr,
        sa.out_cipher.encryption_key,
        sa.in_cipher.encryption_key,
    ]


def _shown(secret: bytes, text: str) -> bool:
    return len(secret) >= 4 and (repr(secret) in text or secret.hex() in text)


@pytest.mark.parametrize("suite", [IKE_AES_GCM_128, IKE_AES_CBC_SHA256])
def test_no_key_bytes_in_repr(suite: object) -> None:
    pair = Pair(*psk_configs(ike_proposals=(suite,)))
    sa = pair.connect()
    (child,) = pair.a.of_type(ChildSaEstablished)
    texts = [
        repr(sa.keys),
        repr(sa.out_cipher),
        repr(sa.in_cipher),
        repr(child),
        repr(child.child.inbound),
        repr(list(sa.children.values())),
        repr(PSK),
        repr(sa.config),
    ]
    secrets = [
        *_secrets_of(sa),
        child.child.inbound.encryption_key,
        child.child.outbound.encryption_key,
        PSK.key,
    ]
    if child.child.inbound.integrity_key:
        secrets += [child.child.inbound.integrity_key, child.child.outbound.integrity_key]
    for text in texts:
        for secret in secrets:
            assert not _shown(secret, text), text


def test_dh_private_value_not_in_repr() -> None:
    pair = generate_keypair(DhGroup.MODP_2048, Pair(*psk_configs()).a.dispatcher.random)
    assert isinstance(pair.private, int)
    assert str(pair.private) not in repr(pair) and hex(pair.private)[2:] not in repr(pair)


def test_pow_fallback_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ike_dh, "_MODP_NUMBERS", None)
    ike_dh._warn_not_constant_time.cache_clear()
    caplog.set_level(logging.WARNING, logger="afbr.ipsec.ike_dh")
    assert ike_dh.modp_power(2, 5) == 32
    assert ike_dh.modp_power(3, 2) == 9
    warnings = [r for r in caplog.records if "constant-time" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    ike_dh._warn_not_constant_time.cache_clear()
