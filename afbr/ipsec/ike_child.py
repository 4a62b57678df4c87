"""CHILD SA records kept by an IKE SA, traffic selector narrowing (RFC 7296 §2.9)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum

from afbr.ipsec.ike_config import IpsecMode
from afbr.ipsec.ike_constants import NotifyType
from afbr.ipsec.ike_crypto import ChildKeys
from afbr.ipsec.ike_errors import IkeError
from afbr.ipsec.ike_events import ChildSaParams, EspSaKeys
from afbr.ipsec.ike_payloads import TrafficSelector
from afbr.ipsec.ike_proposals import AlgorithmSuite


class ChildState(Enum):
    INSTALLED = "installed"
    REKEYING = "rekeying"  # we sent a CREATE_CHILD_SA with REKEY_SA for it
    REKEYED = "rekeyed"  # replaced; waiting for its delete
    DELETING = "deleting"  # we sent its delete


@dataclass(slots=True)
class ChildSa:
    """One ESP SA pair.  `exchange_initiator`: we started the exchange that made it, so the
    initiator-to-responder keys (RFC 7296 §2.17) are our outbound ones."""

    inbound_spi: int
    outbound_spi: int
    suite: AlgorithmSuite
    keys: ChildKeys
    exchange_initiator: bool
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    mode: IpsecMode
    nonces: tuple[bytes, bytes]
    rekey_at: float
    expire_at: float
    state: ChildState = ChildState.INSTALLED

    def params(
        self,
        local_ip: str,
        remote_ip: str,
        udp_ports: tuple[int, int] | None,
        lifetimes: tuple[float, float],
    ) -> ChildSaParams:
        k = self.keys
        ours = (k.encr_i, k.integ_i) if self.exchange_initiator else (k.encr_r, k.integ_r)
        theirs = (k.encr_r, k.integ_r) if self.exchange_initiator else (k.encr_i, k.integ_i)
        return ChildSaParams(
            inbound=EspSaKeys(self.inbound_spi, theirs[0], theirs[1], remote_ip, local_ip),
            outbound=EspSaKeys(self.outbound_spi, ours[0], ours[1], local_ip, remote_ip),
            algorithms=self.suite,
            mode=self.mode,
            local_ts=self.local_ts,
            remote_ts=self.remote_ts,
            udp_encapsulation=udp_ports,
            soft_lifetime=lifetimes[0],
            hard_lifetime=lifetimes[1],
        )


def _intersect(a: TrafficSelector, b: TrafficSelector) -> TrafficSelector | None:
    if a.start.version != b.start.version:
        return None
    if a.ip_protocol and b.ip_protocol and a.ip_protocol != b.ip_protocol:
        return None
    start = max(int(a.start), int(b.start))
    end = min(int(a.end), int(b.end))
    low = max(a.start_port, b.start_port)
    high = min(a.end_port, b.end_port)
    if start > end or low > high:
        return None
    return TrafficSelector(
        ipaddress.ip_address(start) if a.start.version == 4 else ipaddress.IPv6Address(start),
        ipaddress.ip_address(end) if a.start.version == 4 else ipaddress.IPv6Address(end),
        a.ip_protocol or b.ip_protocol,
        low,
        high,
    )


def narrow(
    proposed: tuple[TrafficSelector, ...], allowed: tuple[TrafficSelector, ...]
) -> tuple[TrafficSelector, ...]:
    """The responder's narrowing (RFC 7296 §2.9): what both sides allow; TS_UNACCEPTABLE if
    nothing is left."""
    result = []
    for ts in proposed:
        for limit in allowed:
            common = _intersect(ts, limit)
            if common is not None and common not in result:
                result.append(common)
    if not result:
        raise IkeError("traffic selectors do not overlap", NotifyType.TS_UNACCEPTABLE)
    return tuple(result)


def check_narrowed(
    answer: tuple[TrafficSelector, ...], proposed: tuple[TrafficSelector, ...]
) -> tuple[TrafficSelector, ...]:
    """The initiator's check: each selector the responder chose lies within what we proposed."""
    if not answer or not all(any(p.contains(ts) for p in proposed) for ts in answer):
        raise IkeError("responder chose selectors we did not propose", NotifyType.TS_UNACCEPTABLE)
    return answer
