"""CREATE_CHILD_SA: new CHILD SAs, CHILD SA rekeys, IKE SA rekeys, and the collision rules of
RFC 7296 §2.8.1 / §2.8.2 (the SA made with the lowest of the four nonces is redundant)."""

from __future__ import annotations

from dataclasses import dataclass

from afbr.ipsec.ike_child import ChildSa, ChildState
from afbr.ipsec.ike_child_nego import (
    accept_child,
    child_offer,
    child_params,
    install_child,
    new_child_spi,
    offered_suites,
    respond_child,
)
from afbr.ipsec.ike_config import Address
from afbr.ipsec.ike_constants import ExchangeType, NotifyType, PayloadType, ProtocolId
from afbr.ipsec.ike_crypto import derive_ike_keys, sk_ciphers
from afbr.ipsec.ike_dh import DhKeyPair, generate_keypair, shared_secret
from afbr.ipsec.ike_errors import IkeError
from afbr.ipsec.ike_events import ChildSaDeleted, ChildSaFailed, ChildSaRekeyed, IkeSaRekeyed
from afbr.ipsec.ike_informational import request_child_delete, request_ike_delete
from afbr.ipsec.ike_payloads import (
    IkeMessage,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SaPayload,
)
from afbr.ipsec.ike_proposals import (
    AlgorithmSuite,
    DhGroup,
    build_proposals,
    select_proposal,
    suite_of_reply,
)
from afbr.ipsec.ike_sa_state import IkeSaRecord, IkeState, PendingRequest
from afbr.ipsec.ike_setup import NONCE_LENGTH

TEMPORARY_FAILURE_RETRY = 2.0  # mean seconds before retrying a rekey the peer put off
MAX_CHILD_SAS = 16  # per IKE SA; route-based afbr needs one (plus one while rekeying)


def retry_delay(sa: IkeSaRecord) -> float:
    """RFC 7296 §2.25: retry after a random delay, so two ends refusing each other's rekeys
    (TEMPORARY_FAILURE both ways) fall out of step instead of colliding forever."""
    return TEMPORARY_FAILURE_RETRY * (0.25 + 1.5 * sa.random(1)[0] / 255)


@dataclass(slots=True)
class ChildRequest:
    spi: int
    nonce: bytes
    dh: DhKeyPair | None
    old: ChildSa | None  # the CHILD SA being rekeyed


def _ke_and_nonce(message: IkeMessage) -> tuple[NoncePayload, KePayload | None]:
    nonce = message.first(PayloadType.NONCE)
    ke = message.first(PayloadType.KE)
    if not isinstance(nonce, NoncePayload):
        raise IkeError("CREATE_CHILD_SA without a nonce", NotifyType.INVALID_SYNTAX)
    return nonce, ke if isinstance(ke, KePayload) else None


# -- new CHILD SA / CHILD SA rekey, as initiator -------------------------------------------------
def request_new_child(
    sa: IkeSaRecord, now: float, old: ChildSa | None = None, pfs_group: DhGroup | None = None
) -> None:
    """CREATE_CHILD_SA for a new CHILD SA or, with `old`, its rekey; a rekey uses PFS with the
    configured group, or with the group a peer asked for by INVALID_KE_PAYLOAD."""
    pfs_optional = False
    if pfs_group is None:  # offer PFS with the IKE SA's group, the responder may decline it
        pfs_group = sa.config.child_pfs_group
        if pfs_group is None and sa.suite is not None:
            pfs_group = _group_or_none(sa.suite.dh_group)
            pfs_optional = pfs_group is not None
    suites = offered_suites(sa, pfs_group, old.suite if old is not None else None)
    request = ChildRequest(
        new_child_spi(sa),
        sa.random(NONCE_LENGTH),
        generate_keypair(pfs_group, sa.random) if pfs_group else None,
        old,
    )

    def build(sa: IkeSaRecord, now: float) -> tuple[Payload, ...] | None:
        if old is not None and sa.children.get(old.inbound_spi) is not old:
            return None  # deleted meanwhile
        payloads: list[Payload] = []
        if old is not None:
            payloads.append(
                NotifyPayload(
                    NotifyType.REKEY_SA, b"", ProtocolId.ESP, old.inbound_spi.to_bytes(4, "big")
                )
            )
        selectors = (old.local_ts, old.remote_ts) if old is not None else None
        offer = child_offer(sa, request.spi, suites, selectors, pfs_optional)
        payloads += [offer[0], NoncePayload(request.nonce)]
        if request.dh is not None:
            payloads.append(KePayload(request.dh.group, request.dh.public))
        return (*payloads, *offer[1:])

    def on_response(sa: IkeSaRecord, message: IkeMessage, now: float) -> None:
        _child_response(sa, message, request, suites, now)

    request_item = PendingRequest(ExchangeType.CREATE_CHILD_SA, build, on_response, True)
    sa.queue_request(request_item, now)


