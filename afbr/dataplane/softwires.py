"""The softwire dataplane: reconcile the kernel with a desired state, in one call.

    dataplane = SoftwireDataplane(netns=None)
    report = dataplane.reconcile(derive_desired(paths, policy))

Each call reads afbr's objects from the kernel, diffs them against the desired state (pure,
`reconcile.diff`), applies the actions and brings the nftables table in step.  A new
`SoftwireDataplane` (a restarted daemon) starts from what the kernel holds: matching tunnels
are adopted with their ifindex, routes already right are not rewritten, and only what is no
longer wanted goes.

Failures are isolated: a link or route the kernel refuses is reported and the rest applied; an
nft failure is reported (`ReconcileReport.filter_error`) after links and routes went in, and
the caller goes on (keys IPsec, retries later).  After each reconcile the table is read back:
`filter_status` says whether it is installed as desired and what it counted (a table removed
behind afbr's back is written again at once), for views that must not fork nft themselves.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from afbr.dataplane.kernel import KernelSoftwires
from afbr.dataplane.kernel_plan import ALIAS_PREFIX, kernel_plan
from afbr.dataplane.nft_filter import CounterValue, NftError, NftFilter
from afbr.dataplane.nft_ruleset import spoof_counter
from afbr.dataplane.reconcile import (
    Action,
    ConfigureLink,
    CreateLink,
    DeleteL2tpTunnel,
    DeleteLink,
    DeleteRoutes,
    ModifyLink,
    ReplaceRoutes,
    diff,
    reconcile_plan,
)
from afbr.dataplane.rtnl_wire import RT_TABLE_MAIN, LinkInfo
from afbr.encap.model import NAME_PREFIX, DesiredState, FilterSpec


@dataclass
class ReconcileReport:
    """What one reconcile did and how long each step took (seconds)."""

    links_created: int = 0
    links_deleted: int = 0
    links_configured: int = 0
    links_changed: int = 0  # re-used for another tunnel
    routes_replaced: int = 0
    routes_deleted: int = 0
    filter_applied: bool = False
    filter_repaired: bool = False  # the table was found missing or incomplete and rewritten
    filter_error: str | None = None  # nft failed: the reason (links and routes went ahead)
    errors: list[tuple[str, int]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Everything applied: nothing to retry."""
        return not self.errors and self.filter_error is None

    @property
    def changed(self) -> bool:
        return bool(
            self.links_created
            or self.links_deleted
            or self.links_configured
            or self.links_changed
            or self.routes_replaced
            or self.routes_deleted
            or self.filter_applied
        )


@dataclass(frozen=True)
class FilterStatus:
    """The decapsulation filter as last read from the kernel."""

    installed: bool  # afbr's table holds every chain and counter the desired filters declare
    counters: Mapping[str, CounterValue]
    error: str | None = None  # the reading failed (then nothing is known to be installed)


