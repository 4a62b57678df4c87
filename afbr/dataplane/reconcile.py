"""Reconcile: desired kernel objects against observed ones -> an ordered list of actions (pure).

Only afbr's objects are ever in `ObservedState` (the adapter filters by name prefix, alias tag,
route protocol and L2TP tunnel id range), so nothing here can touch anything else.  A link whose
alias digest still matches is adopted as it is — same ifindex, no packet lost across a restart;
only MTU, up state and the alias are set in place.  Order: remove stale links and L2TP tunnels,
create, configure, then delete stale routes and replace missing or moved ones (routes go with
their device when it is deleted, so a re-created tunnel gets all its routes again).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from afbr.dataplane.kernel_plan import L2TP_ETH_ADDRESS, L2TP_LINK_KIND, KernelPlan, LinkPlan
from afbr.dataplane.rtnl_wire import IFF_NOARP, IFF_UP, LinkInfo, RouteKey


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
class CreateLink:
    link: LinkPlan  # a tunnel device, or an L2TP tunnel + session when link.l2tp is set


@dataclass(frozen=True)
class ConfigureLink:
    link: LinkPlan  # alias, MTU, up (and for L2TP: fixed MAC, no ARP)
    set_address: bool


@dataclass(frozen=True)
class DeleteRoutes:
    routes: tuple[tuple[RouteKey, int], ...]  # (key, oif)


@dataclass(frozen=True)
class ReplaceRoutes:
    routes: tuple[tuple[RouteKey, str], ...]  # (key, tunnel name)


Action = DeleteLink | DeleteL2tpTunnel | CreateLink | ConfigureLink | DeleteRoutes | ReplaceRoutes


def diff(plan: KernelPlan, observed: ObservedState) -> list[Action]:
    """The actions that turn `observed` into `plan`; empty when they already agree."""
    wanted = {link.name: link for link in plan.links}
    removals, recreated, gone = _removals(wanted, observed)
    actions: list[Action] = list(removals)
    for link in plan.links:
        have = observed.links.get(link.name)
        fresh = have is None or link.name in recreated
        if fresh:
            actions.append(CreateLink(link))
        if fresh or have is None or _needs_configure(link, have):
            actions.append(ConfigureLink(link, set_address=fresh))
    actions.extend(_route_actions(plan, observed, recreated, gone))
    return actions


def _removals(
    wanted: dict[str, LinkPlan], observed: ObservedState
) -> tuple[list[Action], set[str], set[str]]:
    """Stale or changed links and L2TP tunnels to delete; names to create again; all gone."""
    actions: list[Action] = []
    recreated: set[str] = set()
    gone: set[str] = set()
    keep_tunnels: set[int] = set()
    for name, have in sorted(observed.links.items()):
        want = wanted.get(name)
        if want is not None and _matches(want, have, observed):
            if want.l2tp is not None:
                keep_tunnels.add(want.l2tp.tunnel_id)
            continue
        gone.add(name)
        if want is not None:
            recreated.add(name)
        if have.kind != L2TP_LINK_KIND:  # an l2tpeth device goes with its L2TP tunnel
            actions.append(DeleteLink(name, have.index))
    # Includes a tunnel left without its device (a crash between tunnel and session).
    for tunnel_id in sorted(observed.l2tp_tunnels - keep_tunnels):
        actions.append(DeleteL2tpTunnel(tunnel_id))
    return actions, recreated, gone


def _matches(want: LinkPlan, have: LinkInfo, observed: ObservedState) -> bool:
    if want.alias != have.alias or want.kind != have.kind:
        return False
    if want.l2tp is None:
        return True
    return want.l2tp.tunnel_id in observed.l2tp_tunnels and have.address == L2TP_ETH_ADDRESS


def _needs_configure(want: LinkPlan, have: LinkInfo) -> bool:
    noarp = want.l2tp is not None
    return (
        have.mtu != want.mtu
        or not have.flags & IFF_UP
        or bool(have.flags & IFF_NOARP) != noarp
        or have.alias != want.alias
    )


def _route_actions(
    plan: KernelPlan, observed: ObservedState, recreated: set[str], gone: set[str]
) -> list[Action]:
    names = {link.index: name for name, link in observed.links.items()}
    stale = tuple(
        (key, oif)
        for key, oif in observed.routes.items()
        if key not in plan.routes and names.get(oif) not in gone
    )
    missing = tuple(
        (key, name)
        for key, name in plan.routes.items()
        if name in recreated or names.get(observed.routes.get(key, -1)) != name
    )
    actions: list[Action] = []
    if stale:
        actions.append(DeleteRoutes(stale))
    if missing:
        actions.append(ReplaceRoutes(missing))
    return actions