def _group_or_none(group: DhGroup) -> DhGroup | None:
    return None if group == DhGroup.NONE else group


def _asked_group(message: IkeMessage, request: ChildRequest) -> DhGroup | None:
    invalid_ke = message.notify(NotifyType.INVALID_KE_PAYLOAD)
    if invalid_ke is None or len(invalid_ke.data) < 2:
        return None
    value = int.from_bytes(invalid_ke.data[:2], "big")
    if value not in set(DhGroup) or value == DhGroup.NONE:
        return None
    if request.dh is not None and request.dh.group == value:
        return None  # asked for what we sent: no loop
    return DhGroup(value)


def request_child_rekey(sa: IkeSaRecord, inbound_spi: int, now: float) -> None:
    old = sa.children.get(inbound_spi)
    if old is None or old.state != ChildState.INSTALLED or sa.state != IkeState.ESTABLISHED:
        return
    old.state = ChildState.REKEYING
    request_new_child(sa, now, old)


def _child_response(
    sa: IkeSaRecord,
    message: IkeMessage,
    request: ChildRequest,
    suites: tuple[AlgorithmSuite, ...],
    now: float,
) -> None:
    old = request.old
    error = message.error_notify()
    retry_group = _asked_group(message, request)
    if retry_group is not None:  # RFC 7296 §1.3: the peer wants PFS with that group
        request_new_child(sa, now, old, retry_group)
        return
    if error is not None and old is not None:
        if error.notify_type == NotifyType.CHILD_SA_NOT_FOUND:
            if sa.children.pop(old.inbound_spi, None) is not None:
                sa.emit(ChildSaDeleted(sa.id, old.inbound_spi, old.outbound_spi, "peer lost it"))
            return
        if old.state == ChildState.REKEYING:
            old.state = ChildState.INSTALLED  # RFC 7296 §2.25: try again a bit later
            old.rekey_at = now + retry_delay(sa)
        if error.notify_type == NotifyType.TEMPORARY_FAILURE:
            return
    try:
        nonce = _ke_and_nonce(message)[0] if error is None else None
        child = accept_child(
            sa,
            message,
            request.spi,
            nonces=(request.nonce, nonce.nonce if nonce else b""),
            dh=request.dh,
            now=now,
            suites=suites,
        )
    except IkeError as exc:
        if old is not None and old.state == ChildState.REKEYING:
            old.state = ChildState.INSTALLED
        sa.emit(ChildSaFailed(sa.id, exc.notify, str(exc)))
        return
    if old is None:
        install_child(sa, child)
        return
    sa.children[child.inbound_spi] = child
    sa.emit(ChildSaRekeyed(sa.id, old.inbound_spi, old.outbound_spi, child_params(sa, child)))
    rival = sa.child_collisions.pop(old.inbound_spi, None)
    if rival is not None and min(child.nonces) < min(rival.nonces):
        # RFC 7296 §2.8.1: ours carries the lowest nonce, so it is redundant; we made it, we
        # delete it; the peer, who made the survivor, deletes the old SA
        old.state = ChildState.REKEYED
        request_child_delete(sa, child.inbound_spi, now, "redundant after rekey collision")
        return
    old.state = ChildState.REKEYED
    request_child_delete(sa, old.inbound_spi, now, "rekeyed")


