"""Which paths of the softwire RIB are stale after a restart, and until when (RFC 4724 §4.2).

When the BGP speaker's sessions go away without a NOTIFICATION (afbr's ExaBGP restarts, or a
neighbor that has Graceful Restart goes down), the paths learnt from them are kept for
forwarding but marked stale, per neighbor and address family.  A path the neighbor announces
or withdraws again is no longer stale; End-of-RIB for the family removes those still stale
(RFC 4724 §4.2), and so does the stale timer when End-of-RIB never comes.

Pure bookkeeping: prefixes and times in, the prefixes to remove out.  `since=None` means the
clock starts at the next `expired(now)` (for an event that carries no time of its own).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from afbr.bgp.exabgp_events import Afi


@dataclass(slots=True)
class StaleSet:
    """The stale prefixes of one neighbor and family, and the timer that removes them."""

    prefixes: set[str]
    restart_time: float
    since: float | None

    def deadline(self) -> float | None:
        return None if self.since is None else self.since + self.restart_time


class StalePaths:
    """Stale prefixes keyed by (neighbor, family)."""

    def __init__(self) -> None:
        self._sets: dict[tuple[str, Afi], StaleSet] = {}

    def __len__(self) -> int:
        return sum(len(entry.prefixes) for entry in self._sets.values())

    def __bool__(self) -> bool:
        return bool(self._sets)

    def neighbors(self) -> set[str]:
        return {neighbor for neighbor, _ in self._sets}

    def mark(
        self,
        neighbor: str,
        afi: Afi,
        prefixes: Iterable[str],
        now: float | None,
        restart_time: float,
    ) -> None:
        """Mark `prefixes` stale; a second restart before the first is over restarts the clock."""
        entry = self._sets.get((neighbor, afi))
        if entry is None:
            self._sets[(neighbor, afi)] = StaleSet(set(prefixes), restart_time, now)
            return
        entry.prefixes.update(prefixes)
        entry.restart_time = restart_time
        entry.since = now

    def refreshed(self, neighbor: str, afi: Afi, prefixes: Iterable[str]) -> None:
        """The neighbor announced or withdrew these prefixes again: no longer stale."""
        entry = self._sets.get((neighbor, afi))
        if entry is None:
            return
        entry.prefixes.difference_update(prefixes)
        if not entry.prefixes:
            del self._sets[(neighbor, afi)]

    def end_of_rib(self, neighbor: str, afi: Afi) -> set[str]:
        """RFC 4724 §4.2: at End-of-RIB the prefixes still stale go; returns them."""
        entry = self._sets.pop((neighbor, afi), None)
        return set() if entry is None else entry.prefixes

    def forget(self, neighbor: str) -> None:
        """The neighbor's paths are gone another way (session down without Graceful Restart)."""
        for key in [key for key in self._sets if key[0] == neighbor]:
            del self._sets[key]

    def expired(self, now: float) -> list[tuple[str, set[str]]]:
        """Pop (neighbor, prefixes) whose stale timer ran out by `now`; start unstarted clocks."""
        out = []
        for key, entry in list(self._sets.items()):
            if entry.since is None:
                entry.since = now
            deadline = entry.deadline()
            if deadline is not None and deadline <= now:
                del self._sets[key]
                out.append((key[0], entry.prefixes))
        return out

    def next_deadline(self) -> float | None:
        """When the next stale timer runs out (None: no timer is running)."""
        deadlines = [d for entry in self._sets.values() if (d := entry.deadline()) is not None]
        return min(deadlines, default=None)
