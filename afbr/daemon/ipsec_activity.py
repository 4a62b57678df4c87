"""RFC 5619 §3.4.1: the IKE activity afbr logs — IKE and CHILD SAs up, rekeyed and down, and
authentication failures — each line with its `event` and the peer, SPIs and reason as fields."""

from __future__ import annotations

import logging

from afbr.ipsec import (
    AuthenticationFailed,
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaParams,
    ChildSaRekeyed,
    IkeEvent,
    IkeSaDeleted,
    IkeSaEstablished,
)

log = logging.getLogger("afbr.ipsec")


def log_ike_event(event: IkeEvent) -> None:
    if isinstance(event, IkeSaEstablished):
        log.info(
            "IKE SA up with %s",
            event.remote_addr[0],
            extra={
                "event": "ike-up",
                "peer": event.remote_addr[0],
                "ike_sa": str(event.ike_sa),
            },
        )
    elif isinstance(event, ChildSaEstablished):
        _log_child("CHILD SA up with %s (SPIs in %08x out %08x)", "sa-up", event.child)
    elif isinstance(event, ChildSaRekeyed):
        _log_child("CHILD SA with %s rekeyed (SPIs in %08x out %08x)", "sa-rekeyed", event.child)
    elif isinstance(event, ChildSaDeleted):
        log.info(
            "CHILD SA %08x down: %s",
            event.inbound_spi,
            event.reason,
            extra={"event": "sa-down", "spi_in": f"{event.inbound_spi:08x}"},
        )
    elif isinstance(event, IkeSaDeleted):
        log.info(
            "IKE SA %s down: %s",
            event.ike_sa,
            event.reason,
            extra={"event": "ike-down", "ike_sa": str(event.ike_sa), "reason": event.reason},
        )
    elif isinstance(event, AuthenticationFailed):
        log.warning(
            "IKE authentication with %s failed: %s",
            event.remote_addr[0],
            event.reason,
            extra={"event": "auth-failed", "peer": event.remote_addr[0]},
        )


def _log_child(message: str, kind: str, child: ChildSaParams) -> None:
    inbound, outbound = child.inbound, child.outbound
    log.info(
        message,
        inbound.source,
        inbound.spi,
        outbound.spi,
        extra={
            "event": kind,
            "peer": inbound.source,
            "spi_in": f"{inbound.spi:08x}",
            "spi_out": f"{outbound.spi:08x}",
        },
    )
