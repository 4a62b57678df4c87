"""afbr's BGP control plane, independent of how lines reach it: ExaBGP JSON in, commands out.

`BgpControlPlane` owns the API parser, the softwire RIB and what the local AFBR has told
ExaBGP to announce.  `feed_line()` takes one line from ExaBGP and returns the command lines
to write back; the prefixes whose best path changed accumulate in `pending_changes` for the
encap manager (or the RIB dump) to collect.  No I/O here: the ExaBGP plugin process and, later,
the daemon drive it.

Graceful Restart (RFC 4724), what the driver calls:
- `connection_lost(now)` when the connection to ExaBGP goes away (ExaBGP died or is being
  restarted): every path is kept for forwarding, marked stale; nothing is withdrawn.
- `sweep_stale(now)` now and then (each second, or at `rib.next_stale_deadline()`): removes
  stale paths whose neighbor's restart time passed without End-of-RIB; returns the changed
  prefixes (also added to `pending_changes`).
Stale paths a neighbor does not send again before its End-of-RIB are removed as it arrives
(changes in `pending_changes`, as for a withdraw); an identical re-announcement is no change.
A neighbor with Graceful Restart configured that goes down without a NOTIFICATION has its
paths kept stale the same way (RFC 4724 §4.2, its timer starts at the next sweep).  On a
neighbor coming up, afbr announces its prefixes and then End-of-RIB (ExaBGP's `manual-eor`).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from afbr.bgp.exabgp_api import CommandAck, ExabgpApiParser
from afbr.bgp.exabgp_commands import (
    LocalAdvertisement,
    advertisement_commands,
    announce_commands,
    local_advertisements,
)
from afbr.bgp.exabgp_events import (
    Afi,
    ApiEvent,
    ExabgpShutdown,
    NeighborDown,
    NeighborUp,
    PeerOpen,
)
from afbr.bgp.session_config import DEFAULT_RESTART_TIME, BgpSessionConfig
from afbr.bgp.softwire_rib import RibPath, SoftwireRib, TunnelEncapDecoder

SNAPSHOT_FORMAT = 1


@dataclass(frozen=True, slots=True)
class NeighborRecord:
    """What ExaBGP last told about one neighbor's session, for `afbr neighbors`.

    `since` is when (on the control plane's `clock`, monotonic) it saw the last change (up,
    down, or ExaBGP's connection lost).  `last_down_reason` is the reason ExaBGP gave when
    the session last went down (e.g. "notification received (6,3)", "closing connection"),
    as it gave it; a failed connection attempt after that replaces it only with a
    NOTIFICATION.  `peer_as` and `local_address` come from the last "up"; `families` from
    the neighbor's last OPEN (only seen when afbr asks ExaBGP for OPENs, i.e. with Graceful
    Restart).  The negotiated hold time and other capabilities are not in afbr's events
    (the API parser keeps only the OPEN's families), so they are not recorded here.
    """

    up: bool = False
    since: float | None = None
    last_down_reason: str | None = None
    peer_as: int | None = None
    local_address: str | None = None
    families: tuple[str, ...] | None = None


class BgpControlPlane:
    """Parser + softwire RIB + local announcements, driven line by line."""

    def __init__(
        self,
        config: BgpSessionConfig,
        decode: TunnelEncapDecoder | None = None,
        observers: Sequence[Callable[[ApiEvent], None]] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.observers = tuple(observers)  # e.g. the side-car's mesh view: sees every event
        self.parser = ExabgpApiParser()
        self.rib = SoftwireRib(config.core_family, decode)
        self.advertised: dict[int, LocalAdvertisement] = local_advertisements(config)
        self.pending_changes: set[str] = set()
        self.acks: Counter[str] = Counter()
        self.shutdown = False
        self.generation = 0  # bumped whenever the RIB's best paths change
        self.peer_families: dict[str, frozenset[Afi]] = {}  # from each neighbor's OPEN
        self.clock = clock  # for neighbor_records' times only; the RIB takes `now`
        self.neighbor_records: dict[str, NeighborRecord] = {}  # what ExaBGP said, per neighbor

    def startup_commands(self) -> list[str]:
        """Ask established neighbors for their routes again (RFC 2918).

        A plugin that ExaBGP respawned finds its sessions already up, and ExaBGP does not
        replay what it received; a route refresh rebuilds the RIB.  With no session up yet
        (the usual start) ExaBGP answers `error` and nothing is sent.
        """
        return ["announce route-refresh ipv4 unicast", "announce route-refresh ipv6 unicast"]

    def feed_line(self, line: str | bytes) -> list[str]:
        """Process one line from ExaBGP; return the commands to send it."""
        commands: list[str] = []
        for event in self.parser.feed(line):
            if isinstance(event, CommandAck):
                self.acks["done" if event.ok else "error"] += 1
                continue
            commands += self.apply(event)
        return commands

    def apply(self, event: ApiEvent) -> list[str]:
        for observe in self.observers:
            observe(event)
        self._record(event)
        if isinstance(event, PeerOpen):
            self.peer_families[event.neighbor] = event.families
        if isinstance(event, NeighborDown) and self._keeps_stale(event):
            self.rib.mark_stale(None, self.restart_time, event.neighbor)  # RFC 4724 §4.2
            return []
        self._changed(self.rib.apply(event))
        if isinstance(event, NeighborUp):
            return self.announce_to(event.neighbor)
        if isinstance(event, ExabgpShutdown):
            self.shutdown = True
        return []

    def _record(self, event: ApiEvent) -> None:
        """Per-neighbor bookkeeping for `afbr neighbors`: state changes, reasons, OPEN."""
        if isinstance(event, NeighborUp | NeighborDown | PeerOpen):
            old = self.neighbor_records.get(event.neighbor, NeighborRecord())
        if isinstance(event, NeighborUp):
            self.neighbor_records[event.neighbor] = replace(
                old,
                up=True,
                since=self.clock(),
                peer_as=event.peer_as,
                local_address=event.local_address,
            )
        elif isinstance(event, NeighborDown):
            # A down after a down (a connection attempt that failed) changes no state, and
            # its reason ("closing connection") hides no earlier one but a NOTIFICATION.
            since = self.clock() if old.up or old.since is None else old.since
            keep = old.last_down_reason is not None and not old.up
            reason = event.reason if event.reason.startswith("notification") or not keep else None
            self.neighbor_records[event.neighbor] = replace(
                old, up=False, since=since, last_down_reason=reason or old.last_down_reason
            )
        elif isinstance(event, PeerOpen):
            names = tuple(f"{afi.name.lower()}/unicast" for afi in sorted(event.families))
            self.neighbor_records[event.neighbor] = replace(old, families=names)

    def announce_to(self, neighbor: str) -> list[str]:
        """Every local prefix, to one neighbor that just came up (ExaBGP keeps them after).

        Then End-of-RIB when Graceful Restart is on for it (RFC 4724 §4.1: the rendered config
        leaves End-of-RIB to us, so it follows our routes), for each unicast family both we
        (always both) and its OPEN offered: none when its OPEN was not seen.
        """
        commands = []
        for version in sorted(self.advertised):
            advert = self.advertised[version]
            commands += [
                f"neighbor {neighbor} {command}"
                for command in announce_commands(advert, advert.prefixes)
            ]
        if self.restart_time(neighbor):
            families = self.peer_families.get(neighbor, frozenset())
            commands += [
                f"neighbor {neighbor} announce eor {afi.name.lower()} unicast"
                for afi in sorted(families)
            ]
        return commands

    # -- Graceful Restart (RFC 4724) ------------------------------------------------------------

    def connection_lost(self, now: float) -> None:
        """ExaBGP's connection went away: keep every path for forwarding, marked stale."""
        self.rib.mark_stale(now, self.restart_time)
        for neighbor, record in self.neighbor_records.items():
            if record.up:  # the sessions went with ExaBGP
                self.neighbor_records[neighbor] = replace(record, up=False, since=self.clock())

    def sweep_stale(self, now: float) -> list[str]:
        """Remove stale paths whose restart time ran out; the prefixes that changed."""
        changed = self.rib.sweep_stale(now)
        self._changed(changed)
        return changed

    def restart_time(self, neighbor: str) -> int:
        """The Graceful Restart time configured for a neighbor (0: off)."""
        for configured in self.config.neighbors:
            if str(configured.address) == neighbor:
                return configured.graceful_restart
        return DEFAULT_RESTART_TIME  # a neighbor no longer in the config: keep the default

    def _keeps_stale(self, event: NeighborDown) -> bool:
        # RFC 4724 §4.2: a NOTIFICATION ends the session for good (ExaBGP says
        # "notification sent (c,s)" / "notification received (c,s)").
        return bool(self.restart_time(event.neighbor)) and not event.reason.startswith(
            "notification"
        )

    def _changed(self, changed: list[str]) -> None:
        if changed:
            self.pending_changes.update(changed)
            self.generation += 1

    def update_config(self, config: BgpSessionConfig) -> list[str]:
        """A new local config: the announce/withdraw commands for the difference."""
        new = local_advertisements(config)
        commands = advertisement_commands(self.advertised, new)
        self.config = config
        self.advertised = new
        return commands

    def converged(self) -> bool:
        """Every neighbor that is up has sent End-of-RIB for each family its OPEN offered
        (both unicast families when its OPEN was not seen) — RFC 4724 §2."""
        rib = self.rib
        both = frozenset({Afi.IPV4, Afi.IPV6})
        return all(
            rib.end_of_rib.get(n, set()) >= self.peer_families.get(n, both)
            for n in rib.neighbors_up
        )

    def take_changes(self) -> set[str]:
        changes, self.pending_changes = self.pending_changes, set()
        return changes

    def snapshot(self, now: float) -> dict[str, Any]:
        """A JSON-able view of the RIB: per prefix, its best path (shared dicts per path)."""
        described: dict[RibPath, dict[str, Any]] = {}
        prefixes: dict[str, dict[str, Any]] = {}
        for prefix, path in self.rib.best_paths():
            view = described.get(path)
            if view is None:
                view = described[path] = describe_path(path)
            prefixes[prefix] = view
        return {**self._summary(now), "prefixes": prefixes}

    def snapshot_json(self, now: float) -> str:
        """`snapshot(now)` as compact JSON text."""
        return "".join(self.snapshot_json_chunks(now))

    def snapshot_json_chunks(self, now: float, batch: int = 10_000) -> Iterator[str]:
        """`snapshot(now)` as JSON text in pieces (a file write each, so memory stays flat).

        Each distinct path is serialised once.  Prefixes go in quotes as they are: the parser
        admits only `[0-9A-Fa-f.:]+/n` (see exabgp_api).
        """
        summary = json.dumps(self._summary(now), separators=(",", ":"))
        yield summary[:-1] + ',"prefixes":{'
        fragments: dict[RibPath, str] = {}
        parts: list[str] = []
        separator = ""
        for prefix, path in self.rib.best_paths():
            fragment = fragments.get(path)
            if fragment is None:
                fragment = fragments[path] = json.dumps(describe_path(path), separators=(",", ":"))
            parts.append(f'"{prefix}":{fragment}')
            if len(parts) >= batch:
                yield separator + ",".join(parts)
                separator = ","
                parts.clear()
        if parts:
            yield separator + ",".join(parts)
        yield "}}"

    def _summary(self, now: float) -> dict[str, Any]:
        return {
            "format": SNAPSHOT_FORMAT,
            "time": now,
            "generation": self.generation,
            "core_family": self.config.core_family,
            "converged": self.rib.converged(),
            "neighbors_up": sorted(self.rib.neighbors_up),
            "end_of_rib": {
                n: sorted(a.name.lower() for a in afis)
                for n, afis in sorted(self.rib.end_of_rib.items())
            },
            "counters": dict(self.rib.counters),
            "stale_paths": len(self.rib.stale),
            "api_errors": dict(self.parser.errors),
            "api_ignored": dict(self.parser.ignored),
            "command_acks": dict(self.acks),
            "advertised": {
                f"ipv{v}": sorted(a.prefixes) for v, a in sorted(self.advertised.items())
            },
        }


def describe_path(path: RibPath) -> dict[str, Any]:
    attrs = path.attributes
    return {
        "neighbor": path.neighbor,
        "next_hop": str(path.next_hop),
        "endpoint": str(path.endpoint),
        "local_pref": attrs.local_pref,
        "as_path_length": attrs.as_path_length,
        "originator_id": None if attrs.originator_id is None else str(attrs.originator_id),
        "tunnel_encap": None if attrs.tunnel_encap is None else attrs.tunnel_encap.hex(),
        "tunnel_types": [int(t.tunnel.tunnel_type) for t in path.tunnels],
        "tunnels": [
            {"type": int(t.tunnel.tunnel_type), "endpoint": str(t.endpoint)} for t in path.tunnels
        ],
        "problems": list(path.problems),
    }
