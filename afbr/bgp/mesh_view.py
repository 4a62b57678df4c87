"""The whole mesh as a route-reflector side-car sees it, and its audit (pure, no I/O).

A side-car (`role: sidecar`) peers with a route reflector and keeps, per remote AFBR, what it
announces: its client prefixes, next hop, SW-Encap set (tunnel types) and IPsec Tunnel
Authenticator.  Unlike the forwarding RIB it keeps what is *wrong* too, because auditing it is
the point:

- a path whose next hop is not of the core's family (RFC 5565 §4, §9);
- a malformed Tunnel Encapsulation attribute (RFC 9012 §13), or none at all;
- a missing authenticator where the mesh's policy needs one (RFC 5566 §4; RFC 5619 §4.4.2);
- two AFBRs claiming one client prefix (RFC 5565 §5: a prefix has one attachment).

A route reflector sends only its best path per prefix, so a conflict shows when the side-car
hears two AFBRs for one prefix from different neighbors (two reflectors, or full-mesh peers);
ADD-PATH (RFC 7911) from the reflector would show every claim and is not negotiated yet.

An AFBR is identified by its ORIGINATOR_ID when a reflector set one (RFC 4456 §8), else by
its next hop: two route reflectors reflecting one AFBR's route give one entry, not two.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from afbr.bgp.exabgp_events import (
    ApiEvent,
    IPAddress,
    NeighborDown,
    PathAttributes,
    RouteAnnounce,
    RouteWithdraw,
)
from afbr.bgp.softwire_rib import core_endpoint
from afbr.bgp.tunnel_encap import TunnelEncapError, decode_tunnel_encap


@dataclass(frozen=True)
class Announcement:
    """What one AFBR announces for a set of prefixes (shared by those prefixes)."""

    afbr: str
    next_hop: IPAddress
    tunnel_types: tuple[int, ...]
    authenticator: str | None  # hex of the RFC 5566 authenticator value, if any
    problems: tuple[str, ...]


@dataclass
class MeshView:
    """Fed with the same events as the RIB; answers what the mesh looks like."""

    core_family: int
    require_authenticator: bool = False
    # (neighbor, prefix) -> announcement: a neighbor's latest word on each prefix
    _routes: dict[tuple[str, str], Announcement] = field(default_factory=dict)
    _interned: dict[tuple[str, IPAddress, PathAttributes], Announcement] = field(
        default_factory=dict
    )
    counters: Counter[str] = field(default_factory=Counter)

    def apply(self, event: ApiEvent) -> None:
        if isinstance(event, RouteAnnounce):
            ann = self._announcement(event.next_hop, event.attributes)
            for prefix in event.prefixes:
                self._routes[(event.neighbor, prefix)] = ann
        elif isinstance(event, RouteWithdraw):
            for prefix in event.prefixes:
                self._routes.pop((event.neighbor, prefix), None)
        elif isinstance(event, NeighborDown):
            for key in [k for k in self._routes if k[0] == event.neighbor]:
                del self._routes[key]

    def _announcement(self, next_hop: IPAddress, attrs: PathAttributes) -> Announcement:
        afbr = str(attrs.originator_id) if attrs.originator_id is not None else str(next_hop)
        key = (afbr, next_hop, attrs)
        found = self._interned.get(key)
        if found is None:
            found = self._interned[key] = self._describe(afbr, next_hop, attrs)
        return found

    def _describe(self, afbr: str, next_hop: IPAddress, attrs: PathAttributes) -> Announcement:
        problems: list[str] = []
        if core_endpoint(next_hop, self.core_family) is None:
            problems.append(f"next hop {next_hop} is not an IPv{self.core_family} core address")
        types: tuple[int, ...] = ()
        authenticator = None
        if attrs.tunnel_encap is None:
            problems.append("no Tunnel Encapsulation attribute")
        else:
            try:
                decoded = decode_tunnel_encap(attrs.tunnel_encap)
            except TunnelEncapError as exc:
                problems.append(f"malformed Tunnel Encapsulation attribute: {exc}")
            else:
                types = tuple(int(t.tunnel_type) for t in decoded.tunnels)
                problems += [f"Tunnel Encapsulation: {w.reason}" for w in decoded.warnings]
                auths = [t.authenticator for t in decoded.tunnels if t.authenticator is not None]
                authenticator = auths[0].value.hex() if auths else None
        if self.require_authenticator and authenticator is None:
            problems.append("no IPsec Tunnel Authenticator (RFC 5566 §4) though policy needs one")
        for problem in problems:
            self.counters[problem.split(":")[0]] += 1
        return Announcement(afbr, next_hop, types, authenticator, tuple(problems))

    # -- queries ----------------------------------------------------------------------------

    def afbrs(self) -> dict[str, dict[str, Any]]:
        """Per AFBR: its prefixes, next hops, tunnel types, authenticator and problems."""
        out: dict[str, dict[str, Any]] = {}
        for (_neighbor, prefix), ann in self._routes.items():
            entry = out.setdefault(
                ann.afbr,
                {
                    "prefixes": set(),
                    "next_hops": set(),
                    "tunnel_types": set(),
                    "authenticator": None,
                    "problems": set(),
                },
            )
            entry["prefixes"].add(prefix)
            entry["next_hops"].add(str(ann.next_hop))
            entry["tunnel_types"].update(ann.tunnel_types)
            entry["authenticator"] = entry["authenticator"] or ann.authenticator
            entry["problems"].update(ann.problems)
        return {
            afbr: {k: sorted(v) if isinstance(v, set) else v for k, v in entry.items()}
            for afbr, entry in sorted(out.items())
        }

    def conflicts(self) -> dict[str, list[str]]:
        """Client prefixes claimed by more than one AFBR."""
        claims: dict[str, set[str]] = defaultdict(set)
        for (_neighbor, prefix), ann in self._routes.items():
            claims[prefix].add(ann.afbr)
        return {p: sorted(a) for p, a in sorted(claims.items()) if len(a) > 1}

    def audit(self) -> list[dict[str, str]]:
        """One row per finding; an empty mesh or a clean one gives the passing rows only."""
        rows = []
        for afbr, entry in self.afbrs().items():
            for problem in entry["problems"]:
                rows.append(_finding(afbr, problem))
        for prefix, afbrs in self.conflicts().items():
            rows.append(
                _finding(", ".join(afbrs), f"prefix {prefix} claimed by {len(afbrs)} AFBRs")
            )
        return rows

    def summary(self) -> Mapping[str, Any]:
        afbrs = self.afbrs()
        return {
            "afbrs": len(afbrs),
            "prefixes": len({prefix for (_n, prefix) in self._routes}),
            "conflicts": len(self.conflicts()),
            "findings": dict(self.counters),
        }


def _finding(afbr: str, problem: str) -> dict[str, str]:
    if problem.startswith("next hop"):
        rfc = "RFC 5565 §9"
    elif "Authenticator" in problem:
        rfc = "RFC 5566 §4; RFC 5619 §4.4.2"
    elif "claimed by" in problem:
        rfc = "RFC 5565 §5"
    else:
        rfc = "RFC 9012 §13"
    return {"afbr": afbr, "status": "fail", "rfc": rfc, "why": problem}
