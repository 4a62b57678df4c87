"""Reconcile: desired kernel objects against observed ones -> an ordered list of actions (pure).

Only afbr's objects are ever in `ObservedState` (the adapter filters by name prefix, alias tag,
route protocol and L2TP tunnel id range), so nothing here can touch anything else.

- A device whose alias digest matches a wanted tunnel is adopted as it is, whatever its name:
  same ifindex, no packet lost across a restart; only MTU, up state and alias are set in place.
- A wanted tunnel with no such device takes over a device afbr no longer wants, of the same
  link kind, by changing its parameters in place (RTM_NEWLINK on its ifindex).  Deleting a
  device costs the kernel a walk of the whole routing table (twice: down, unregister), which
  with 100k routes is ~0.1 s per device in UML; a re-used device costs none.  So the device
  name of a tunnel is its preferred name (`TunnelSpec.name`) only when it was created for it:
  `Reconciliation.devices` maps each tunnel to its device.
- Otherwise a device is created; devices nobody wants any more are deleted (with them their
  routes); L2TP tunnels are deleted whole and never re-used.
Order: delete unwanted devices, L2TP tunnels and stale routes (before a re-used device carries
other traffic), change re-used devices, create, configure, then add missing or moved routes.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

from afbr.dataplane.kernel_plan import L2TP_ETH_ADDRESS, L2TP_LINK_KIND, KernelPlan, LinkPlan
from afbr.dataplane.rtnl_wire import IFF_NOARP, IFF_UP, LinkInfo, RouteKey
from afbr.encap.model import NAME_PREFIX


@dataclass(frozen=True)
class ObservedState:
    """afbr's objects found in the kernel."""

    links: dict[str, LinkInfo] = field(default_factory=dict)  # by name
    l2tp_tunnels: frozenset[int] = frozenset()  # tunnel ids
    routes: dict[RouteKey, int] = field(default_factory=dict)  # key -> oif


@dataclass(frozen=True)
class DeleteLink:
    name: str
    index: int


@dataclass(frozen=True)
class DeleteL2tpTunnel:
    tunnel_id: int  # removes its session and l2tpeth device too


@dataclass(frozen=True)
class ModifyLink:
    """New parameters, alias, MTU and up in one message: one routing-table walk in the kernel
    (every link change notifies, and IPv6 walks its whole table on each notification)."""

    link: LinkPlan
    device: str  # an existing device of the same kind, re-used
    index: int


@dataclass(frozen=True)
class CreateLink:
    link: LinkPlan  # a tunnel device, or an L2TP tunnel + session when link.l2tp is set
    device: str


@dataclass(frozen=True)
class ConfigureLink:
    link: LinkPlan  # alias, MTU, up (and for L2TP: fixed MAC, no ARP)
    device: str
    set_address: bool  # a new device (also: no IPv6 autoconfiguration)


@dataclass(frozen=True)
class DeleteRoutes:
    routes: tuple[tuple[RouteKey, int], ...]  # (key, oif)


@dataclass(frozen=True)
class ReplaceRoutes:
    routes: tuple[tuple[RouteKey, str], ...]  # (key, device name)


Action = (
    DeleteLink
    | DeleteL2tpTunnel
    | ModifyLink
    | CreateLink
    | ConfigureLink
    | DeleteRoutes
    | ReplaceRoutes
)


@dataclass(frozen=True)
class Reconciliation:
    actions: list[Action]
    devices: dict[str, str]  # tunnel name -> device name


def diff(plan: KernelPlan, observed: ObservedState) -> list[Action]:
    """The actions that turn `observed` into `plan`; empty when they already agree."""
    return reconcile_plan(plan, observed).actions