# -- IKE SA rekey, as initiator ------------------------------------------------------------------
def request_ike_rekey(sa: IkeSaRecord, now: float) -> None:
    if sa.state != IkeState.ESTABLISHED or sa.suite is None or sa.ike_rekeying:
        return
    if sa.superseded_at is not None:
        return
    if any(c.state == ChildState.REKEYING for c in sa.children.values()):
        sa.rekey_at = now + retry_delay(sa)  # one rekey at a time
        return
    sa.ike_rekeying = True
    suite = sa.suite
    spi = sa.random(8)
    nonce = sa.random(NONCE_LENGTH)
    dh = generate_keypair(suite.dh_group, sa.random)

    def build(sa: IkeSaRecord, now: float) -> tuple[Payload, ...]:
        proposals = build_proposals(sa.config.ike_proposals, ProtocolId.IKE, spi)
        return (SaPayload(proposals), NoncePayload(nonce), KePayload(dh.group, dh.public))

    def on_response(sa: IkeSaRecord, message: IkeMessage, now: float) -> None:
        sa.ike_rekeying = False
        if message.error_notify() is not None:
            sa.rekey_at = now + retry_delay(sa)
            return
        sa_payload = message.first(PayloadType.SA)
        peer_nonce, ke = _ke_and_nonce(message)
        if not isinstance(sa_payload, SaPayload) or ke is None:
            raise IkeError("IKE rekey answer incomplete", NotifyType.INVALID_SYNTAX)
        proposal, chosen = suite_of_reply(
            sa_payload.proposals, sa.config.ike_proposals, ProtocolId.IKE
        )
        if ke.group != dh.group or chosen.dh_group != dh.group or len(proposal.spi) != 8:
            raise IkeError("IKE rekey answer does not fit", NotifyType.INVALID_SYNTAX)
        new = successor(
            sa,
            chosen,
            shared=shared_secret(dh, ke.data),
            nonces=(nonce, peer_nonce.nonce),
            spis=(spi, proposal.spi),
            initiator=True,
            now=now,
        )
        rival = sa.ike_collision
        sa.ike_collision = None
        if rival is not None and min(nonce, peer_nonce.nonce) < min(
            rival.nego.nonce_i, rival.nego.nonce_r
        ):
            sa.emit(IkeSaRekeyed(sa.id, new.id, redundant=True))
            _move_children(sa, rival, now)
            request_ike_delete(new, now)  # RFC 7296 §2.8.2: we made the redundant one, we delete it
            return
        if rival is not None:  # the rival is redundant: the peer made it and deletes it, or
            rival.superseded_at = now  # we do after a grace period (its answer may be lost)
        _move_children(sa, new, now)
        request_ike_delete(sa, now, "rekeyed")

    sa.queue_request(PendingRequest(ExchangeType.CREATE_CHILD_SA, build, on_response), now)


def successor(
    sa: IkeSaRecord,
    suite: AlgorithmSuite,
    *,
    shared: bytes,
    nonces: tuple[bytes, bytes],
    spis: tuple[bytes, bytes],
    initiator: bool,
    now: float,
) -> IkeSaRecord:
    """The new IKE SA of a rekey (RFC 7296 §2.18): keys from the old SK_d, message ids from 0,
    the rekey's initiator as its original initiator."""
    assert sa.keys is not None
    new = sa.spawn(initiator=initiator, spis=spis, now=now, state=IkeState.ESTABLISHED)
    new.suite = suite
    new.nego.nonce_i, new.nego.nonce_r = nonces
    new.keys = derive_ike_keys(
        suite,
        shared,
        nonce_i=nonces[0],
        nonce_r=nonces[1],
        spi_i=spis[0],
        spi_r=spis[1],
        old_sk_d=sa.keys.sk_d,
    )
    new.out_cipher, new.in_cipher = sk_ciphers(suite, new.keys, initiator)
    new.nat_local, new.nat_remote, new.peer_id = sa.nat_local, sa.nat_remote, sa.peer_id
    timers = sa.config.timers
    new.rekey_at = now + timers.ike_rekey * (1 - timers.rekey_jitter * sa.random(1)[0] / 255)
    return new


def _move_children(old: IkeSaRecord, new: IkeSaRecord, now: float) -> None:
    old.hand_over_children(new, now)


