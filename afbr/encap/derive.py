"""Desired softwire state from the best paths and the local policy (pure; RFC 5565 §4-§6).

Rules:
- Per path, the encapsulation is the first kind in the local preference order that the remote
  AFBR also offered (DESIGN "Encap choice"); the path's prefix is routed into that tunnel.
- The remote AFBR chooses on its own from what *we* advertised (RFC 5565 §4), so it may send
  with another encapsulation than the one we send with: every kind both sides support gets a
  tunnel towards that endpoint, routed into or not, so whatever it chooses is decapsulated.
- L2TPv3 (RFC 3931) serves one remote AFBR per local session id.  Over IP the kernel
  demultiplexes by session id alone (no tunnel id on the wire, RFC 3931 §4.1.1.1) and refuses
  a second session with the same id, over IP or UDP; over UDP it binds each tunnel's socket to
  the local port exclusively.  As BGP advertises one session id and port to every AFBR, the
  lowest endpoint that can use L2TPv3 gets it (with its preferred transport only) and the
  others fall to their next common kind.
- Tunnel names are `afbr` + 11 hex digits of a hash of (kind, remote endpoint, remote
  parameters): stable across restarts, so a restarted dataplane finds its own tunnels.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import defaultdict
from collections.abc import Iterable

from afbr.encap.model import (
    L2TP_KINDS,
    NAME_PREFIX,
    DesiredState,
    EncapKind,
    EncapOffer,
    FilterSpec,
    IPAddress,
    IPNetwork,
    IpsecMode,
    IpsecNeed,
    LocalEncapPolicy,
    RemotePath,
    RouteSpec,
    TunnelSpec,
)
from afbr.encap.mtu import tunnel_mtu
from afbr.encap.prefix_sets import aggregate

IFNAMSIZ = 15


def tunnel_name(remote: IPAddress, offer: EncapOffer) -> str:
    """A stable interface name for the softwire to `remote` with `offer` (<= 15 characters)."""
    identity = "|".join(
        (
            offer.kind.name,
            str(remote),
            str(offer.gre_key),
            str(offer.l2tpv3_session_id),
            offer.l2tpv3_cookie.hex(),
            str(offer.udp_port),
        )
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()
    return (NAME_PREFIX + digest)[:IFNAMSIZ]


def usable(offer: EncapOffer, policy: LocalEncapPolicy) -> bool:
    """True when both sides have what this kind needs."""
    if offer.kind in L2TP_KINDS:
        return policy.l2tpv3_session_id is not None and offer.l2tpv3_session_id is not None
    if offer.kind is EncapKind.ESP_TUNNEL:  # needs our IKEv2 agent keying ESP tunnel mode
        return policy.ipsec is IpsecMode.TUNNEL
    return True


def common_offers(
    offers: Iterable[EncapOffer], policy: LocalEncapPolicy, excluded: frozenset[EncapKind]
) -> list[EncapOffer]:
    """Offers both sides support, in local preference order (one per kind)."""
    by_kind: dict[EncapKind, EncapOffer] = {}
    for offer in offers:
        if offer.kind not in excluded and usable(offer, policy):
            by_kind.setdefault(offer.kind, offer)
    return [by_kind[kind] for kind in policy.preference if kind in by_kind]


def local_address(policy: LocalEncapPolicy, remote: IPAddress) -> IPAddress | None:
    """Our outer source for a softwire to `remote` (same family as the core)."""
    return policy.local_v4 if remote.version == 4 else policy.local_v6


def derive_desired(paths: Iterable[RemotePath], policy: LocalEncapPolicy) -> DesiredState:
    """The tunnels, routes, filter sets and IPsec needs for these best paths."""
    by_endpoint: dict[IPAddress, list[RemotePath]] = defaultdict(list)
    for path in paths:
        by_endpoint[path.endpoint].append(path)
    state = _Derivation(policy)
    for endpoint in sorted(by_endpoint, key=_address_key):
        state.add_endpoint(endpoint, by_endpoint[endpoint])
    ordered = tuple(state.tunnels[name] for name in sorted(state.tunnels))
    state.routes.sort(key=lambda keyed: keyed[0])
    state.unusable.sort(key=lambda p: (_address_key(p.endpoint), _network_key(p.prefix)))
    return DesiredState(
        tunnels=ordered,
        routes=tuple(route for _key, route in state.routes),
        filters=_filters(policy, by_endpoint, state.sources),
        ipsec=_ipsec_needs(policy, ordered),
        unusable=tuple(state.unusable),
    )


class _Derivation:
    """The state derive_desired accumulates, endpoint by endpoint (lowest address first)."""

    def __init__(self, policy: LocalEncapPolicy) -> None:
        self.policy = policy
        self.claimed: set[EncapKind] = set()
        self.tunnels: dict[str, TunnelSpec] = {}
        self.routes: list[tuple[tuple[int, int, int], RouteSpec]] = []  # best paths: one per prefix
        self.unusable: list[RemotePath] = []
        self.sources: dict[str, tuple[IPNetwork, ...]] = {}

    def add_endpoint(self, endpoint: IPAddress, paths: list[RemotePath]) -> None:
        policy = self.policy
        # The paths of one AFBR share their encap tuple (one object per RIB path): dedupe by
        # identity first, so 100k paths do not hash 100k tuples of dataclasses.
        shared = {id(path.encaps): path.encaps for path in paths}
        encap_sets = set(shared.values())
        if len(encap_sets) > 1:  # which offer of a kind wins depends on order: fix it
            paths = sorted(paths, key=lambda p: _network_key(p.prefix))
        local = local_address(policy, endpoint)
        excluded = _excluded_kinds(policy, encap_sets, self.claimed)
        common = {key: common_offers(encaps, policy, excluded) for key, encaps in shared.items()}
        chosen: list[tuple[tuple[int, int, int], IPNetwork, EncapOffer]] = []
        receive: dict[EncapKind, EncapOffer] = {}
        for path in paths:
            offers = common[id(path.encaps)]
            if local is None or not offers:
                self.unusable.append(path)
                continue
            key = path.key or _network_key(path.prefix)
            chosen.append((key, path.prefix, offers[0]))
            for offer in offers:
                receive.setdefault(offer.kind, offer)
        if local is None or not receive:
            return
        self.claimed.update(receive)
        chosen.sort(key=lambda item: item[0])
        families = frozenset(key[0] for key, _prefix, _offer in chosen)
        advertised = aggregate(key for key, _prefix, _offer in chosen)  # same addresses, fewer
        names: dict[EncapOffer, str] = {}
        used = {id(offer): offer for _key, _prefix, offer in chosen}  # identity, as above
        for offer in set(used.values()) | set(receive.values()):
            spec = _tunnel_spec(policy, local, endpoint, offer, families)
            names[offer] = spec.name
            self.tunnels[spec.name] = spec
            self.sources[spec.name] = advertised
        self.routes.extend(
            (key, RouteSpec(prefix, names[offer], key)) for key, prefix, offer in chosen
        )


def _excluded_kinds(
    policy: LocalEncapPolicy,
    encap_sets: set[tuple[EncapOffer, ...]],
    claimed: set[EncapKind],
) -> frozenset[EncapKind]:
    """Kinds this endpoint may not use: L2TPv3 when another endpoint has it, and of the two
    L2TPv3 transports the one it does not prefer (one session id, one remote)."""
    if claimed & L2TP_KINDS:
        return L2TP_KINDS
    ranked = [
        offer.kind
        for encaps in encap_sets
        for offer in common_offers(encaps, policy, frozenset())
        if offer.kind in L2TP_KINDS
    ]
    if not ranked:
        return frozenset()
    best = min(ranked, key=policy.preference.index)
    return L2TP_KINDS - {best}


def _tunnel_spec(
    policy: LocalEncapPolicy,
    local: IPAddress,
    remote: IPAddress,
    offer: EncapOffer,
    families: frozenset[int],
) -> TunnelSpec:
    return TunnelSpec(
        name=tunnel_name(remote, offer),
        kind=offer.kind,
        local=local,
        remote=remote,
        offer=offer,
        local_gre_key=policy.gre_key if offer.kind is EncapKind.GRE else None,
        local_session_id=policy.l2tpv3_session_id if offer.kind in L2TP_KINDS else None,
        local_cookie=policy.l2tpv3_cookie if offer.kind in L2TP_KINDS else b"",
        local_udp_port=policy.l2tpv3_udp_port,
        inner_families=families or frozenset({4, 6}),
        mtu=tunnel_mtu(
            offer.kind, remote.version, offer, policy.underlay_mtu, policy.extra_overhead
        ),
    )


def _filters(
    policy: LocalEncapPolicy,
    by_endpoint: dict[IPAddress, list[RemotePath]],
    sources: dict[str, tuple[IPNetwork, ...]],
) -> FilterSpec:
    ports = {policy.l2tpv3_udp_port}
    shared = {id(path.encaps): path.encaps for paths in by_endpoint.values() for path in paths}
    for encaps in shared.values():  # one per RIB path, not per prefix
        ports.update(
            o.udp_port or policy.l2tpv3_udp_port for o in encaps if o.kind is EncapKind.L2TPV3_UDP
        )
    return FilterSpec(
        tunnel_sources=tuple(sorted(sources.items())),  # RFC 5619 §3.3
        afbr_endpoints=frozenset(by_endpoint),
        bgp_neighbors=policy.bgp_neighbors,
        l2tp_udp_ports=frozenset(ports),
    )


def _ipsec_needs(
    policy: LocalEncapPolicy, tunnels: tuple[TunnelSpec, ...]
) -> tuple[IpsecNeed, ...]:
    if policy.ipsec is IpsecMode.NONE:
        return ()
    if policy.ipsec is IpsecMode.TUNNEL:  # the ESP softwires themselves need SAs
        return tuple(
            IpsecNeed(t.name, t.local, t.remote, policy.ipsec)
            for t in tunnels
            if t.kind is EncapKind.ESP_TUNNEL
        )
    return tuple(IpsecNeed(t.name, t.local, t.remote, policy.ipsec) for t in tunnels)


def _address_key(address: IPAddress) -> tuple[int, int]:
    return (address.version, int(address))


def _network_key(network: IPNetwork) -> tuple[int, int, int]:
    return (network.version, int(network.network_address), network.prefixlen)


def parse_address(text: str) -> IPAddress:
    """An address from text; an IPv4-mapped IPv6 next hop becomes IPv4 (RFC 4798 §2)."""
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
