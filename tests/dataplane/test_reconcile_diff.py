"""Reconcile as a pure function: desired kernel plan against observed afbr objects."""

from __future__ import annotations

import ipaddress

from afbr.dataplane.kernel_plan import L2TP_ETH_ADDRESS, KernelPlan, kernel_plan, route_key
from afbr.dataplane.reconcile import (
    ConfigureLink,
    CreateLink,
    DeleteL2tpTunnel,
    DeleteLink,
    DeleteRoutes,
    ModifyLink,
    ObservedState,
    ReplaceRoutes,
    diff,
    reconcile_plan,
)
from afbr.dataplane.rtnl_wire import IFF_NOARP, IFF_UP, LinkInfo
from afbr.encap.derive import derive_desired
from afbr.encap.model import EncapKind, EncapOffer, LocalEncapPolicy, RemotePath

POLICY = LocalEncapPolicy(
    preference=(EncapKind.GRE, EncapKind.L2TPV3_UDP),
    local_v6=ipaddress.IPv6Address("2001:db8::1"),
    l2tpv3_session_id=1,
)


def plan_for(*paths: tuple[str, str, EncapKind]) -> KernelPlan:
    remote = [
        RemotePath(
            ipaddress.ip_network(prefix),
            ipaddress.ip_address(endpoint),
            (EncapOffer(kind, l2tpv3_session_id=2),),
        )
        for prefix, endpoint, kind in paths
    ]
    return kernel_plan(derive_desired(remote, POLICY))


def observed_as(plan: KernelPlan, **changes: int) -> ObservedState:
    """The kernel after a perfect apply of `plan` (ifindex from 10)."""
    links = {}
    for index, link in enumerate(plan.links, start=10):
        noarp = IFF_NOARP if link.l2tp else 0
        address = L2TP_ETH_ADDRESS if link.l2tp else b""
        links[link.name] = LinkInfo(
            index, link.name, link.kind, link.alias, changes.get("mtu", link.mtu),
            IFF_UP | noarp, address,
        )  # fmt: skip
    by_name = {name: info.index for name, info in links.items()}
    routes = {key: by_name[name] for key, name in plan.routes.items()}
    tunnels = frozenset(link.l2tp.tunnel_id for link in plan.links if link.l2tp)
    return ObservedState(links, tunnels, routes)


A = ("198.51.100.0/24", "2001:db8::2", EncapKind.GRE)
B = ("203.0.113.0/24", "2001:db8::3", EncapKind.GRE)
C = ("192.0.2.0/25", "2001:db8::4", EncapKind.L2TPV3_UDP)


def test_from_empty_everything_is_created_then_routed() -> None:
    plan = plan_for(A, B, C)
    actions = diff(plan, ObservedState())
    kinds = [type(a) for a in actions]
    assert kinds == [CreateLink, ConfigureLink] * 3 + [ReplaceRoutes]
    assert isinstance(actions[-1], ReplaceRoutes) and len(actions[-1].routes) == 3


def test_no_change_means_no_action() -> None:
    plan = plan_for(A, B, C)
    assert diff(plan, observed_as(plan)) == []


def test_a_restart_adopts_matching_links_and_only_fixes_what_differs() -> None:
    plan = plan_for(A, B)
    actions = diff(plan, observed_as(plan, mtu=1400))
    assert [type(a) for a in actions] == [ConfigureLink, ConfigureLink]
    assert not any(isinstance(a, ConfigureLink) and a.set_address for a in actions)


def test_a_withdrawn_prefix_loses_its_route_and_an_unused_tunnel_goes() -> None:
    old = plan_for(A, B)
    new = plan_for(A)
    observed = observed_as(old)
    actions = diff(new, observed)
    gone = next(link for link in old.links if link.name not in {x.name for x in new.links})
    # the device's routes go with it: no separate route delete for them
    assert actions == [DeleteLink(gone.name, observed.links[gone.name].index)]


def test_a_withdrawn_prefix_on_a_tunnel_still_in_use_is_deleted() -> None:
    second = ("198.51.100.128/25", "2001:db8::2", EncapKind.GRE)
    old = plan_for(A, second)
    observed = observed_as(old)
    actions = diff(plan_for(A), observed)
    key = route_key(ipaddress.ip_network(second[0]))
    assert actions == [DeleteRoutes(((key, observed.routes[key]),))]


def test_changed_parameters_recreate_the_link_and_its_routes() -> None:
    plan = plan_for(A)
    observed = observed_as(plan)
    (link,) = plan.links
    index = observed.links[link.name].index
    stale = LinkInfo(index, link.name, link.kind, "afbr:0000", link.mtu, IFF_UP, b"")
    actions = diff(plan, ObservedState({link.name: stale}, frozenset(), observed.routes))
    # changed in place: same device, its routes stay
    assert actions == [ModifyLink(link, link.name, index)]


def test_a_device_no_longer_wanted_is_reused_for_a_new_tunnel_of_its_kind() -> None:
    old = plan_for(A, B)
    observed = observed_as(old)
    moved = ("192.0.2.128/25", "2001:db8::5", EncapKind.GRE)  # B withdrew, another AFBR came
    new = plan_for(A, moved)
    result = reconcile_plan(new, observed)
    new_link = next(link for link in new.links if link.name not in observed.links)
    old_link = next(link for link in old.links if link.name not in {x.name for x in new.links})
    device = result.devices[new_link.name]
    assert device == old_link.name  # no delete, no create
    index = observed.links[device].index
    key = route_key(ipaddress.ip_network(moved[0]))
    old_key = route_key(ipaddress.ip_network(B[0]))
    assert result.actions == [
        DeleteRoutes(((old_key, index),)),  # before the device carries traffic elsewhere
        ModifyLink(new_link, device, index),
        ReplaceRoutes(((key, device),)),
    ]


def test_a_route_in_the_wrong_tunnel_is_replaced() -> None:
    plan = plan_for(A, B)
    observed = observed_as(plan)
    key_a = route_key(ipaddress.ip_network(A[0]))
    key_b = route_key(ipaddress.ip_network(B[0]))
    routes = dict(observed.routes)
    routes[key_a] = observed.routes[key_b]
    actions = diff(plan, ObservedState(observed.links, observed.l2tp_tunnels, routes))
    assert actions == [ReplaceRoutes(((key_a, plan.routes[key_a]),))]


def test_an_l2tp_tunnel_without_its_device_is_removed_and_rebuilt() -> None:
    plan = plan_for(C)
    observed = observed_as(plan)
    (link,) = plan.links
    assert link.l2tp is not None
    broken = ObservedState({}, observed.l2tp_tunnels, {})
    actions = diff(plan, broken)
    assert actions[0] == DeleteL2tpTunnel(link.l2tp.tunnel_id)
    assert [type(a) for a in actions[1:]] == [CreateLink, ConfigureLink, ReplaceRoutes]


def test_an_afbr_route_into_no_known_tunnel_is_deleted() -> None:
    key = route_key(ipaddress.ip_network("198.51.100.0/24"))
    assert diff(KernelPlan((), {}), ObservedState({}, frozenset(), {key: 99})) == [
        DeleteRoutes(((key, 99),))
    ]
