"""IKE_SA_INIT and IKE_AUTH, both roles (RFC 7296 §1.2, §2.6 cookies, §2.15 AUTH, §2.23 NAT)."""

from __future__ import annotations

import functools
import hashlib
import ipaddress

from afbr.ipsec.ike_auth import (
    KeyCredential,
    hash_algorithms_data,
    parse_hash_algorithms,
    sign_auth,
    signed_octets,
    verify_auth,
)
from afbr.ipsec.ike_child_nego import (
    accept_child,
    child_offer,
    install_child,
    new_child_spi,
    respond_child,
)
from afbr.ipsec.ike_config import Address, Identity
from afbr.ipsec.ike_constants import (
    NAT_T_PORT,
    ExchangeType,
    IdType,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from afbr.ipsec.ike_crypto import derive_ike_keys, sk_ciphers
from afbr.ipsec.ike_dh import generate_keypair, shared_secret
from afbr.ipsec.ike_errors import IkeAuthenticationError, IkeError
from afbr.ipsec.ike_events import (
    AuthenticationFailed,
    ChildSaFailed,
    IkeSaEstablished,
)
from afbr.ipsec.ike_payloads import (
    AuthPayload,
    CertPayload,
    IdPayload,
    IkeMessage,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SaPayload,
)
from afbr.ipsec.ike_proposals import (
    DhGroup,
    build_proposals,
    select_proposal,
    suite_of_reply,
)
from afbr.ipsec.ike_sa_state import IkeSaRecord, IkeState, PendingRequest

NONCE_LENGTH = 32  # RFC 7296 §2.10: at least half the PRF key size, 16 bytes minimum
MAX_INIT_RETRIES = 4  # COOKIE / INVALID_KE_PAYLOAD round trips before giving up


@functools.lru_cache(maxsize=4096)
def _packed_address(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def nat_hash(spi_i: bytes, spi_r: bytes, addr: Address) -> bytes:
    """RFC 7296 §2.23: SHA-1(SPIi | SPIr | IP | Port)."""
    packed = _packed_address(addr[0])
    return hashlib.sha1(spi_i + spi_r + packed + addr[1].to_bytes(2, "big")).digest()  # noqa: S324


def nat_notifies(sa: IkeSaRecord, spi_r: bytes) -> tuple[NotifyPayload, NotifyPayload]:
    source = nat_hash(sa.spi_i, spi_r, sa.local_addr)
    if sa.config.force_udp_encapsulation:
        source = sa.random(20)  # RFC 7296 §2.23 lets us claim a NAT to force UDP encapsulation
    return (
        NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, source),
        NotifyPayload(
            NotifyType.NAT_DETECTION_DESTINATION_IP, nat_hash(sa.spi_i, spi_r, sa.remote_addr)
        ),
    )


def detect_nat(sa: IkeSaRecord, message: IkeMessage, spi_r: bytes, peer: Address) -> None:
    sources = [
        p.data
        for p in message.payloads
        if isinstance(p, NotifyPayload) and p.notify_type == NotifyType.NAT_DETECTION_SOURCE_IP
    ]
    destination = message.notify(NotifyType.NAT_DETECTION_DESTINATION_IP)
    if not sources or destination is None:
        return  # peer does not do NAT-T
    sa.nat_remote = nat_hash(sa.spi_i, spi_r, peer) not in sources
    sa.nat_local = destination.data != nat_hash(sa.spi_i, spi_r, sa.local_addr)
    if sa.config.force_udp_encapsulation:
        sa.nat_local = True


def _id_payload(identity: Identity, initiator: bool) -> IdPayload:
    return IdPayload(
        PayloadType.IDI if initiator else PayloadType.IDR, identity.id_type, identity.data
    )


def _set_keys(sa: IkeSaRecord, shared: bytes) -> None:
    assert sa.suite is not None
    sa.keys = derive_ike_keys(
        sa.suite,
        shared,
        nonce_i=sa.nego.nonce_i,
        nonce_r=sa.nego.nonce_r,
        spi_i=sa.spi_i,
        spi_r=sa.spi_r,
    )
    sa.out_cipher, sa.in_cipher = sk_ciphers(sa.suite, sa.keys, sa.is_initiator)


# -- initiator ---------------------------------------------------------------------------------
def start_initiator(sa: IkeSaRecord, now: float) -> None:
    if sa.state != IkeState.IDLE or not sa.is_initiator:
        raise IkeError("initiate() on an SA that already started")
    sa.transition(IkeState.INIT_SENT)
    sa.nego.dh = generate_keypair(sa.config.ike_proposals[0].dh_group, sa.random)
    sa.nego.nonce_i = sa.random(NONCE_LENGTH)
    sa.queue_request(PendingRequest(ExchangeType.IKE_SA_INIT, _build_init, _on_init_response), now)


def _build_init(sa: IkeSaRecord, now: float) -> tuple[Payload, ...]:
    assert sa.nego.dh is not None
    payloads: list[Payload] = []
    if sa.nego.cookie:
        payloads.append(NotifyPayload(NotifyType.COOKIE, sa.nego.cookie))  # RFC 7296 §2.6: first
    payloads += [
        SaPayload(build_proposals(sa.config.ike_proposals, ProtocolId.IKE, b"")),
        KePayload(sa.nego.dh.group, sa.nego.dh.public),
        NoncePayload(sa.nego.nonce_i),
        *nat_notifies(sa, bytes(8)),
        NotifyPayload(NotifyType.SIGNATURE_HASH_ALGORITHMS, hash_algorithms_data()),
    ]
    return tuple(payloads)


def _restart_init(sa: IkeSaRecord, now: float) -> None:
    sa.nego.init_retries += 1
    if sa.nego.init_retries > MAX_INIT_RETRIES:
        raise IkeError("IKE_SA_INIT keeps being refused")
    sa.next_request_id = 0  # RFC 7296 §2.6: the retry is message 0 again
    sa.queue.appendleft(PendingRequest(ExchangeType.IKE_SA_INIT, _build_init, _on_init_response))


def _on_init_response(sa: IkeSaRecord, message: IkeMessage, now: float) -> None:
    cookie = message.notify(NotifyType.COOKIE)
    if cookie is not None:
        sa.nego.cookie = cookie.data
        _restart_init(sa, now)
        return
    invalid_ke = message.notify(NotifyType.INVALID_KE_PAYLOAD)
    if invalid_ke is not None:
        group = int.from_bytes(invalid_ke.data[:2], "big")
        if group not in {s.dh_group for s in sa.config.ike_proposals} or group == sa.nego.dh.group:  # type: ignore[union-attr]
            raise IkeError(f"peer wants DH group {group}", NotifyType.INVALID_KE_PAYLOAD)
        sa.nego.dh = generate_keypair(DhGroup(group), sa.random)
        _restart_init(sa, now)
        return
    error = message.error_notify()
    if error is not None:
        raise IkeError(f"IKE_SA_INIT refused with notify {error.notify_type}")
    sa_payload, ke, nonce = (
        message.first(PayloadType.SA),
        message.first(PayloadType.KE),
        message.first(PayloadType.NONCE),
    )
    if not (
        isinstance(sa_payload, SaPayload)
        and isinstance(ke, KePayload)
        and isinstance(nonce, NoncePayload)
    ):
        raise IkeError("IKE_SA_INIT response lacks SA, KE or Nr", NotifyType.INVALID_SYNTAX)
    _, suite = suite_of_reply(sa_payload.proposals, sa.config.ike_proposals, ProtocolId.IKE)
    assert sa.nego.dh is not None
    if (
        ke.group != suite.dh_group
        or ke.group != sa.nego.dh.group
        or message.header.spi_r == bytes(8)
    ):
        raise IkeError("IKE_SA_INIT response does not match our KE", NotifyType.INVALID_SYNTAX)
    shared = shared_secret(sa.nego.dh, ke.data)
    sa.spi_r = message.header.spi_r
    sa.suite = suite
    sa.nego.nonce_r = nonce.nonce
    sa.nego.init_request = sa.last_request_data
    sa.nego.init_response = message.raw
    hashes = message.notify(NotifyType.SIGNATURE_HASH_ALGORITHMS)
    sa.nego.peer_hashes = parse_hash_algorithms(hashes.data) if hashes else set()
    _set_keys(sa, shared)
    detect_nat(sa, message, sa.spi_r, sa.remote_addr)
    if (sa.nat_local or sa.nat_remote) and sa.local_addr[1] != NAT_T_PORT:
        sa.local_addr = (sa.local_addr[0], NAT_T_PORT)  # RFC 7296 §2.23: float to 4500
        sa.remote_addr = (sa.remote_addr[0], NAT_T_PORT)
    sa.transition(IkeState.AUTH_SENT)
    sa.nego.child_spi = new_child_spi(sa)
    sa.queue.appendleft(PendingRequest(ExchangeType.IKE_AUTH, _build_auth, _on_auth_response))


def _auth_payloads(
    sa: IkeSaRecord, id_payload: IdPayload, octets_base: bytes, peer_nonce: bytes
) -> list[Payload]:
    assert sa.keys is not None and sa.suite is not None and sa.suite.prf is not None
    sk_p = sa.keys.sk_pi if sa.is_initiator else sa.keys.sk_pr
    octets = signed_octets(octets_base, peer_nonce, sa.suite.prf, sk_p, id_payload.body)
    payloads: list[Payload] = [id_payload]
    if isinstance(sa.config.credential, KeyCredential) and sa.config.send_certificate:
        payloads.append(sa.config.credential.cert_payload())
    payloads.append(sign_auth(sa.config.credential, sa.suite.prf, octets, sa.nego.peer_hashes))
    return payloads


def _build_auth(sa: IkeSaRecord, now: float) -> tuple[Payload, ...]:
    payloads = _auth_payloads(
        sa, _id_payload(sa.config.local_id, True), sa.nego.init_request, sa.nego.nonce_r
    )
    if sa.config.remote_id is not None:
        payloads.insert(1, _id_payload(sa.config.remote_id, False))
    payloads.append(NotifyPayload(NotifyType.INITIAL_CONTACT))
    return tuple(payloads) + child_offer(sa, sa.nego.child_spi, sa.config.esp_proposals)


def _verify_peer(
    sa: IkeSaRecord, message: IkeMessage, octets_base: bytes, our_nonce: bytes
) -> Identity:
    """Check the peer's ID and AUTH (and its key against the BGP authenticator)."""
    assert sa.keys is not None and sa.suite is not None and sa.suite.prf is not None
    id_type = PayloadType.IDR if sa.is_initiator else PayloadType.IDI
    peer_id, auth = message.first(id_type), message.first(PayloadType.AUTH)
    if not isinstance(peer_id, IdPayload) or not isinstance(auth, AuthPayload):
        raise IkeAuthenticationError("no ID or AUTH payload")
    identity = _identity_of(peer_id)
    expected = sa.config.remote_id
    if expected is not None and (expected.id_type, expected.data) != (
        peer_id.id_type,
        peer_id.data,
    ):
        raise IkeAuthenticationError(f"peer identity {identity} is not {expected}")
    sk_p = sa.keys.sk_pr if sa.is_initiator else sa.keys.sk_pi
    octets = signed_octets(octets_base, our_nonce, sa.suite.prf, sk_p, peer_id.body)
    certs = [
        p
        for p in message.payloads
        if isinstance(p, CertPayload) and p.payload_type == PayloadType.CERT
    ]
    verify_auth(auth, octets, sa.suite.prf, sa.config.peer_trust, certs)
    return identity


def _identity_of(payload: IdPayload) -> Identity:
    known = payload.id_type in set(IdType)
    return Identity(IdType(payload.id_type) if known else IdType.ID_KEY_ID, payload.data)


def _claimed_identity(sa: IkeSaRecord, message: IkeMessage | None) -> Identity | None:
    """The identity the peer's IKE_AUTH claims, checked or not (for the failure report)."""
    if message is None:
        return None
    payload = message.first(PayloadType.IDR if sa.is_initiator else PayloadType.IDI)
    return _identity_of(payload) if isinstance(payload, IdPayload) else None


def _fail_auth(sa: IkeSaRecord, reason: str, now: float, message: IkeMessage | None) -> None:
    """The peer did not authenticate: `sa.peer_id` stays unset, the claim is only reported."""
    remote = _claimed_identity(sa, message)
    sa.emit(AuthenticationFailed(sa.id, sa.remote_addr, remote, reason))
    sa.close(f"authentication failed: {reason}", now)


def _established(sa: IkeSaRecord, identity: Identity, now: float) -> None:
    assert sa.suite is not None
    sa.transition(IkeState.ESTABLISHED)
    sa.peer_id = identity  # only now: its ID and AUTH checked out
    sa.established_at = now
    timers = sa.config.timers
    fraction = int.from_bytes(sa.random(2), "big") / 65535
    sa.rekey_at = now + timers.ike_rekey * (1 - timers.rekey_jitter * fraction)
    sa.emit(
        IkeSaEstablished(
            sa.id,
            sa.config.local_id,
            identity,
            sa.local_addr,
            sa.remote_addr,
            sa.suite,
            sa.nat_local or sa.nat_remote,
        )
    )


def _on_auth_response(sa: IkeSaRecord, message: IkeMessage, now: float) -> None:
    if message.first(PayloadType.AUTH) is None:
        error = message.error_notify()
        refused = f"peer refused IKE_AUTH (notify {error.notify_type if error else '-'})"
        _fail_auth(sa, refused, now, None)
        return
    try:
        identity = _verify_peer(sa, message, sa.nego.init_response, sa.nego.nonce_i)
    except IkeAuthenticationError as exc:
        _fail_auth(sa, str(exc), now, message)
        return
    _established(sa, identity, now)
    try:
        child = accept_child(
            sa,
            message,
            sa.nego.child_spi,
            nonces=(sa.nego.nonce_i, sa.nego.nonce_r),
            dh=None,
            now=now,
        )
    except IkeError as exc:
        sa.emit(ChildSaFailed(sa.id, exc.notify, str(exc)))
        return
    install_child(sa, child)


# -- responder ---------------------------------------------------------------------------------
def handle_init_request(
    sa: IkeSaRecord, message: IkeMessage, addr: Address, now: float
) -> tuple[Payload, ...]:
    sa_payload, ke, nonce = (
        message.first(PayloadType.SA),
        message.first(PayloadType.KE),
        message.first(PayloadType.NONCE),
    )
    if not (
        isinstance(sa_payload, SaPayload)
        and isinstance(ke, KePayload)
        and isinstance(nonce, NoncePayload)
    ):
        raise IkeError("IKE_SA_INIT request lacks SA, KE or Ni", NotifyType.INVALID_SYNTAX)
    proposal, suite = select_proposal(sa_payload.proposals, sa.config.ike_proposals, ProtocolId.IKE)
    if ke.group != suite.dh_group:  # RFC 7296 §1.2: tell the initiator which group to use
        raise IkeError(
            "KE of another group",
            NotifyType.INVALID_KE_PAYLOAD,
            int(suite.dh_group).to_bytes(2, "big"),
        )
    dh = generate_keypair(suite.dh_group, sa.random)
    shared = shared_secret(dh, ke.data)
    sa.spi_r = sa.random(8)
    sa.suite = suite
    sa.nego.nonce_i, sa.nego.nonce_r = nonce.nonce, sa.random(NONCE_LENGTH)
    sa.nego.init_request = message.raw
    hashes = message.notify(NotifyType.SIGNATURE_HASH_ALGORITHMS)
    sa.nego.peer_hashes = parse_hash_algorithms(hashes.data) if hashes else set()
    _set_keys(sa, shared)
    detect_nat(sa, message, bytes(8), addr)
    sa.transition(IkeState.HALF_OPEN)
    payloads: list[Payload] = [
        SaPayload((proposal,)),
        KePayload(dh.group, dh.public),
        NoncePayload(sa.nego.nonce_r),
    ]
    if message.notify(NotifyType.NAT_DETECTION_SOURCE_IP) is not None:
        payloads += nat_notifies(sa, sa.spi_r)
    payloads.append(NotifyPayload(NotifyType.SIGNATURE_HASH_ALGORITHMS, hash_algorithms_data()))
    return tuple(payloads)


def handle_auth_request(
    sa: IkeSaRecord, message: IkeMessage, addr: Address, now: float
) -> tuple[Payload, ...]:
    sa.nego.init_response = sa.last_response.datagrams[0] if sa.last_response else b""
    sa.remote_addr = addr  # RFC 7296 §2.23: the initiator may have floated to 4500
    sa.initial_contact = message.notify(NotifyType.INITIAL_CONTACT) is not None
    try:
        identity = _verify_peer(sa, message, sa.nego.init_request, sa.nego.nonce_r)
    except IkeAuthenticationError as exc:
        _fail_auth(sa, str(exc), now, message)
        return (NotifyPayload(NotifyType.AUTHENTICATION_FAILED),)
    payloads = _auth_payloads(
        sa, _id_payload(sa.config.local_id, False), sa.nego.init_response, sa.nego.nonce_i
    )
    _established(sa, identity, now)
    try:
        child_payloads, child = respond_child(
            sa, message, (sa.nego.nonce_i, sa.nego.nonce_r), b"", now
        )
    except IkeError as exc:
        sa.emit(ChildSaFailed(sa.id, exc.notify, str(exc)))
        return (*payloads, NotifyPayload(exc.notify))
    install_child(sa, child, responder=True)
    return (*payloads, *child_payloads)