# -- the peer's requests -------------------------------------------------------------------------
def handle_create_child(
    sa: IkeSaRecord, message: IkeMessage, addr: Address, now: float
) -> tuple[Payload, ...]:
    sa_payload = message.first(PayloadType.SA)
    if not isinstance(sa_payload, SaPayload):
        raise IkeError("CREATE_CHILD_SA without SA", NotifyType.INVALID_SYNTAX)
    if sa.superseded_at is not None:
        raise IkeError("IKE SA was rekeyed", NotifyType.TEMPORARY_FAILURE)
    if any(p.protocol == ProtocolId.IKE for p in sa_payload.proposals):
        return _answer_ike_rekey(sa, message, sa_payload, now)
    if sa.ike_rekeying:
        raise IkeError("IKE SA rekey in progress", NotifyType.TEMPORARY_FAILURE)  # §2.25.2
    nonce, ke = _ke_and_nonce(message)
    rekey = message.notify(NotifyType.REKEY_SA)
    old = None
    if rekey is not None:
        spi = int.from_bytes(rekey.spi, "big")
        old = next((c for c in sa.children.values() if c.outbound_spi == spi), None)
        if old is None:
            raise IkeError("no CHILD SA with that SPI", NotifyType.CHILD_SA_NOT_FOUND)  # §2.25
        if old.state in (ChildState.REKEYED, ChildState.DELETING):
            raise IkeError("CHILD SA is going away", NotifyType.TEMPORARY_FAILURE)  # §2.25.1
    elif len(sa.children) >= MAX_CHILD_SAS:
        raise IkeError("CHILD SA limit reached", NotifyType.NO_ADDITIONAL_SAS)  # RFC 7296 §1.3
    wanted = sa.config.child_pfs_group
    if wanted is not None and (ke is None or ke.group != wanted):  # RFC 7296 §1.3: ask for KE
        raise IkeError(
            "PFS required", NotifyType.INVALID_KE_PAYLOAD, int(wanted).to_bytes(2, "big")
        )
    shared = b""
    dh = None
    if ke is not None:
        dh = generate_keypair(_group(ke.group), sa.random)
        shared = shared_secret(dh, ke.data)
    our_nonce = sa.random(NONCE_LENGTH)
    payloads, child = respond_child(sa, message, (nonce.nonce, our_nonce), shared, now)
    extra: list[Payload] = [NoncePayload(our_nonce)]
    if dh is not None:
        extra.append(KePayload(dh.group, dh.public))
    if old is None:
        install_child(sa, child, responder=True)
    else:
        sa.children[child.inbound_spi] = child
        sa.emit(
            ChildSaRekeyed(
                sa.id, old.inbound_spi, old.outbound_spi, child_params(sa, child), responder=True
            )
        )
        if old.state == ChildState.REKEYING:
            sa.child_collisions[old.inbound_spi] = child  # §2.8.1: decided when our answer comes
        else:
            old.state = ChildState.REKEYED  # the peer deletes it
    return (payloads[0], *extra, *payloads[1:])


def _group(value: int) -> DhGroup:
    try:
        return DhGroup(value)
    except ValueError:
        raise IkeError(f"DH group {value}", NotifyType.INVALID_KE_PAYLOAD) from None


def _answer_ike_rekey(
    sa: IkeSaRecord, message: IkeMessage, sa_payload: SaPayload, now: float
) -> tuple[Payload, ...]:
    nonce, ke = _ke_and_nonce(message)
    proposal, suite = select_proposal(sa_payload.proposals, sa.config.ike_proposals, ProtocolId.IKE)
    if ke is None or ke.group != suite.dh_group:
        raise IkeError(
            "KE of another group",
            NotifyType.INVALID_KE_PAYLOAD,
            int(suite.dh_group).to_bytes(2, "big"),
        )
    if len(proposal.spi) != 8:
        raise IkeError("IKE SPI of wrong size", NotifyType.INVALID_SYNTAX)
    if any(c.state == ChildState.REKEYING for c in sa.children.values()) or (
        sa.outstanding is not None and not sa.ike_rekeying
    ):  # RFC 7296 §2.25.2: finish what is under way first
        raise IkeError("another exchange in progress", NotifyType.TEMPORARY_FAILURE)
    dh = generate_keypair(suite.dh_group, sa.random)
    our_spi = sa.random(8)
    our_nonce = sa.random(NONCE_LENGTH)
    new = successor(
        sa,
        suite,
        shared=shared_secret(dh, ke.data),
        nonces=(nonce.nonce, our_nonce),
        spis=(proposal.spi, our_spi),
        initiator=False,
        now=now,
    )
    answer = type(proposal)(proposal.number, proposal.protocol, our_spi, proposal.transforms)
    if sa.ike_rekeying:
        sa.ike_collision = new  # §2.8.2: settled when our own rekey's answer arrives
        sa.emit(IkeSaRekeyed(sa.id, new.id, redundant=True))
    else:
        _move_children(sa, new, now)
    return (SaPayload((answer,)), NoncePayload(our_nonce), KePayload(dh.group, dh.public))


def refuse_while_deleting(
    sa: IkeSaRecord, message: IkeMessage, addr: Address, now: float
) -> tuple[Payload, ...]:
    raise IkeError("IKE SA is being deleted", NotifyType.TEMPORARY_FAILURE)  # RFC 7296 §2.25
