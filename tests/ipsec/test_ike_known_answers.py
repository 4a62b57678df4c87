"""Known answers: strongSwan's captured exchanges and RFC test vectors."""

from __future__ import annotations

import pytest
from ipsec_vectors import PSK, VECTORS, ike_datagrams, logged_values

from afbr.ipsec.ike_auth import PeerTrust, PskCredential, signed_octets, verify_auth
from afbr.ipsec.ike_crypto import derive_child_keys, derive_ike_keys, prf, sk_ciphers
from afbr.ipsec.ike_dh import generate_keypair, shared_secret
from afbr.ipsec.ike_message import decode_message, decode_payloads, encode_message
from afbr.ipsec.ike_payloads import (
    AuthPayload,
    IdPayload,
    IkeMessage,
    NoncePayload,
    SaPayload,
    SkPayload,
)
from afbr.ipsec.ike_proposals import (
    ESP_AES_GCM_128,
    ESP_NULL_SHA256,
    IKE_AES_GCM_128,
    DhGroup,
    PrfId,
    ProtocolId,
    suite_of_reply,
)
from afbr.ipsec.ike_setup import nat_hash

# Each capture: (pcap and log in tests/vectors/, the ESP suite negotiated)
CAPTURES = {"gcm-v4": ESP_AES_GCM_128, "null-v6": ESP_NULL_SHA256}


def _first(message: IkeMessage, kind: type) -> object:
    return next(p for p in message.payloads if isinstance(p, kind))


class Capture:
    """One strongSwan 5.9.8 exchange (initiator a.example, responder b.example, PSK)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.datagrams = ike_datagrams(VECTORS / f"{name}.pcap")
        self.log = logged_values(VECTORS / f"{name}.charon-a.log")
        self.init_i = decode_message(self.datagrams[0].payload)
        self.init_r = decode_message(self.datagrams[1].payload)
        self.nonce_i = _first(self.init_i, NoncePayload).nonce  # type: ignore[attr-defined]
        self.nonce_r = _first(self.init_r, NoncePayload).nonce  # type: ignore[attr-defined]
        self.spi_i, self.spi_r = self.init_r.header.spi_i, self.init_r.header.spi_r
        sa_reply = _first(self.init_r, SaPayload).proposals  # type: ignore[attr-defined]
        self.suite = suite_of_reply(sa_reply, [IKE_AES_GCM_128], ProtocolId.IKE)[1]
        shared = self.log["shared Diffie Hellman secret"][0]
        self.keys = derive_ike_keys(
            self.suite,
            shared,
            nonce_i=self.nonce_i,
            nonce_r=self.nonce_r,
            spi_i=self.spi_i,
            spi_r=self.spi_r,
        )

    def auth_message(self, index: int) -> tuple[IkeMessage, tuple[object, ...]]:
        """IKE_AUTH request (2) or response (3), decoded and decrypted with afbr's keys."""
        raw = self.datagrams[index].payload
        message = decode_message(raw)
        sk = message.payloads[-1]
        assert isinstance(sk, SkPayload)
        outbound, inbound = sk_ciphers(self.suite, self.keys, initiator=True)
        cipher = outbound if index == 2 else inbound
        plaintext = cipher.open(raw[: len(raw) - len(sk.data)], sk.data)
        return message, decode_payloads(plaintext, sk.first_inner)


@pytest.fixture(params=sorted(CAPTURES), scope="module")
def capture(request: pytest.FixtureRequest) -> Capture:
    return Capture(request.param)


def test_capture_codec_reencodes_ike_sa_init_byte_for_byte(capture: Capture) -> None:
    # vector: IKE_SA_INIT request/response of the capture
    assert encode_message(capture.init_i) == capture.datagrams[0].payload
    assert encode_message(capture.init_r) == capture.datagrams[1].payload


def test_capture_ike_keys_match_strongswan_log(capture: Capture) -> None:
    # vector: nonces and SPIs from the pcap, g^ir and the expected keys from charon's log
    log = capture.log
    assert capture.keys.skeyseed == log["SKEYSEED"][0]
    assert capture.keys.sk_d == log["Sk_d secret"][0]
    assert capture.keys.sk_ei == log["Sk_ei secret"][0]
    assert capture.keys.sk_er == log["Sk_er secret"][0]
    assert capture.keys.sk_pi == log["Sk_pi secret"][0]
    assert capture.keys.sk_pr == log["Sk_pr secret"][0]


def test_capture_nat_detection_hashes_match_log(capture: Capture) -> None:
    # vector: charon's natd_hash values.  Its own source hash is a faked one (a random address,
    # to force UDP encapsulation), so: the destination hash of the request (SPIr still zero),
    # then the hashes over both SPIs it computed for the initiator and the responder address.
    hashes = capture.log["natd_hash"]
    initiator, responder = capture.datagrams[0].source, capture.datagrams[0].destination
    assert nat_hash(capture.spi_i, bytes(8), responder) == hashes[1]
    assert nat_hash(capture.spi_i, capture.spi_r, initiator) == hashes[2]
    assert nat_hash(capture.spi_i, capture.spi_r, responder) == hashes[3]
    assert nat_hash(capture.spi_i, bytes(8), initiator) != hashes[0]


