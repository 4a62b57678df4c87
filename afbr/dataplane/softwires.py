"""The softwire dataplane: reconcile the kernel with a desired state, in one call.

    dataplane = SoftwireDataplane(netns=None)
    report = dataplane.reconcile(derive_desired(paths, policy))

Each call reads afbr's objects from the kernel, diffs them against the desired state (pure,
`reconcile.diff`), applies the actions and brings the nftables table in step.  A new
`SoftwireDataplane` (a restarted daemon) starts from what the kernel holds: matching tunnels
are adopted with their ifindex, routes already right are not rewritten, and only what is no
longer wanted goes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from afbr.dataplane.kernel import KernelSoftwires
from afbr.dataplane.kernel_plan import kernel_plan
from afbr.dataplane.nft_filter import CounterValue, NftFilter
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
from afbr.dataplane.rtnl_wire import RT_TABLE_MAIN
from afbr.encap.model import DesiredState, FilterSpec


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
    errors: list[tuple[str, int]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

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


class SoftwireDataplane:
    """afbr's tunnels, routes and decapsulation filter in one network namespace."""

    def __init__(
        self, netns: str | None = None, *, table: int = RT_TABLE_MAIN, filtering: bool = True
    ) -> None:
        self.kernel = KernelSoftwires(netns, table)
        self.filter = NftFilter(netns) if filtering else None
        self.devices: dict[str, str] = {}  # tunnel name -> device name, as last reconciled

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
            report.filter_applied = self.filter.apply(on_devices(desired.filters, self.devices))
            report.timings["filter"] = time.perf_counter() - mark
        report.timings["total"] = time.perf_counter() - start
        return report

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
