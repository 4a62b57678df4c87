"""afbr's BGP control plane, independent of how lines reach it: ExaBGP JSON in, commands out.

`BgpControlPlane` owns the API parser, the softwire RIB and what the local AFBR has told
ExaBGP to announce.  `feed_line()` takes one line from ExaBGP and returns the command lines
to write back; the prefixes whose best path changed accumulate in `pending_changes` for the
encap manager (or the RIB dump) to collect.  No I/O here: the ExaBGP plugin process and, later,
the daemon drive it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from afbr.bgp.exabgp_api import CommandAck, ExabgpApiParser
from afbr.bgp.exabgp_commands import (
    LocalAdvertisement,
    advertisement_commands,
    announce_commands,
    local_advertisements,
)
from afbr.bgp.exabgp_events import ApiEvent, ExabgpShutdown, NeighborUp
from afbr.bgp.session_config import BgpSessionConfig
from afbr.bgp.softwire_rib import RibPath, SoftwireRib, TunnelEncapDecoder

SNAPSHOT_FORMAT = 1


class BgpControlPlane:
    """Parser + softwire RIB + local announcements, driven line by line."""

    def __init__(
        self,
        config: BgpSessionConfig,
        decode: TunnelEncapDecoder | None = None,
        observers: Sequence[Callable[[ApiEvent], None]] = (),
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
        changed = self.rib.apply(event)
        if changed:
            self.pending_changes.update(changed)
            self.generation += 1
        if isinstance(event, NeighborUp):
            return self.announce_to(event.neighbor)
        if isinstance(event, ExabgpShutdown):
            self.shutdown = True
        return []

    def announce_to(self, neighbor: str) -> list[str]:
        """Every local prefix, to one neighbor that just came up (ExaBGP keeps them after)."""
        commands = []
        for version in sorted(self.advertised):
            advert = self.advertised[version]
            commands += [
                f"neighbor {neighbor} {command}"
                for command in announce_commands(advert, advert.prefixes)
            ]
        return commands

    def update_config(self, config: BgpSessionConfig) -> list[str]:
        """A new local config: the announce/withdraw commands for the difference."""
        new = local_advertisements(config)
        commands = advertisement_commands(self.advertised, new)
        self.config = config
        self.advertised = new
        return commands

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