def reconcile_plan(plan: KernelPlan, observed: ObservedState) -> Reconciliation:
    devices, adopted, pending = _adopt(plan, observed)
    wanted = {link.name: link for link in plan.links}
    spare: dict[str, list[LinkInfo]] = defaultdict(list)
    for name, have in sorted(observed.links.items()):
        if name not in adopted and have.kind != L2TP_LINK_KIND:
            spare[have.kind].append(have)
    changes: list[Action] = []
    fresh: set[str] = set()
    reused: list[tuple[LinkPlan, LinkInfo]] = []
    for want in pending:
        if want.l2tp is None and spare[want.kind]:
            reused.append((want, spare[want.kind].pop(0)))
    leftovers = [have for kind in sorted(spare) for have in spare[kind]]
    gone = {have.name for have in leftovers} | {
        name for name, have in observed.links.items()
        if have.kind == L2TP_LINK_KIND and name not in adopted
    }  # fmt: skip
    taken = set(observed.links) - gone
    for want, have in reused:
        devices[want.name] = have.name
        changes.append(ModifyLink(want, have.name, have.index))
    for want in pending:
        if want.name not in devices:
            device = _free_name(want.name, taken)
            taken.add(device)
            devices[want.name] = device
            fresh.add(device)
            changes += [CreateLink(want, device), ConfigureLink(want, device, True)]
    for device, tunnel in adopted.items():
        want, have = wanted[tunnel], observed.links[device]
        if _needs_configure(want, have):
            changes.append(ConfigureLink(want, device, False))
    keep = {w.l2tp.tunnel_id for w in plan.links if w.l2tp and devices[w.name] not in fresh}
    actions: list[Action] = [DeleteLink(have.name, have.index) for have in leftovers]
    # Includes a tunnel left without its device (a crash between tunnel and session).
    actions += [DeleteL2tpTunnel(t) for t in sorted(observed.l2tp_tunnels - keep)]
    stale, missing = _route_changes(plan, observed, devices, gone, fresh)
    if stale:
        actions.append(DeleteRoutes(stale))
    actions += changes
    if missing:
        actions.append(ReplaceRoutes(missing))
    return Reconciliation(actions, devices)


def _adopt(
    plan: KernelPlan, observed: ObservedState
) -> tuple[dict[str, str], dict[str, str], list[LinkPlan]]:
    """Devices whose alias matches a wanted tunnel: tunnel -> device, device -> tunnel, and
    the wanted tunnels left without one."""
    by_alias: dict[str, LinkInfo] = {}
    for _name, link in sorted(observed.links.items()):
        by_alias.setdefault(link.alias, link)
    devices: dict[str, str] = {}
    adopted: dict[str, str] = {}
    pending: list[LinkPlan] = []
    for want in plan.links:
        found = by_alias.get(want.alias)
        if found is not None and found.name not in adopted and _matches(want, found, observed):
            devices[want.name] = found.name
            adopted[found.name] = want.name
        else:
            pending.append(want)
    return devices, adopted, pending


def _free_name(preferred: str, taken: set[str]) -> str:
    """The preferred name, or another afbr name derived from it when a device holds it."""
    name, counter = preferred, 0
    while name in taken:
        counter += 1
        digest = hashlib.sha256(f"{preferred}/{counter}".encode()).hexdigest()
        name = (NAME_PREFIX + digest)[: len(preferred)]
    return name


def _matches(want: LinkPlan, have: LinkInfo, observed: ObservedState) -> bool:
    if want.alias != have.alias or want.kind != have.kind:
        return False
    if want.l2tp is None:
        return True
    return want.l2tp.tunnel_id in observed.l2tp_tunnels and have.address == L2TP_ETH_ADDRESS


def _needs_configure(want: LinkPlan, have: LinkInfo) -> bool:
    noarp = want.l2tp is not None  # L2TP's Ethernet needs NOARP set; others keep their own
    return (
        have.mtu != want.mtu
        or not have.flags & IFF_UP
        or (noarp and not have.flags & IFF_NOARP)
        or have.alias != want.alias
    )


def _route_changes(
    plan: KernelPlan,
    observed: ObservedState,
    devices: dict[str, str],
    gone: set[str],
    fresh: set[str],
) -> tuple[tuple[tuple[RouteKey, int], ...], tuple[tuple[RouteKey, str], ...]]:
    """Routes to delete (not wanted, on a device that stays) and to add or move."""
    names = {link.index: name for name, link in observed.links.items()}
    stale = tuple(
        (key, oif)
        for key, oif in observed.routes.items()
        if key not in plan.routes and names.get(oif) not in gone
    )
    routes = observed.routes
    missing = tuple(
        (key, device)
        for key, device in ((key, devices.get(name, name)) for key, name in plan.routes.items())
        if device in fresh or names.get(routes.get(key, -1)) != device
    )
    return stale, missing
