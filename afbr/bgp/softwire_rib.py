"""The softwire RIB: per client prefix, the paths every neighbor sent, and the best one.

Pure: events in (`apply`), the prefixes whose best path changed out; no I/O besides logging
each distinct rejected path once.  Built for 100k prefixes: a path (neighbor, next hop,
attributes) is one shared `RibPath` object for all the prefixes it covers, the Tunnel
Encapsulation attribute is decoded once per distinct value, and a prefix costs one dict entry
holding a small tuple of paths, best first.

What a path means for the softwire mesh:
- its tunnel endpoint is the BGP next hop (RFC 5565 §9), in the core's family (an IPv4-mapped
  IPv6 next hop is the IPv4 address, RFC 4798 / RFC 5565 §4), or per tunnel the Tunnel Egress
  Endpoint sub-TLV when present and valid (RFC 9012 §3.1);
- a next hop not of the core's family makes the path unusable: it is dropped, counted and
  logged (RFC 5565 §4: SW-NHOP is a core address);
- a malformed Tunnel Encapsulation attribute is handled as its `TunnelEncapError.handling`
  says: treat-as-withdraw removes the path (RFC 7606 §2, RFC 9012 §13); any other handling
  keeps the route without the attribute, so it gets no softwire.

`apply` returns the prefixes whose best path changed in what forwarding uses (endpoint, next
hop, attribute): a prefix whose best path moved to an identical copy from the other route
reflector is not reported.

Graceful Restart (RFC 4724 §4.2): `mark_stale` keeps every path (or one neighbor's) but marks
it stale, nothing withdrawn; a path announced again is fresh (an identical one is no change);
End-of-RIB from that neighbor for the family removes what is still stale, and `sweep_stale(now)`
removes it when the restart time has passed without End-of-RIB.  Both return the prefixes
that changed, as a withdraw does.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv6Address
from typing import Any

from afbr.bgp.exabgp_events import (
    DEFAULT_LOCAL_PREF,
    Afi,
    ApiEvent,
    EndOfRib,
    IPAddress,
    NeighborDown,
    NeighborUp,
    PathAttributes,
    RouteAnnounce,
    RouteWithdraw,
)
from afbr.bgp.stale_paths import StalePaths
from afbr.bgp.tunnel_encap import (
    ErrorHandling,
    Tunnel,
    TunnelEncapAttribute,
    TunnelEncapError,
    check_tunnel_encap_flags,
    decode_tunnel_encap,
)

_log = logging.getLogger(__name__)
_CACHE_LIMIT = 65536

TunnelEncapDecoder = Callable[[bytes], TunnelEncapAttribute]


class PathProblem(StrEnum):
    """Why (part of) a path is not used; the RIB's counters are keyed by these."""

    NEXT_HOP_NOT_CORE_FAMILY = "next-hop-not-core-family"
    NEXT_HOP_INVALID = "next-hop-invalid"
    TUNNEL_ENCAP_TREAT_AS_WITHDRAW = "tunnel-encap-treat-as-withdraw"
    TUNNEL_ENCAP_DISCARDED = "tunnel-encap-discarded"
    EGRESS_ENDPOINT_NOT_CORE_FAMILY = "egress-endpoint-not-core-family"
    NO_USABLE_TUNNEL = "no-usable-tunnel"


@dataclass(frozen=True, slots=True)
class SoftwireTunnel:
    """One usable tunnel of a path, with the endpoint to build it to."""

    tunnel: Tunnel
    endpoint: IPAddress


@dataclass(frozen=True, slots=True, eq=False)
class RibPath:
    """A path from one neighbor; shared by every prefix it was announced for."""

    neighbor: str
    next_hop: IPAddress
    attributes: PathAttributes
    endpoint: IPAddress  # the next hop in the core's family (RFC 5565 §9)
    tunnel_encap: TunnelEncapAttribute | None  # None: absent, or discarded (see problems)
    tunnels: tuple[SoftwireTunnel, ...]  # usable tunnels in the originator's order
    problems: tuple[str, ...] = ()  # what was set aside, for logs and the operator
    problem_kinds: tuple[PathProblem, ...] = ()  # the same, as counter keys
    rank: tuple[Any, ...] = field(default=(), repr=False)
    forwarding: tuple[Any, ...] = field(default=(), repr=False)


