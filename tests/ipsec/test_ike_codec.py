"""IKEv2 codec: round trips of every payload kind, random bytes raise only IkeError, SK
payload seal/open, proposal selection."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from afbr.ipsec.ike_constants import ExchangeType, HeaderFlag, PayloadType
from afbr.ipsec.ike_crypto import SkCipher
from afbr.ipsec.ike_errors import IkeError, IkeIntegrityError
from afbr.ipsec.ike_message import decode_message, decode_payloads, encode_message, encode_payloads
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
    Proposal,
    RawPayload,
    SaPayload,
    TrafficSelector,
    Transform,
    TsPayload,
)
from afbr.ipsec.ike_proposals import (
    DEFAULT_ESP_PROPOSALS,
    DEFAULT_IKE_PROPOSALS,
    ESP_AES_CBC_SHA256,
    ESP_NULL_SHA256,
    IKE_AES_CBC_SHA256,
    IKE_AES_GCM_128,
    IKE_AES_GCM_256,
    AlgorithmSuite,
    DhGroup,
    ProtocolId,
    build_proposals,
    select_proposal,
    suite_of_reply,
)

u8 = st.integers(0, 255)
u16 = st.integers(0, 65535)
blob = st.binary(max_size=64)

transforms = st.builds(Transform, st.integers(1, 5), u16, st.one_of(st.none(), u16))
proposals = st.builds(
    Proposal,
    u8,
    st.sampled_from([1, 3]),
    st.sampled_from([b"", b"\x01\x02\x03\x04", bytes(range(8))]),
    st.lists(transforms, min_size=1, max_size=6).map(tuple),
)


def _selector(v6: bool, a: int, b: int, ports: tuple[int, int, int]) -> TrafficSelector:
    proto, p1, p2 = ports
    make = ipaddress.IPv6Address if v6 else ipaddress.IPv4Address
    limit = 2**128 - 1 if v6 else 2**32 - 1
    return TrafficSelector(make(a & limit), make(b & limit), proto, p1, p2)


selectors = st.builds(
    _selector,
    st.booleans(),
    st.integers(0, 2**128 - 1),
    st.integers(0, 2**128 - 1),
    st.tuples(u8, u16, u16),
)
payloads: st.SearchStrategy[Payload] = st.one_of(
    st.builds(SaPayload, st.lists(proposals, min_size=1, max_size=3).map(tuple)),
    st.builds(KePayload, u16, blob),
    st.builds(NoncePayload, st.binary(min_size=16, max_size=256)),
    st.builds(IdPayload, st.sampled_from([PayloadType.IDI, PayloadType.IDR]), u8, blob),
    st.builds(AuthPayload, u8, blob),
    st.builds(CertPayload, u8, blob, st.sampled_from([PayloadType.CERT, PayloadType.CERTREQ])),
    st.builds(NotifyPayload, u16, blob, u8, st.sampled_from([b"", b"\1\2\3\4", bytes(8)])),
    st.builds(
        DeletePayload,
        st.sampled_from([1, 3]),
        st.lists(st.binary(min_size=4, max_size=4), max_size=4).map(tuple),
    ),
    st.builds(
        TsPayload,
        st.sampled_from([PayloadType.TSI, PayloadType.TSR]),
        st.lists(selectors, max_size=3).map(tuple),
    ),
    st.builds(RawPayload, st.sampled_from([43, 47, 48, 200]), blob),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(payloads, max_size=6).map(tuple))
def test_payload_chain_round_trip(chain: tuple[Payload, ...]) -> None:
    first = int(chain[0].payload_type) if chain else 0
    assert decode_payloads(encode_payloads(chain), first) == chain


@settings(max_examples=100, deadline=None)
@given(
    st.tuples(
        st.binary(min_size=8, max_size=8),
        st.binary(min_size=8, max_size=8),
        st.sampled_from(list(ExchangeType)),
        st.sampled_from([HeaderFlag.INITIATOR, HeaderFlag.RESPONSE, HeaderFlag.NONE]),
        st.integers(0, 2**32 - 1),
    ),
    st.lists(payloads, max_size=4).map(tuple),
)
def test_message_round_trip(
    fields: tuple[bytes, bytes, int, HeaderFlag, int], chain: tuple[Payload, ...]
) -> None:
    spi_i, spi_r, exchange, flags, mid = fields
    data = encode_message(IkeMessage(IkeHeader(spi_i, spi_r, 0, exchange, flags, mid), chain))
    decoded = decode_message(data)
    assert decoded.payloads == chain
    assert (decoded.header.spi_i, decoded.header.spi_r, decoded.header.message_id) == (
        spi_i,
        spi_r,
        mid,
    )
    assert encode_message(decoded) == data


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([0, 33, 34, 35, 39, 41, 42, 44, 46]))
def test_random_bytes_raise_only_ike_errors(data: bytes, first: int) -> None:
    for decode in (lambda: decode_message(data), lambda: decode_payloads(data, first)):
        with contextlib.suppress(IkeError):
            decode()


def test_unknown_critical_payload_is_unsupported_critical_payload() -> None:
    data = encode_payloads((RawPayload(200, b"x", critical=True),))
    with pytest.raises(IkeError) as info:
        decode_payloads(data, 200)
    assert info.value.notify == 1


CIPHERS = [
    SkCipher(IKE_AES_GCM_128, bytes(range(20)), b""),
    SkCipher(IKE_AES_GCM_256, bytes(range(36)), b""),
    SkCipher(IKE_AES_CBC_SHA256, bytes(range(32)), bytes(range(32, 64))),
]


@pytest.mark.parametrize("cipher", CIPHERS, ids=lambda c: c.suite.describe())
@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=300), header=st.binary(min_size=32, max_size=32))
def test_sk_seal_open_round_trip_and_tamper(
    cipher: SkCipher, plaintext: bytes, header: bytes
) -> None:
    body = cipher.seal(header, plaintext, bytes(cipher.iv_length))
    assert len(body) == cipher.overhead(len(plaintext))
    assert cipher.open(header, body) == plaintext
    with pytest.raises(IkeIntegrityError):
        cipher.open(header, body[:-1] + bytes([body[-1] ^ 1]))
    with pytest.raises(IkeIntegrityError):
        cipher.open(bytes([header[0] ^ 1]) + header[1:], body)


# one table drives both roles: (offered by the initiator, acceptable to the responder, chosen)
SELECTION = [
    (DEFAULT_IKE_PROPOSALS, (IKE_AES_CBC_SHA256,), IKE_AES_CBC_SHA256),
    (DEFAULT_IKE_PROPOSALS, (IKE_AES_GCM_256, IKE_AES_GCM_128), IKE_AES_GCM_128),
    (DEFAULT_ESP_PROPOSALS, (ESP_NULL_SHA256,), ESP_NULL_SHA256),
    (DEFAULT_ESP_PROPOSALS, (ESP_AES_CBC_SHA256, ESP_NULL_SHA256), ESP_AES_CBC_SHA256),
    ((IKE_AES_GCM_128,), (IKE_AES_CBC_SHA256,), None),
    ((ESP_AES_CBC_SHA256,), (ESP_NULL_SHA256,), None),
]


@pytest.mark.parametrize(("offered", "acceptable", "chosen"), SELECTION)
def test_proposal_selection(
    offered: tuple[AlgorithmSuite, ...],
    acceptable: tuple[AlgorithmSuite, ...],
    chosen: AlgorithmSuite | None,
) -> None:
    protocol = ProtocolId.IKE if offered[0].prf else ProtocolId.ESP
    sent = build_proposals(offered, protocol, b"" if protocol == ProtocolId.IKE else b"\0\0\1\0")
    if chosen is None:
        with pytest.raises(IkeError):
            select_proposal(sent, acceptable, protocol)
        return
    reply, suite = select_proposal(sent, acceptable, protocol)
    assert suite == chosen
    assert suite_of_reply([reply], offered, protocol) == (reply, chosen)


def test_reply_with_unoffered_proposal_is_refused() -> None:
    reply = IKE_AES_GCM_256.proposal(1, ProtocolId.IKE, b"")
    with pytest.raises(IkeError):
        suite_of_reply([reply], (IKE_AES_GCM_128,), ProtocolId.IKE)


def test_esp_with_pfs_group_matches_only_that_group() -> None:
    pfs = ESP_AES_CBC_SHA256.with_dh(DhGroup.CURVE25519)
    sent = build_proposals((pfs,), ProtocolId.ESP, b"\0\0\1\0")
    _, suite = select_proposal(sent, (ESP_AES_CBC_SHA256,), ProtocolId.ESP, DhGroup.CURVE25519)
    assert suite == pfs
    with pytest.raises(IkeError):
        select_proposal(sent, (ESP_AES_CBC_SHA256,), ProtocolId.ESP, DhGroup.ECP_256)
