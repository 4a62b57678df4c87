"""INFORMATIONAL exchanges: deletes and liveness checks (RFC 7296 §1.4, §2.4)."""

from __future__ import annotations

import logging

from afbr.ipsec.ike_child import ChildState
from afbr.ipsec.ike_config import Address
from afbr.ipsec.ike_constants import ExchangeType, ProtocolId
from afbr.ipsec.ike_events import ChildSaDeleted
from afbr.ipsec.ike_payloads import DeletePayload, IkeMessage, NotifyPayload, Payload
from afbr.ipsec.ike_sa_state import IkeSaRecord, IkeState, PendingRequest

log = logging.getLogger(__name__)


def request_child_delete(
    sa: IkeSaRecord, inbound_spi: int, now: float, reason: str = "deleted"
) -> None:
    child = sa.children.get(inbound_spi)
    if child is None or child.state == ChildState.DELETING:
        return
    child.state = ChildState.DELETING

    def build(sa: IkeSaRecord, now: float) -> tuple[Payload, ...] | None:
        if inbound_spi not in sa.children:
            return None
        return (DeletePayload(ProtocolId.ESP, (inbound_spi.to_bytes(4, "big"),)),)

    def on_response(sa: IkeSaRecord, message: IkeMessage, now: float) -> None:
        holder = sa.holder_of(inbound_spi)  # the IKE SA may have been rekeyed meanwhile
        gone = holder.children.pop(inbound_spi, None) if holder is not None else None
        if holder is not None and gone is not None:
            holder.emit(ChildSaDeleted(holder.id, gone.inbound_spi, gone.outbound_spi, reason))

    sa.queue_request(PendingRequest(ExchangeType.INFORMATIONAL, build, on_response, True), now)


def request_ike_delete(sa: IkeSaRecord, now: float, reason: str = "deleted") -> None:
    if sa.state not in (IkeState.ESTABLISHED,):
        sa.close(reason, now)
        return
    sa.transition(IkeState.DELETING)
    sa.queue.clear()

    def build(sa: IkeSaRecord, now: float) -> tuple[Payload, ...]:
        return (DeletePayload(ProtocolId.IKE),)

    def on_response(sa: IkeSaRecord, message: IkeMessage, now: float) -> None:
        sa.close(reason, now)

    sa.queue_request(PendingRequest(ExchangeType.INFORMATIONAL, build, on_response), now)


def request_liveness(sa: IkeSaRecord, now: float) -> None:
    """An empty INFORMATIONAL request; no answer after the retransmissions closes the SA."""
    if sa.state != IkeState.ESTABLISHED or sa.outstanding is not None or sa.queue:
        return

    def build(sa: IkeSaRecord, now: float) -> tuple[Payload, ...]:
        return ()

    def on_response(sa: IkeSaRecord, message: IkeMessage, now: float) -> None:
        return

    sa.queue_request(PendingRequest(ExchangeType.INFORMATIONAL, build, on_response), now)


def handle_informational(
    sa: IkeSaRecord, message: IkeMessage, addr: Address, now: float
) -> tuple[Payload, ...]:
    """The peer's INFORMATIONAL request: deletes, notifies, or an empty liveness check."""
    answer: list[bytes] = []
    for payload in message.payloads:
        if isinstance(payload, NotifyPayload):
            log.info("IKE SA %s: peer notifies %d", sa.id, payload.notify_type)
        if not isinstance(payload, DeletePayload):
            continue
        if payload.protocol == ProtocolId.IKE:
            if sa.ike_collision is not None and sa.superseded_at is None:
                # RFC 7296 §2.8.2: the peer never saw our rekey; its new SA is the survivor
                sa.hand_over_children(sa.ike_collision, now)
            sa.close("deleted by peer", now)  # RFC 7296 §1.4.1: answer with an empty message
            return ()
        if payload.protocol != ProtocolId.ESP:
            continue
        for spi_bytes in payload.spis:
            spi = int.from_bytes(spi_bytes, "big")
            child = next((c for c in sa.children.values() if c.outbound_spi == spi), None)
            if child is None:
                continue
            if child.state != ChildState.DELETING:  # simultaneous deletes: no SPI in answer
                answer.append(child.inbound_spi.to_bytes(4, "big"))
            del sa.children[child.inbound_spi]
            sa.emit(ChildSaDeleted(sa.id, child.inbound_spi, child.outbound_spi, "deleted by peer"))
    return (DeletePayload(ProtocolId.ESP, tuple(answer)),) if answer else ()