def core_endpoint(next_hop: IPAddress, core_family: int) -> IPAddress | None:
    """The next hop as a core address, or None when it is not of the core's family."""
    if isinstance(next_hop, IPv6Address):
        mapped = next_hop.ipv4_mapped
        if mapped is not None:
            return mapped if core_family == 4 else None  # RFC 4798 §2 IPv4-mapped next hop
    return next_hop if next_hop.version == core_family else None


def _rank(neighbor: str, next_hop: IPAddress, attrs: PathAttributes) -> tuple[Any, ...]:
    """Sort key: lower is better (RFC 4271 §9.1.2.2, RFC 4456 §9), fully deterministic."""
    local_pref = DEFAULT_LOCAL_PREF if attrs.local_pref is None else attrs.local_pref
    originator = 0 if attrs.originator_id is None else int(attrs.originator_id)
    return (
        -local_pref,  # highest LOCAL_PREF
        attrs.as_path_length,  # shortest AS_PATH
        int(attrs.origin),  # lowest ORIGIN
        0 if attrs.med is None else attrs.med,  # lowest MED (missing = 0)
        originator,  # lowest ORIGINATOR_ID as the BGP Identifier (RFC 4456 §9)
        len(attrs.cluster_list),  # shortest CLUSTER_LIST (RFC 4456 §9)
        next_hop.version,
        int(next_hop),  # then lowest next hop
        neighbor,  # and the neighbor, so duplicates from two reflectors sort stably
    )