class SoftwireDataplane:
    """afbr's tunnels, routes and decapsulation filter in one network namespace.

    One thread at a time (the daemon's reconcile worker); `filter_status` is replaced whole
    by that thread, so any other may read it."""

    def __init__(
        self, netns: str | None = None, *, table: int = RT_TABLE_MAIN, filtering: bool = True
    ) -> None:
        self.kernel = KernelSoftwires(netns, table)
        self.filter = NftFilter(netns) if filtering else None
        self.devices: dict[str, str] = {}  # tunnel name -> device name, as last reconciled
        self.links: dict[str, LinkInfo] = {}  # afbr's links by device name, as last read
        self.filter_status: FilterStatus | None = None  # None: not read yet, or no filter
        self._filters = FilterSpec()  # the filter sets last applied (by device name)

    def close(self) -> None:
        self.kernel.close()

    def __enter__(self) -> SoftwireDataplane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def plan_actions(self, desired: DesiredState) -> list[Action]:
        """The actions a reconcile would apply now (reads the kernel, changes nothing)."""
        return diff(kernel_plan(desired), self.kernel.observe())

    def reconcile(self, desired: DesiredState) -> ReconcileReport:
        report = ReconcileReport()
        start = time.perf_counter()
        plan = kernel_plan(desired)
        observed = self.kernel.observe()
        report.timings["observe"] = time.perf_counter() - start
        mark = time.perf_counter()
        result = reconcile_plan(plan, observed)
        actions = result.actions
        self.devices = result.devices
        report.timings["diff"] = time.perf_counter() - mark
        mark = time.perf_counter()
        applied = self.kernel.apply(actions)
        report.timings["apply"] = time.perf_counter() - mark
        report.errors.extend(applied.errors)
        _count(report, actions)
        if self.filter is not None:
            mark = time.perf_counter()
            self._apply_filter(self.filter, on_devices(desired.filters, self.devices), report)
            report.timings["filter"] = time.perf_counter() - mark
        self.read_links()
        report.timings["total"] = time.perf_counter() - start
        return report

    def read_links(self) -> dict[str, LinkInfo]:
        """afbr's links as the kernel has them now, published as `links` (for the views;
        call it from the reconciling thread)."""
        self.links = {
            link.name: link
            for link in self.kernel.links()
            if link.name.startswith(NAME_PREFIX) and link.alias.startswith(ALIAS_PREFIX)
        }
        return self.links

    def _apply_filter(self, nft: NftFilter, filters: FilterSpec, report: ReconcileReport) -> None:
        """Apply the table, read it back, and write it again when it is not all there (the
        last script applied is not re-run by `apply`: a table flushed by someone else would
        stay gone)."""
        self._filters = filters
        try:
            report.filter_applied = nft.apply(filters)
            status = self._read_filter(nft)
            if status.error is None and not status.installed:
                nft.forget()
                report.filter_applied = report.filter_repaired = nft.apply(filters)
                self._read_filter(nft)
        except NftError as exc:
            report.filter_error = str(exc)
            self._read_filter(nft)  # what the kernel holds now

    def read_filter(self) -> FilterStatus | None:
        """Read the decapsulation filter's state and counters from the kernel and publish them
        as `filter_status` (forks nft: call it from the reconciling thread)."""
        return self._read_filter(self.filter) if self.filter is not None else None

    def _read_filter(self, nft: NftFilter) -> FilterStatus:
        try:
            state = nft.state()
        except NftError as exc:
            status = FilterStatus(False, {}, str(exc))
        else:
            named = nft.named_counters
            status = FilterStatus(state.holds(self._filters, named_counters=named), state.counters)
        self.filter_status = status
        return status

    def spoof_counter(self, tunnel: str) -> str:
        """The name of the decapsulation filter's drop counter of a tunnel."""
        return spoof_counter(self.devices.get(tunnel, tunnel))

    def counters(self) -> dict[str, CounterValue]:
        """The decapsulation filter's counters by name (see nft_ruleset)."""
        return self.filter.counters() if self.filter is not None else {}


def on_devices(filters: FilterSpec, devices: dict[str, str]) -> FilterSpec:
    """The filter sets with each tunnel named by its device (what `iifname` sees)."""
    sources = tuple(
        (devices.get(name, name), prefixes) for name, prefixes in filters.tunnel_sources
    )
    return replace(filters, tunnel_sources=sources)


def _count(report: ReconcileReport, actions: list[Action]) -> None:
    for action in actions:
        if isinstance(action, CreateLink):
            report.links_created += 1
        elif isinstance(action, DeleteLink | DeleteL2tpTunnel):
            report.links_deleted += 1
        elif isinstance(action, ModifyLink):
            report.links_changed += 1
        elif isinstance(action, ConfigureLink):
            report.links_configured += 1
        elif isinstance(action, ReplaceRoutes):
            report.routes_replaced += len(action.routes)
        elif isinstance(action, DeleteRoutes):
            report.routes_deleted += len(action.routes)
