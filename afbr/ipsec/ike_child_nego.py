"""Negotiating one CHILD SA inside IKE_AUTH or CREATE_CHILD_SA (RFC 7296 §1.3, §2.9, §2.17)."""

from __future__ import annotations

from afbr.ipsec.ike_child import ChildSa, check_narrowed, narrow
from afbr.ipsec.ike_config import IpsecMode
from afbr.ipsec.ike_constants import NotifyType, PayloadType, ProtocolId
from afbr.ipsec.ike_crypto import derive_child_keys
from afbr.ipsec.ike_dh import DhKeyPair, shared_secret
from afbr.ipsec.ike_errors import IkeError
from afbr.ipsec.ike_events import ChildSaEstablished, ChildSaParams
from afbr.ipsec.ike_payloads import (
    IkeMessage,
    KePayload,
    NotifyPayload,
    Payload,
    SaPayload,
    TrafficSelector,
    TsPayload,
)
from afbr.ipsec.ike_proposals import (
    AlgorithmSuite,
    DhGroup,
    EncrId,
    Proposal,
    Transform,
    TransformType,
    build_proposals,
    select_proposal,
    suite_of_reply,
)
from afbr.ipsec.ike_sa_state import IkeSaRecord


def new_child_spi(sa: IkeSaRecord) -> int:
    """A fresh inbound ESP SPI (RFC 4303 §2.1: 1-255 are reserved)."""
    while True:
        spi = int.from_bytes(sa.random(4), "big")
        if spi >= 256 and spi not in sa.children:
            return spi


def offered_suites(
    sa: IkeSaRecord, pfs_group: DhGroup | None, rekeying: AlgorithmSuite | None = None
) -> tuple[AlgorithmSuite, ...]:
    """What a CHILD SA request offers.  A rekey offers the old SA's algorithms first and never
    falls back from encryption to integrity-only ESP (no downgrade by rekeying)."""
    suites = sa.config.esp_proposals
    if rekeying is not None:
        old = rekeying.with_dh(DhGroup.NONE)
        null = old.encryption == EncrId.ENCR_NULL
        suites = (
            old,
            *(s for s in suites if s != old and (s.encryption == EncrId.ENCR_NULL) == null),
        )
    if pfs_group is not None:
        suites = tuple(s.with_dh(pfs_group) for s in suites)
    return suites


def child_offer(
    sa: IkeSaRecord,
    spi: int,
    suites: tuple[AlgorithmSuite, ...],
    selectors: tuple[tuple[TrafficSelector, ...], tuple[TrafficSelector, ...]] | None = None,
    pfs_optional: bool = False,
) -> tuple[Payload, ...]:
    """SA, TSi, TSr [, USE_TRANSPORT_MODE] for a CHILD SA request.  With `pfs_optional` each
    proposal also lists DH group NONE: the responder may take our KE or leave it."""
    local_ts, remote_ts = selectors or (sa.config.local_ts, sa.config.remote_ts)
    proposals = build_proposals(suites, ProtocolId.ESP, spi.to_bytes(4, "big"))
    if pfs_optional:
        no_dh = Transform(TransformType.DH, DhGroup.NONE)
        proposals = tuple(
            Proposal(p.number, p.protocol, p.spi, (*p.transforms[:-1], no_dh, p.transforms[-1]))
            for p in proposals
        )
    payloads: list[Payload] = [
        SaPayload(proposals),
        TsPayload(PayloadType.TSI, local_ts),
        TsPayload(PayloadType.TSR, remote_ts),
    ]
    if sa.config.mode == IpsecMode.TRANSPORT:
        payloads.insert(0, NotifyPayload(NotifyType.USE_TRANSPORT_MODE))  # RFC 7296 §1.3.1
    return tuple(payloads)


def _child_parts(message: IkeMessage) -> tuple[SaPayload, TsPayload, TsPayload]:
    sa_payload = message.first(PayloadType.SA)
    ts_i = message.first(PayloadType.TSI)
    ts_r = message.first(PayloadType.TSR)
    if not (
        isinstance(sa_payload, SaPayload)
        and isinstance(ts_i, TsPayload)
        and isinstance(ts_r, TsPayload)
    ):
        raise IkeError("CHILD SA without SA, TSi and TSr", NotifyType.INVALID_SYNTAX)
    return sa_payload, ts_i, ts_r


def _mode_of(sa: IkeSaRecord, message: IkeMessage) -> IpsecMode:
    asked = message.notify(NotifyType.USE_TRANSPORT_MODE) is not None
    wanted = sa.config.mode == IpsecMode.TRANSPORT
    if asked != wanted:  # RFC 7296 §1.3.1: both must agree, afbr's policy is fixed per peer
        raise IkeError("IPsec mode mismatch", NotifyType.NO_PROPOSAL_CHOSEN)
    return sa.config.mode