class SoftwireRib:
    """Paths per client prefix from every neighbor, with a deterministic best path."""

    def __init__(self, core_family: int, decode: TunnelEncapDecoder | None = None) -> None:
        if core_family not in (4, 6):
            raise ValueError("core_family must be 4 or 6")
        self.core_family = core_family
        self._decode = decode or decode_tunnel_encap
        self._routes: dict[str, tuple[RibPath, ...]] = {}  # prefix -> paths, best first
        self._paths: dict[tuple[str, IPAddress, PathAttributes], RibPath | PathProblem] = {}
        self._decoded: dict[tuple[bytes, int], TunnelEncapAttribute | TunnelEncapError] = {}
        self.counters: Counter[str] = Counter()
        self.end_of_rib: dict[str, set[Afi]] = {}  # neighbor -> families completed
        self.neighbors_up: set[str] = set()
        self.stale = StalePaths()

    # -- queries ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._routes)

    def best(self, prefix: str) -> RibPath | None:
        paths = self._routes.get(prefix)
        return paths[0] if paths else None

    def paths(self, prefix: str) -> tuple[RibPath, ...]:
        return self._routes.get(prefix, ())

    def best_paths(self) -> Iterator[tuple[str, RibPath]]:
        for prefix, paths in self._routes.items():
            yield prefix, paths[0]

    def prefix_counts(self) -> dict[str, tuple[int, int]]:
        """Per neighbor: (prefixes it has a path for in the RIB, prefixes whose best path is
        its).  A path set aside whole (see PathProblem) is not in the RIB and not counted."""
        counts: dict[str, list[int]] = {}
        for paths in self._routes.values():
            for path in paths:
                counts.setdefault(path.neighbor, [0, 0])[0] += 1
            counts[paths[0].neighbor][1] += 1
        return {neighbor: (got, best) for neighbor, (got, best) in counts.items()}

    def converged(self) -> bool:
        """Every neighbor that is up has sent End-of-RIB for both families (RFC 4724 §2)."""
        return all(self.end_of_rib.get(n, set()) >= {Afi.IPV4, Afi.IPV6} for n in self.neighbors_up)

    # -- Graceful Restart (RFC 4724 §4.2) -----------------------------------------------------

    def mark_stale(
        self,
        now: float | None,
        restart_time: Callable[[str], float],
        neighbor: str | None = None,
    ) -> None:
        """Keep the paths of every neighbor (or of `neighbor`) for forwarding, marked stale.

        Their sessions are gone: those neighbors are no longer up.  `restart_time(n)` is how
        long neighbor n's stale paths outlive a missing End-of-RIB; `now=None` starts that
        clock at the next `sweep_stale`.  Nothing changes for forwarding.
        """
        marked: dict[tuple[str, Afi], list[str]] = {}
        for prefix, paths in self._routes.items():
            afi = Afi.IPV6 if ":" in prefix else Afi.IPV4
            for path in paths:
                if neighbor is None or path.neighbor == neighbor:
                    marked.setdefault((path.neighbor, afi), []).append(prefix)
        for (owner, afi), prefixes in marked.items():
            self.stale.mark(owner, afi, prefixes, now, restart_time(owner))
        if neighbor is None:
            self.neighbors_up.clear()
            self.end_of_rib.clear()
        else:
            self.neighbors_up.discard(neighbor)
            self.end_of_rib.pop(neighbor, None)

    def sweep_stale(self, now: float) -> list[str]:
        """Remove the stale paths whose restart time ran out by `now`; the changed prefixes."""
        changed: list[str] = []
        for neighbor, prefixes in self.stale.expired(now):
            changed += self._withdraw(neighbor, prefixes)
        return list(dict.fromkeys(changed))

    def next_stale_deadline(self) -> float | None:
        """When `sweep_stale` next has work (None: no stale timer running)."""
        return self.stale.next_deadline()

    # -- events -----------------------------------------------------------------------------

    def apply(self, event: ApiEvent) -> list[str]:
        """Apply one event; return the prefixes whose best path changed (forwarding view)."""
        if isinstance(event, RouteAnnounce):
            if self.stale:
                self.stale.refreshed(event.neighbor, event.afi, event.prefixes)
            return self._announce(event)
        if isinstance(event, RouteWithdraw):
            if self.stale:
                self.stale.refreshed(event.neighbor, event.afi, event.prefixes)
            return self._withdraw(event.neighbor, event.prefixes)
        if isinstance(event, NeighborUp):
            self.neighbors_up.add(event.neighbor)
            self.end_of_rib[event.neighbor] = set()
            return []
        if isinstance(event, NeighborDown):
            self.neighbors_up.discard(event.neighbor)
            self.end_of_rib.pop(event.neighbor, None)
            self.stale.forget(event.neighbor)
            return self._drop_neighbor(event.neighbor)
        if isinstance(event, EndOfRib):
            self.end_of_rib.setdefault(event.neighbor, set()).add(event.afi)
            # RFC 4724 §4.2: what the neighbor did not send again before End-of-RIB is gone.
            return self._withdraw(event.neighbor, self.stale.end_of_rib(event.neighbor, event.afi))
        return []  # route refresh and shutdown do not change the RIB

    def _announce(self, event: RouteAnnounce) -> list[str]:
        path = self._path(event.neighbor, event.next_hop, event.attributes)
        if isinstance(path, PathProblem):
            self.counters[path.value] += len(event.prefixes)
            # The neighbor's new path replaces its old one and is unusable: as a withdraw.
            return self._withdraw(event.neighbor, event.prefixes)
        for kind in path.problem_kinds:
            self.counters[kind.value] += len(event.prefixes)
        routes = self._routes
        neighbor = path.neighbor
        changed: list[str] = []
        for prefix in event.prefixes:
            old = routes.get(prefix)
            if old is None:
                routes[prefix] = (path,)
                changed.append(prefix)
                continue
            if len(old) == 1 and old[0].neighbor == neighbor:
                new: tuple[RibPath, ...] = (path,)
            else:
                others = [p for p in old if p.neighbor != neighbor]
                others.append(path)
                others.sort(key=_path_rank)
                new = tuple(others)
            routes[prefix] = new
            if new[0].forwarding != old[0].forwarding:
                changed.append(prefix)
        return changed

    def _withdraw(self, neighbor: str, prefixes: Iterable[str]) -> list[str]:
        routes = self._routes
        changed: list[str] = []
        for prefix in prefixes:
            old = routes.get(prefix)
            if old is None:
                continue
            new = tuple(p for p in old if p.neighbor != neighbor)
            if len(new) == len(old):
                continue
            if not new:
                del routes[prefix]
                changed.append(prefix)
                continue
            routes[prefix] = new
            if new[0].forwarding != old[0].forwarding:
                changed.append(prefix)
        return changed

    def _drop_neighbor(self, neighbor: str) -> list[str]:
        prefixes = tuple(
            prefix
            for prefix, paths in self._routes.items()
            if any(p.neighbor == neighbor for p in paths)
        )
        self._paths = {k: v for k, v in self._paths.items() if k[0] != neighbor}
        return self._withdraw(neighbor, prefixes)

    # -- path acceptance --------------------------------------------------------------------

    def _path(
        self, neighbor: str, next_hop: IPAddress, attrs: PathAttributes
    ) -> RibPath | PathProblem:
        key = (neighbor, next_hop, attrs)
        found = self._paths.get(key)
        if found is None:
            found = self._accept(neighbor, next_hop, attrs)
            if len(self._paths) >= _CACHE_LIMIT:
                self._paths.clear()
            self._paths[key] = found
        return found

    def _accept(
        self, neighbor: str, next_hop: IPAddress, attrs: PathAttributes
    ) -> RibPath | PathProblem:
        endpoint = core_endpoint(next_hop, self.core_family)
        if endpoint is None:
            _log.warning(
                "path from %s with next hop %s not used: not an IPv%d core address (RFC 5565 §4)",
                neighbor,
                next_hop,
                self.core_family,
            )
            return PathProblem.NEXT_HOP_NOT_CORE_FAMILY
        if endpoint.is_unspecified or endpoint.is_multicast or endpoint.is_loopback:
            _log.warning("path from %s not used: next hop %s is not usable", neighbor, next_hop)
            return PathProblem.NEXT_HOP_INVALID
        problems: list[tuple[PathProblem, str]] = []
        encap = None
        if attrs.tunnel_encap is not None:
            decoded = self._decoded_encap(attrs.tunnel_encap, attrs.tunnel_encap_flags)
            if isinstance(decoded, TunnelEncapError):
                _log.warning(
                    "Tunnel Encapsulation attribute from %s (next hop %s): %s",
                    neighbor,
                    next_hop,
                    decoded,
                )
                if decoded.handling == ErrorHandling.TREAT_AS_WITHDRAW:  # RFC 9012 §13
                    return PathProblem.TUNNEL_ENCAP_TREAT_AS_WITHDRAW
                # Any other handling of the whole attribute: the route stays, without it.
                problems.append((PathProblem.TUNNEL_ENCAP_DISCARDED, str(decoded)))
            else:
                encap = decoded
        tunnels = self._tunnels(encap, endpoint, problems) if encap is not None else ()
        rank = _rank(neighbor, next_hop, attrs)
        forwarding = (next_hop, endpoint, attrs.tunnel_encap if encap is not None else None)
        return RibPath(
            neighbor,
            next_hop,
            attrs,
            endpoint,
            encap,
            tunnels,
            tuple(f"{kind.value}: {text}" if text else kind.value for kind, text in problems),
            tuple(kind for kind, _ in problems),
            rank,
            forwarding,
        )

    def _tunnels(
        self,
        encap: TunnelEncapAttribute,
        endpoint: IPAddress,
        problems: list[tuple[PathProblem, str]],
    ) -> tuple[SoftwireTunnel, ...]:
        tunnels = []
        for tunnel in encap.usable_tunnels:
            egress = tunnel.egress_endpoint  # RFC 9012 §3.1; None: the BGP next hop
            if egress is None:
                tunnels.append(SoftwireTunnel(tunnel, endpoint))
                continue
            in_core = core_endpoint(egress, self.core_family)
            if in_core is None:
                problems.append(
                    (
                        PathProblem.EGRESS_ENDPOINT_NOT_CORE_FAMILY,
                        f"tunnel type {int(tunnel.tunnel_type)} egress endpoint {egress}",
                    )
                )
                continue
            tunnels.append(SoftwireTunnel(tunnel, in_core))
        if not tunnels:
            problems.append((PathProblem.NO_USABLE_TUNNEL, ""))
        return tuple(tunnels)

    def _decoded_encap(
        self, value: bytes, flags: int | None
    ) -> TunnelEncapAttribute | TunnelEncapError:
        key = (value, -1 if flags is None else flags)
        found = self._decoded.get(key)
        if found is not None:
            return found
        result: TunnelEncapAttribute | TunnelEncapError
        try:
            if flags is not None:
                check_tunnel_encap_flags(flags)  # RFC 7606 §3 c: optional transitive
            result = self._decode(value)
        except TunnelEncapError as exc:
            result = exc
        if len(self._decoded) >= _CACHE_LIMIT:
            self._decoded.clear()
        self._decoded[key] = result
        return result


def _path_rank(path: RibPath) -> tuple[Any, ...]:
    return path.rank
