"""Glue from the softwire RIB to the kernel: best paths -> encap manager -> dataplane reconcile.

The RIB (afbr.bgp) speaks in Tunnel Encapsulation TLVs; the encap manager (afbr.encap) in
its own `EncapOffer`s (afbr.encap.offers translates).  The RIB has already chosen each
path's endpoint (next hop or Tunnel Egress Endpoint, per tunnel), so that one is used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from afbr.bgp.control_plane import BgpControlPlane
from afbr.bgp.softwire_rib import RibPath
from afbr.bgp.tunnel_encap import TunnelType
from afbr.config import AfbrConfig
from afbr.daemon.ipsec_agent import IpsecAgent
from afbr.dataplane.rtnl_wire import IFF_UP, LinkInfo
from afbr.dataplane.softwires import ReconcileReport, SoftwireDataplane
from afbr.encap.derive import derive_desired
from afbr.encap.model import (
    DesiredState,
    EncapKind,
    EncapOffer,
    IPNetwork,
    IpsecMode,
    LocalEncapPolicy,
    RemotePath,
)
from afbr.encap.offers import offer_from_tunnel

log = logging.getLogger(__name__)

SLOW_STEP = 0.5  # seconds: a reconcile step this slow is worth a progress line in the log

# Config names -> encap kinds, in the order a name expands to (L2TPv3 over IP first).
PREFERENCE_KINDS: dict[str, tuple[EncapKind, ...]] = {
    "gre": (EncapKind.GRE,),
    "ip-in-ip": (EncapKind.IP_IN_IP,),
    "l2tpv3": (EncapKind.L2TPV3_IP, EncapKind.L2TPV3_UDP),
}


ParsedPrefix = tuple[IPNetwork, tuple[int, int, int]]  # the network and its route key


def parse_prefix(text: str) -> ParsedPrefix:
    """A prefix ("198.51.100.0/24", "2001:db8::/32") as a network and its route key.  The
    address goes through inet_pton: 20% faster than ip_network's own parser, same result,
    same ValueError for what is not a prefix (host bits set included)."""
    address, slash, length = text.partition("/")
    family, network_type, bits = (
        (socket.AF_INET6, ipaddress.IPv6Network, 128)
        if ":" in address
        else (socket.AF_INET, ipaddress.IPv4Network, 32)
    )
    try:
        value = int.from_bytes(socket.inet_pton(family, address), "big")
    except OSError as exc:
        raise ValueError(f"not a prefix: {text!r}") from exc
    if (slash and not length) or (length and not (length.isascii() and length.isdigit())):
        raise ValueError(f"not a prefix length: {text!r}")
    prefix_length = int(length) if length else bits
    network = network_type((value, prefix_length))
    return network, (network.version, value, prefix_length)


def remote_paths(
    best_paths: Iterable[tuple[str, RibPath]], networks: dict[str, ParsedPrefix] | None = None
) -> Iterator[RemotePath]:
    """The RIB's best paths as the encap manager's input.  `networks` caches parsed prefixes
    and their route keys across calls (parsing 100k prefix strings costs seconds)."""
    cache = networks if networks is not None else {}
    offers: dict[int, tuple[EncapOffer, ...]] = {}  # by RibPath identity: shared by prefixes
    for prefix, path in best_paths:
        encaps = offers.get(id(path))
        if encaps is None:
            encaps = offers[id(path)] = tuple(
                offer for t in path.tunnels if (offer := offer_from_tunnel(t.tunnel)) is not None
            )
        parsed = cache.get(prefix)
        if parsed is None:
            parsed = cache[prefix] = parse_prefix(prefix)
        yield RemotePath(parsed[0], path.endpoint, encaps, path.neighbor, parsed[1])


def authenticators(control_plane: BgpControlPlane) -> dict[str, bytes]:
    """Per remote endpoint, the IPsec Tunnel Authenticator it advertised (RFC 5566 §4)."""
    out: dict[str, bytes] = {}
    seen: set[RibPath] = set()
    for _prefix, path in control_plane.rib.best_paths():
        if path in seen:
            continue
        seen.add(path)
        for softwire in path.tunnels:
            auth = softwire.tunnel.authenticator
            if softwire.tunnel.tunnel_type == TunnelType.IPSEC_TUNNEL_MODE and auth is not None:
                out[str(softwire.endpoint)] = auth.value
    return out


def local_policy(config: AfbrConfig) -> LocalEncapPolicy:
    """With IPsec on, the only softwire is the ESP one (RFC 5566 type 4): an AFBR that does
    not offer it gets none, rather than one that carries client traffic in clear."""
    address = config.core.address
    ipsec = config.ipsec.enabled
    if ipsec:
        preference: tuple[EncapKind, ...] = (EncapKind.ESP_TUNNEL,)
    else:
        preference = tuple(k for name in config.encap.preference for k in PREFERENCE_KINDS[name])
    return LocalEncapPolicy(
        preference=preference,
        local_v4=address if isinstance(address, ipaddress.IPv4Address) else None,
        local_v6=address if isinstance(address, ipaddress.IPv6Address) else None,
        gre_key=config.encap.gre_key,
        l2tpv3_session_id=config.encap.l2tpv3_session_id,
        l2tpv3_cookie=config.encap.l2tpv3_cookie,
        underlay_mtu=config.core.mtu,
        ipsec=IpsecMode.TUNNEL if ipsec else IpsecMode.NONE,
        bgp_neighbors=frozenset(n.address for n in config.bgp.neighbors),
    )


@dataclass(frozen=True)
class SyncWork:
    """What one reconcile works from, taken from the RIB on the event loop (RibPaths are
    immutable, so the worker thread may read them while the RIB moves on)."""

    best_paths: list[tuple[str, RibPath]]
    policy: LocalEncapPolicy
    authenticators: dict[str, bytes]
    started: float


@dataclass(frozen=True)
class SyncResult:
    desired: DesiredState
    report: ReconcileReport
    derive_seconds: float
    failure: str | None = None  # the kernel could not be read or changed at all

    @property
    def ok(self) -> bool:
        return self.failure is None and self.report.ok


class KernelSoftwireSync:
    """The daemon's dataplane side: one reconcile per batch of RIB changes.

    `sync_in_worker` (the daemon's way) takes the RIB's best paths on the event loop, derives
    and applies them in a worker thread, so the control socket, BGP and IKE are served while a
    full table goes into the kernel, and keys the IPsec peers back on the loop.  One reconcile
    at a time (the daemon serialises them).

    A step that fails does not stop the others: links and routes the kernel refused, an nft
    failure, even a netlink socket that failed whole are logged, counted and reported
    (`ok: false`, the daemon retries with backoff), and the IPsec peers are keyed all the same.
    The filter's state and counters are read by the worker after each reconcile and on
    `refresh_in_worker`; `counters()` only reads what it published.
    """

    def __init__(self, config: AfbrConfig, netns: str | None = None) -> None:
        self.ipsec: IpsecAgent | None = None  # set by the daemon when IPsec is on
        self.dataplane = SoftwireDataplane(netns)
        self.desired = DesiredState()
        self.route_tunnel: dict[str, str] = {}
        self._networks: dict[str, ParsedPrefix] = {}  # only the reconciling thread uses it
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="afbr-reconcile")
        self._closed = False
        self.errors = 0

    def close(self) -> None:
        """Wait for a reconcile under way (the kernel keeps whatever it reached)."""
        self._closed = True
        self._worker.shutdown(wait=True)

    async def refresh_in_worker(self) -> None:
        """Read the filter's state and counters again, in the worker (after a reconcile under
        way): what `counters()` shows between reconciles."""
        if not self._closed:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._worker, self._refresh)

    def _refresh(self) -> None:
        """In the worker: what the views show between reconciles, read from the kernel."""
        self.dataplane.read_filter()
        try:
            self.dataplane.read_links()
        except OSError as exc:
            log.error("reading afbr's links from the kernel failed: %s", exc)

    async def sync_in_worker(
        self, control_plane: BgpControlPlane, config: AfbrConfig
    ) -> dict[str, Any]:
        work = self.take(control_plane, config)
        result = await asyncio.get_running_loop().run_in_executor(self._worker, self.apply, work)
        return self.finish(work, result)

    def take(self, control_plane: BgpControlPlane, config: AfbrConfig) -> SyncWork:
        """On the event loop: the RIB is not to be read from another thread."""
        return SyncWork(
            list(control_plane.rib.best_paths()),
            local_policy(config),
            authenticators(control_plane),
            time.perf_counter(),
        )

    def apply(self, work: SyncWork) -> SyncResult:
        """Derive the desired state and bring the kernel to it (any one thread at a time)."""
        desired = derive_desired(remote_paths(work.best_paths, self._networks), work.policy)
        derived = time.perf_counter() - work.started
        if derived > SLOW_STEP:  # progress on a long reconcile (a full table at start-up)
            log.info(
                "derived %d softwires and %d routes in %.3fs; applying them to the kernel",
                len(desired.tunnels),
                len(desired.routes),
                derived,
            )
        if len(self._networks) > 2 * len(work.best_paths) + 1024:
            self._networks.clear()  # withdrawn prefixes: do not grow without bound
        try:
            report = self.dataplane.reconcile(desired)
        except OSError as exc:  # the netlink socket failed whole: IPsec is keyed all the same
            return SyncResult(desired, ReconcileReport(), derived, f"the kernel: {exc}")
        return SyncResult(desired, report, derived)

    def finish(self, work: SyncWork, result: SyncResult) -> dict[str, Any]:
        """On the event loop: what the daemon shows, the IPsec peers, the log line."""
        self.desired, report = result.desired, result.report
        self.route_tunnel = {str(r.prefix): r.tunnel for r in self.desired.routes}
        if self.ipsec is not None:  # after the xfrm interfaces exist
            self.ipsec.sync(self.desired.ipsec, work.authenticators)
        derived = result.derive_seconds
        start = work.started
        failures = [f"{what} failed (errno {code})" for what, code in report.errors]
        if report.filter_error is not None:
            failures.append(f"the decapsulation filter (nftables) failed: {report.filter_error}")
        if result.failure is not None:
            failures.append(f"reconciling failed: {result.failure}")
        self.errors += len(failures)
        for failure in failures:
            log.error("dataplane: %s", failure, extra={"event": "reconcile-failed"})
        if report.filter_repaired:
            log.warning("afbr's nftables table was missing or incomplete; written again")
        timings = {"derive": derived, **report.timings}
        timings["total"] = time.perf_counter() - start
        if report.changed:
            log.info(
                "softwires reconciled: +%d -%d links, %d routes set, %d removed in %.3fs (%s)",
                report.links_created,
                report.links_deleted,
                report.routes_replaced,
                report.routes_deleted,
                timings["total"],
                " ".join(f"{step} {seconds:.3f}" for step, seconds in timings.items()),
                extra={"event": "reconcile"},
            )
        return {
            "ok": result.ok,
            "changed": report.changed,
            "timings": timings,
            "errors": failures,
            "ipsec_keyed": self.ipsec is not None,
        }

    def tunnels(self) -> list[dict[str, Any]]:
        """Each softwire as the kernel has it (as the worker last read it): device, ifindex,
        state, MTU; `in_kernel` false (and state "missing") for a desired softwire the kernel
        lacks, `desired_mtu` where the kernel's differs, and afbr's links that no softwire
        wants any more as `unexpected` rows."""
        routed: dict[str, int] = {}
        for tunnel in self.route_tunnel.values():
            routed[tunnel] = routed.get(tunnel, 0) + 1
        links = dict(self.dataplane.links)
        devices = self.dataplane.devices
        rows = []
        for t in self.desired.tunnels:
            device = devices.get(t.name, t.name)
            link = links.pop(device, None)
            row: dict[str, Any] = {
                "name": t.name,
                "type": t.kind.name.lower().replace("_", "-"),
                "local": str(t.local),
                "remote": str(t.remote),
                "device": device,
                "in_kernel": link is not None,
                "ifindex": link.index if link is not None else None,
                "state": _state(link),
                "mtu": link.mtu if link is not None else t.mtu,
                "ipsec": t.kind is EncapKind.ESP_TUNNEL,
                "prefixes": routed.get(t.name, 0),
            }
            if link is not None and link.mtu != t.mtu:
                row["desired_mtu"] = t.mtu
            rows.append(row)
        for device, link in sorted(links.items()):
            rows.append(
                {
                    "name": device,
                    "type": link.kind,
                    "device": device,
                    "in_kernel": True,
                    "ifindex": link.index,
                    "state": _state(link),
                    "mtu": link.mtu,
                    "unexpected": True,  # no softwire wants it (removed at the next reconcile)
                }
            )
        return rows

    def tunnel_of(self, prefix: str) -> str | None:
        return self.route_tunnel.get(prefix)

    def counters(self) -> dict[str, int]:
        """Errors, and the filter's state and drop counters as the worker last read them."""
        status = self.dataplane.filter_status
        installed = status is not None and status.installed
        out = {"dataplane_errors": self.errors, "decap_filter_installed": int(installed)}
        for name, value in (status.counters if status is not None else {}).items():
            out[name] = value.packets
        return out


def _state(link: LinkInfo | None) -> str:
    if link is None:
        return "missing"
    return "up" if link.flags & IFF_UP else "down"
