"""The activity RFC 5619 §3.4.1 asks an AFBR to log that afbr's other parts only count.

- BGP sessions up and down (from the control plane's events);
- filtered packets: the decapsulation filter's and access control's drop counters, read
  periodically, logged as the increase since the last reading (one line per counter that grew,
  so a flood gives one line per interval, not one per packet).

SAs up/down/rekeyed and IKE authentication failures are logged by the IKEv2 agent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from afbr.bgp.exabgp_events import ApiEvent, NeighborDown, NeighborUp
from afbr.dataplane.nft_ruleset import (
    SPOOF_COUNTER_PREFIX,
    UNKNOWN_BGP_COUNTER,
    UNKNOWN_ENDPOINT_COUNTER,
)

log = logging.getLogger("afbr.activity")

DROP_LOG_INTERVAL = 10.0  # seconds between readings of the drop counters
WHY = {
    UNKNOWN_ENDPOINT_COUNTER: "tunnel packets from an address that is no known AFBR endpoint",
    UNKNOWN_BGP_COUNTER: "BGP packets from an address that is no configured neighbor",
}


def log_session_event(event: ApiEvent) -> None:
    """Control-plane observer: BGP sessions up and down."""
    if isinstance(event, NeighborUp):
        log.info(
            "BGP session with %s up (AS %d)",
            event.neighbor,
            event.peer_as,
            extra={"event": "bgp-up"},
        )
    elif isinstance(event, NeighborDown):
        log.warning(
            "BGP session with %s down: %s",
            event.neighbor,
            event.reason or "no reason given",
            extra={"event": "bgp-down"},
        )


class FilteredPackets:
    """Turns successive readings of the drop counters into log lines of what was filtered."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def record(self, counters: Mapping[str, int]) -> list[tuple[str, int]]:
        """Log and return (counter, packets dropped since the last reading) for each that grew.
        The first reading (e.g. counters kept from before a restart) is the baseline."""
        first = not self.last
        grown = []
        for name, packets in sorted(counters.items()):
            if not (name.startswith(SPOOF_COUNTER_PREFIX) or name in WHY):
                continue
            before = self.last.get(name, packets if first else 0)
            self.last[name] = packets
            if packets > before:
                grown.append((name, packets - before))
            # a counter that went down was reset (table rewritten): its new value is the base
        for name, added in grown:
            why = WHY.get(name) or (
                "decapsulated packets with an inner source the AFBR behind softwire "
                f"{name.removeprefix(SPOOF_COUNTER_PREFIX)} did not advertise"
            )
            log.warning("filtered %d %s", added, why, extra={"event": "filtered"})
        return grown
