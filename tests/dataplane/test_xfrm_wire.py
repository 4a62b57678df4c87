"""XFRM netlink codecs without a kernel: layouts, round trips, malformed input."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from afbr.dataplane.xfrm import (
    REQID_MIN,
    EspCipher,
    EspIntegrity,
    SaSpec,
    UdpEncap,
    _sa_payload,
)
from afbr.dataplane.xfrm_events import SaAcquire, SaExpired, parse_acquire, parse_expire
from afbr.dataplane.xfrm_policy import PolicySpec, _policy_payload, route_based_policies
from afbr.dataplane.xfrm_records import UserPolicyInfo, UserSaInfo, UserTemplate
from afbr.dataplane.xfrm_socket import attr, parse_attrs, split_messages
from afbr.dataplane.xfrm_wire import (
    AF_INET,
    AF_INET6,
    USERPOLICY_INFO,
    USERSA_INFO,
    Lifetime,
    LifetimeCurrent,
    PolicyDir,
    Selector,
    XfrmAttr,
    XfrmDecodeError,
    pack_encap,
    unpack_encap,
)

V4A = ipaddress.IPv4Address("192.0.2.1")
V4B = ipaddress.IPv4Address("192.0.2.2")
V6A = ipaddress.IPv6Address("2001:db8::1")


def test_struct_sizes_match_the_kernel_abi() -> None:
    # sizeof() on x86-64 of the kernel's include/uapi/linux/xfrm.h structures
    assert USERSA_INFO.size == 224
    assert USERPOLICY_INFO.size == 168
    assert len(Selector().pack()) == 56
    assert len(pack_encap(4500, 4500)) == 24
    assert len(UserTemplate(AF_INET, V4A, V4B, REQID_MIN, 1).pack()) == 64


def test_spi_and_ports_are_big_endian_on_the_wire() -> None:
    spec = SaSpec(V4A, V4B, 0x12345678, REQID_MIN, EspCipher.AES_GCM_16, bytes(20))
    payload = _sa_payload(spec)
    # xfrm_id.spi sits after the selector (56) and xfrm_id.daddr (16)
    assert payload[72:76] == bytes.fromhex("12345678")
    assert payload[56:60] == V4B.packed
    encap = pack_encap(4500, 1234)
    assert encap[2:4] == (4500).to_bytes(2, "big")
    assert unpack_encap(encap) == (2, 4500, 1234)


def test_sa_info_round_trip() -> None:
    info = UserSaInfo(
        selector=Selector(AF_INET6, V6A, V6A, 128, 64, 58, 0, 0, 443, 0xFFFF, 3),
        daddr=V6A,
        spi=0xC0FFEE01,
        proto=50,
        saddr=V6A,
        lifetime=Lifetime(soft_bytes=1000, hard_add_seconds=60),
        current=LifetimeCurrent(7, 3, 100, 101),
        replay_window_drops=1,
        replay_drops=2,
        integrity_failed=3,
        seq=4,
        reqid=REQID_MIN + 9,
        family=AF_INET6,
        mode=1,
        replay_window=32,
        flags=0,
    )
    assert UserSaInfo.unpack(info.pack()) == info


def test_sa_payload_attributes_per_cipher() -> None:
    base = {"src": V4A, "dst": V4B, "spi": 0x1000, "reqid": REQID_MIN}
    gcm = parse_attrs(
        _sa_payload(SaSpec(**base, cipher=EspCipher.AES_GCM_16, encryption_key=bytes(36)))[224:]
    )
    assert set(gcm) == {XfrmAttr.ALG_AEAD}
    assert gcm[XfrmAttr.ALG_AEAD][:17] == b"rfc4106(gcm(aes))"
    cbc = SaSpec(
        **base,
        cipher=EspCipher.AES_CBC,
        encryption_key=bytes(16),
        integrity=EspIntegrity.HMAC_SHA2_256_128,
        integrity_key=bytes(32),
        encap=UdpEncap(),
        if_id=0xAFB00005,
        replay_window=128,
    )
    attrs = parse_attrs(_sa_payload(cbc)[224:])
    assert set(attrs) == {
        XfrmAttr.ALG_CRYPT,
        XfrmAttr.ALG_AUTH_TRUNC,
        XfrmAttr.ENCAP,
        XfrmAttr.IF_ID,
        XfrmAttr.REPLAY_ESN_VAL,
    }
    # hmac(sha256), 256-bit key, truncated to 128 bits (RFC 4868 §2.3)
    assert attrs[XfrmAttr.ALG_AUTH_TRUNC][64:72] == (256).to_bytes(4, "little") + (128).to_bytes(
        4, "little"
    )
    null = SaSpec(
        **base,
        cipher=EspCipher.NULL,
        encryption_key=b"",
        integrity=EspIntegrity.HMAC_SHA2_256_128,
        integrity_key=bytes(32),
    )
    assert parse_attrs(_sa_payload(null)[224:])[XfrmAttr.ALG_CRYPT][:16] == b"ecb(cipher_null)"


@pytest.mark.parametrize(
    "changes",
    [
        {"reqid": 5},  # not afbr's
        {"encryption_key": bytes(16)},  # GCM without salt
        {"dst": V6A},  # mixed families
    ],
)
def test_sa_spec_errors(changes: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "src": V4A,
        "dst": V4B,
        "spi": 1,
        "reqid": REQID_MIN,
        "cipher": EspCipher.AES_GCM_16,
        "encryption_key": bytes(20),
    }
    fields.update(changes)
    with pytest.raises(ValueError):
        _sa_payload(SaSpec(**fields))  # type: ignore[arg-type]


def test_route_based_policies_cover_both_families_and_directions() -> None:
    specs = route_based_policies(V4A, V4B, 0xAFB00001, REQID_MIN)
    assert {(s.selector.family, s.direction) for s in specs} == {
        (f, d) for f in (AF_INET, AF_INET6) for d in PolicyDir
    }
    out = next(s for s in specs if s.direction == PolicyDir.OUT)
    assert (out.templates[0].saddr, out.templates[0].daddr) == (V4A, V4B)
    inbound = next(s for s in specs if s.direction == PolicyDir.IN)
    assert (inbound.templates[0].saddr, inbound.templates[0].daddr) == (V4B, V4A)
    payload = _policy_payload(out)
    assert UserPolicyInfo.unpack(payload).selector == Selector.any_of(AF_INET)
    attrs = parse_attrs(payload[168:])
    assert UserTemplate.unpack_all(attrs[XfrmAttr.TMPL]) == list(out.templates)
    assert int.from_bytes(attrs[XfrmAttr.IF_ID], "little") == 0xAFB00001
    with pytest.raises(ValueError):
        route_based_policies(V4A, V4B, 7, REQID_MIN)
    assert isinstance(out, PolicySpec)


def test_expire_and_acquire_parse() -> None:
    info = UserSaInfo.unpack(
        _sa_payload(SaSpec(V4A, V4B, 0xAB, REQID_MIN + 1, EspCipher.AES_GCM_16, bytes(20)))
    )
    expire = info.pack() + bytes([1]) + bytes(7) + attr(XfrmAttr.IF_ID, (9).to_bytes(4, "little"))
    assert parse_expire(expire) == SaExpired(V4A, V4B, 0xAB, REQID_MIN + 1, 9, True)
    tmpl = UserTemplate(AF_INET, V4B, V4A, REQID_MIN + 2, 1)
    policy = UserPolicyInfo(Selector.any_of(AF_INET), PolicyDir.OUT, index=17)
    acquire = (
        V4B.packed.ljust(16, b"\0")
        + bytes(8)
        + V4A.packed.ljust(16, b"\0")
        + Selector.any_of(AF_INET).pack()
        + policy.pack()
        + bytes(12)
        + (42).to_bytes(4, "little")
        + attr(XfrmAttr.TMPL, tmpl.pack())
    )
    assert parse_acquire(acquire) == SaAcquire(
        V4A, V4B, Selector.any_of(AF_INET), REQID_MIN + 2, 0, 17, 42
    )


@given(st.binary(max_size=600))
def test_random_bytes_raise_only_our_error(data: bytes) -> None:
    for parse in (parse_expire, parse_acquire, UserSaInfo.unpack, UserPolicyInfo.unpack):
        with contextlib.suppress(XfrmDecodeError):
            parse(data)
    parse_attrs(data)
    list(split_messages(data))
    with contextlib.suppress(XfrmDecodeError):
        UserTemplate.unpack_all(data)