def _make_child(
    sa: IkeSaRecord,
    *,
    spis: tuple[int, int],
    suite: AlgorithmSuite,
    initiator: bool,
    nonces: tuple[bytes, bytes],
    selectors: tuple[tuple[TrafficSelector, ...], tuple[TrafficSelector, ...]],
    mode: IpsecMode,
    shared: bytes,
    now: float,
) -> ChildSa:
    if sa.keys is None or sa.suite is None or sa.suite.prf is None:
        raise IkeError("CHILD SA before IKE keys")
    keys = derive_child_keys(
        sa.suite.prf, sa.keys.sk_d, suite, nonce_i=nonces[0], nonce_r=nonces[1], shared=shared
    )
    timers = sa.config.timers
    jitter = timers.child_rekey * timers.rekey_jitter
    fraction = int.from_bytes(sa.random(2), "big") / 65535
    return ChildSa(
        inbound_spi=spis[0],
        outbound_spi=spis[1],
        suite=suite,
        keys=keys,
        exchange_initiator=initiator,
        local_ts=selectors[0],
        remote_ts=selectors[1],
        mode=mode,
        nonces=nonces,
        rekey_at=now + timers.child_rekey - jitter * fraction,
        expire_at=now + timers.child_lifetime,
    )


def respond_child(
    sa: IkeSaRecord, message: IkeMessage, nonces: tuple[bytes, bytes], shared: bytes, now: float
) -> tuple[tuple[Payload, ...], ChildSa]:
    """Responder: choose a proposal, narrow the selectors, derive keys."""
    sa_payload, ts_i, ts_r = _child_parts(message)
    mode = _mode_of(sa, message)
    dh_group = None
    ke = message.first(PayloadType.KE)
    if shared and isinstance(ke, KePayload) and ke.group in set(DhGroup):
        dh_group = DhGroup(ke.group)
    proposal, suite = select_proposal(
        sa_payload.proposals, sa.config.esp_proposals, ProtocolId.ESP, dh_group
    )
    if len(proposal.spi) != 4:
        raise IkeError("ESP SPI of wrong size", NotifyType.INVALID_SYNTAX)
    remote_ts = narrow(ts_i.selectors, sa.config.remote_ts)
    local_ts = narrow(ts_r.selectors, sa.config.local_ts)
    our_spi = new_child_spi(sa)
    peer_spi = int.from_bytes(proposal.spi, "big")
    child = _make_child(
        sa,
        spis=(our_spi, peer_spi),
        suite=suite,
        initiator=False,
        nonces=nonces,
        selectors=(local_ts, remote_ts),
        mode=mode,
        shared=shared,
        now=now,
    )
    answer = type(proposal)(
        proposal.number, proposal.protocol, our_spi.to_bytes(4, "big"), proposal.transforms
    )
    payloads: list[Payload] = [
        SaPayload((answer,)),
        TsPayload(PayloadType.TSI, remote_ts),
        TsPayload(PayloadType.TSR, local_ts),
    ]
    if mode == IpsecMode.TRANSPORT:
        payloads.insert(0, NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
    return tuple(payloads), child


def accept_child(
    sa: IkeSaRecord,
    message: IkeMessage,
    our_spi: int,
    *,
    nonces: tuple[bytes, bytes],
    dh: DhKeyPair | None,
    now: float,
    suites: tuple[AlgorithmSuite, ...] | None = None,
) -> ChildSa:
    """Initiator: check the responder's choice (among `suites`, what we offered) and derive
    keys."""
    error = message.error_notify()
    if error is not None:
        raise IkeError(f"CHILD SA refused: notify {error.notify_type}", _known(error.notify_type))
    sa_payload, ts_i, ts_r = _child_parts(message)
    mode = _mode_of(sa, message)
    offered = suites if suites is not None else sa.config.esp_proposals
    proposal, suite = suite_of_reply(sa_payload.proposals, offered, ProtocolId.ESP)
    shared = b""
    if suite.dh_group != DhGroup.NONE:  # the responder took our KE (RFC 7296 §1.3.1)
        ke = message.first(PayloadType.KE)
        if dh is None or not isinstance(ke, KePayload) or ke.group != dh.group:
            raise IkeError("PFS chosen without a matching KE", NotifyType.INVALID_SYNTAX)
        shared = shared_secret(dh, ke.data)
    if len(proposal.spi) != 4:
        raise IkeError("ESP SPI of wrong size", NotifyType.INVALID_SYNTAX)
    local_ts = check_narrowed(ts_i.selectors, sa.config.local_ts)
    remote_ts = check_narrowed(ts_r.selectors, sa.config.remote_ts)
    return _make_child(
        sa,
        spis=(our_spi, int.from_bytes(proposal.spi, "big")),
        suite=suite,
        initiator=True,
        nonces=nonces,
        selectors=(local_ts, remote_ts),
        mode=mode,
        shared=shared,
        now=now,
    )


def _known(notify_type: int) -> NotifyType:
    try:
        return NotifyType(notify_type)
    except ValueError:
        return NotifyType.NO_PROPOSAL_CHOSEN


def child_params(sa: IkeSaRecord, child: ChildSa) -> ChildSaParams:
    timers = sa.config.timers
    return child.params(
        sa.local_addr[0],
        sa.remote_addr[0],
        sa.udp_encapsulation,
        (timers.child_rekey, timers.child_lifetime),
    )


def install_child(sa: IkeSaRecord, child: ChildSa, *, responder: bool = False) -> None:
    sa.children[child.inbound_spi] = child
    sa.emit(ChildSaEstablished(sa.id, child_params(sa, child), responder=responder))