def test_capture_child_keys_match_strongswan_log(capture: Capture) -> None:
    # vector: CHILD SA keys from charon's log; ESP suite as negotiated in the capture
    suite = CAPTURES[capture.name]
    keys = derive_child_keys(
        PrfId.PRF_HMAC_SHA2_256,
        capture.keys.sk_d,
        suite,
        nonce_i=capture.nonce_i,
        nonce_r=capture.nonce_r,
    )
    log = capture.log
    if suite is ESP_AES_GCM_128:
        assert keys.encr_i == log["encryption initiator key"][0]
        assert keys.encr_r == log["encryption responder key"][0]
    else:
        assert keys.integ_i == log["integrity initiator key"][0]
        assert keys.integ_r == log["integrity responder key"][0]


def test_capture_sk_payloads_decrypt(capture: Capture) -> None:
    # vector: the IKE_AUTH request and response of the capture (SK payloads, AES-GCM-16)
    _, request = capture.auth_message(2)
    _, response = capture.auth_message(3)
    ids = [p for p in request if isinstance(p, IdPayload)]
    assert [i.data for i in ids] == [b"a.example", b"b.example"]
    assert [p.data for p in response if isinstance(p, IdPayload)] == [b"b.example"]


@pytest.mark.parametrize("index", [2, 3])
def test_capture_auth_payloads_verify(capture: Capture, index: int) -> None:
    # vector: initiator's AUTH (index 2) and responder's AUTH (index 3), PSK from the README
    _, payloads = capture.auth_message(index)
    peer_id = next(p for p in payloads if isinstance(p, IdPayload))
    auth = next(p for p in payloads if isinstance(p, AuthPayload))
    if index == 2:
        base, nonce, sk_p = capture.datagrams[0].payload, capture.nonce_r, capture.keys.sk_pi
    else:
        base, nonce, sk_p = capture.datagrams[1].payload, capture.nonce_i, capture.keys.sk_pr
    octets = signed_octets(base, nonce, PrfId.PRF_HMAC_SHA2_256, sk_p, peer_id.body)
    assert octets == capture.log["octets = message + nonce + prf(Sk_px, IDx')"][index - 2]
    trust = PeerTrust(psk=PskCredential(PSK))
    verify_auth(auth, octets, PrfId.PRF_HMAC_SHA2_256, trust, [])
    wrong = PeerTrust(psk=PskCredential(PSK[:-1] + b"\0"))
    with pytest.raises(Exception, match="does not verify"):
        verify_auth(auth, octets, PrfId.PRF_HMAC_SHA2_256, wrong, [])


def test_rfc4231_hmac_sha2_test_case_2() -> None:
    # vector: RFC 4231 §4.3 (key "Jefe")
    data = b"what do ya want for nothing?"
    assert prf(PrfId.PRF_HMAC_SHA2_256, b"Jefe", data).hex() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    assert prf(PrfId.PRF_HMAC_SHA2_512, b"Jefe", data).hex() == (
        "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
        "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
    )


def _h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def test_rfc5903_ecp256_dh() -> None:
    # vector: RFC 5903 §8.1 (256-bit random ECP group): KE data is x|y, g^ir is x alone
    i = _h("C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433")
    gi = _h(
        "DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180"
        "5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3"
    )
    gr = _h(
        "D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63"
        "56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB"
    )
    gir = _h("D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE")
    # generate_keypair maps 40 random bytes v to v mod (n-1) + 1: feed i-1 to get i
    seed = (int.from_bytes(i, "big") - 1).to_bytes(40, "big")
    pair = generate_keypair(DhGroup.ECP_256, lambda n: seed)
    assert pair.public == gi
    assert shared_secret(pair, gr) == gir


def test_rfc7748_x25519_dh() -> None:
    # vector: RFC 7748 §6.1
    a = _h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    b_pub = _h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    pair = generate_keypair(DhGroup.CURVE25519, lambda n: a)
    assert pair.public.hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    assert shared_secret(pair, b_pub).hex() == (
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    )


def test_modp2048_both_sides_agree_and_reject_trivial_values() -> None:
    a = generate_keypair(DhGroup.MODP_2048, lambda n: b"\x11" * n)
    b = generate_keypair(DhGroup.MODP_2048, lambda n: b"\x22" * n)
    assert shared_secret(a, b.public) == shared_secret(b, a.public)
    assert len(shared_secret(a, b.public)) == 256
    from afbr.ipsec.ike_errors import IkeError

    for bad in (bytes(256), (1).to_bytes(256, "big")):
        with pytest.raises(IkeError):
            shared_secret(a, bad)
