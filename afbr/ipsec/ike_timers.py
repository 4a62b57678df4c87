"""Timers of an IKE SA: retransmission with backoff (RFC 7296 §2.1), half-open expiry, liveness
checks (§2.4), NAT keepalives (RFC 3948 §4), CHILD and IKE SA rekeying and hard expiry."""

from __future__ import annotations

from afbr.ipsec.ike_child import ChildState
from afbr.ipsec.ike_events import ChildSaDeleted
from afbr.ipsec.ike_informational import request_ike_delete, request_liveness
from afbr.ipsec.ike_rekey import request_child_rekey, request_ike_rekey, request_new_child
from afbr.ipsec.ike_sa_state import IkeSaRecord, IkeState

SUPERSEDED_GRACE = 30.0  # seconds a rekeyed IKE SA waits for the peer to delete it
CHILD_RETRY = 30.0  # seconds between attempts to re-create a missing CHILD SA


def next_deadline(sa: IkeSaRecord) -> float | None:
    if sa.state == IkeState.CLOSED:
        return None
    timers = sa.config.timers
    deadlines: list[float] = []
    if sa.outstanding is not None:
        deadlines.append(sa.outstanding.next_retransmit)
    if sa.state in (IkeState.HALF_OPEN, IkeState.IDLE) and not sa.is_initiator:
        deadlines.append(sa.created_at + timers.half_open_timeout)
    if sa.state == IkeState.ESTABLISHED and sa.superseded_at is not None:
        deadlines.append(sa.superseded_at + SUPERSEDED_GRACE)
    elif sa.state == IkeState.ESTABLISHED:
        if sa.outstanding is None:
            deadlines.append(sa.last_received + timers.dpd_delay)
        if sa.nat_local:
            deadlines.append(sa.last_sent + timers.nat_keepalive)
        if sa.rekey_at is not None:
            deadlines.append(sa.rekey_at)
        if _wants_child(sa):
            deadlines.append(sa.child_retry_at)
        for child in sa.children.values():
            deadlines.append(child.expire_at)
            if child.state == ChildState.INSTALLED:
                deadlines.append(child.rekey_at)
    return min(deadlines) if deadlines else None


def _retransmit(sa: IkeSaRecord, now: float) -> None:
    out = sa.outstanding
    if out is None or now < out.next_retransmit:
        return
    timers = sa.config.timers
    if out.tries > timers.retransmit_tries:
        sa.close("peer unreachable: no answer to retransmissions", now)
        return
    sa.send_raw(out.data)
    out.next_retransmit = now + timers.retransmit_timeout * timers.retransmit_base**out.tries
    out.tries += 1


def run_timers(sa: IkeSaRecord, now: float) -> None:
    if sa.state == IkeState.CLOSED:
        return
    timers = sa.config.timers
    _retransmit(sa, now)
    if _closed(sa):
        return
    if sa.state in (IkeState.HALF_OPEN, IkeState.IDLE) and not sa.is_initiator:
        if now >= sa.created_at + timers.half_open_timeout:
            sa.close("half-open SA timed out", now)
        return
    if sa.state != IkeState.ESTABLISHED:
        return
    if sa.superseded_at is not None:  # rekeyed: only wait for the peer's delete, then send ours
        if now >= sa.superseded_at + SUPERSEDED_GRACE and sa.outstanding is None:
            request_ike_delete(sa, now)
        return
    if sa.outstanding is None and now >= sa.last_received + timers.dpd_delay:
        request_liveness(sa, now)
    if sa.nat_local and now >= sa.last_sent + timers.nat_keepalive:
        sa.send_keepalive()
    for child in list(sa.children.values()):
        if now >= child.expire_at:  # hard lifetime: the kernel drops it, so do we
            del sa.children[child.inbound_spi]
            sa.emit(ChildSaDeleted(sa.id, child.inbound_spi, child.outbound_spi, "expired"))
        elif child.state == ChildState.INSTALLED and now >= child.rekey_at:
            request_child_rekey(sa, child.inbound_spi, now)
    if sa.rekey_at is not None and now >= sa.rekey_at:
        sa.rekey_at = None
        request_ike_rekey(sa, now)
    if _wants_child(sa) and now >= sa.child_retry_at:
        # the CHILD SA got lost (expired, refused, peer forgot it): the tunnel needs one
        sa.child_retry_at = now + CHILD_RETRY
        request_new_child(sa, now)


def _closed(sa: IkeSaRecord) -> bool:
    return sa.state == IkeState.CLOSED


def _wants_child(sa: IkeSaRecord) -> bool:
    return (
        sa.is_initiator
        and sa.keep_child
        and not sa.children
        and sa.superseded_at is None
        and sa.outstanding is None
        and not sa.queue
    )
