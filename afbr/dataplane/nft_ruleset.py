"""The decapsulation filter and access control as one nftables table (pure rendering).

RFC 5619 §3.3 (ingress filtering at the softwire egress; the reference practice is Junos's
ip-tunnel-rpf-check): a packet that comes out of a softwire with an inner source outside
what that AFBR advertised is dropped and counted, per tunnel (`spoof_<tunnel>`).
RFC 5619 §4 access control: tunnel protocols (IP-in-IP 4, IPv6 41, GRE 47, ESP 50, L2TP
115; UDP 500/4500 for IKE and ESP-in-UDP, the L2TP UDP ports) only from known AFBR endpoints
(`tunnel_from_unknown`), BGP (TCP 179) only from configured neighbors (`bgp_from_unknown`).

The script replaces the table's contents in one `nft -f` transaction: it creates the table
if missing, flushes every chain, deletes the chains and counters of tunnels that are gone
(their names are read from the kernel by the adapter) and declares the rest.  Counters that
stay are declared again, which keeps their values.  A kernel without nft_objref
(CONFIG_NFT_OBJREF) cannot reference named counters from rules: there the drops count in
inline counters named by their rule's comment, which restart from zero when the table is
rewritten.
"""

from __future__ import annotations

from collections.abc import Iterable

from afbr.encap.model import FilterSpec, IPAddress, IPNetwork

TABLE = "afbr"
FAMILY = "inet"
TUNNEL_PROTOCOLS = (4, 41, 47, 50, 115)  # IP-in-IP, IPv6, GRE, ESP, L2TPv3 over IP
IKE_PORTS = (500, 4500)  # RFC 7296 §2; RFC 3948 ESP-in-UDP
BGP_PORT = 179
UNKNOWN_ENDPOINT_COUNTER = "tunnel_from_unknown"
UNKNOWN_BGP_COUNTER = "bgp_from_unknown"
DECAP_CHAIN_PREFIX = "decap_"
SPOOF_COUNTER_PREFIX = "spoof_"


def spoof_counter(tunnel: str) -> str:
    return SPOOF_COUNTER_PREFIX + tunnel


def decap_chain(tunnel: str) -> str:
    return DECAP_CHAIN_PREFIX + tunnel


def drop_counted(counter: str, *, named: bool) -> str:
    """A counted drop: into the named counter object, or (kernels without nft_objref) an
    inline counter whose rule carries the name as its comment."""
    return f'counter name "{counter}" drop' if named else f'counter drop comment "{counter}"'


def render_ruleset(
    filters: FilterSpec,
    existing_chains: Iterable[str] = (),
    existing_counters: Iterable[str] = (),
    *,
    named_counters: bool = True,
) -> str:
    """The `nft -f` script for `filters`, deleting the listed objects that are no longer used."""
    tunnels = [name for name, _ in filters.tunnel_sources]
    chains, counters = declared_objects(filters, named_counters=named_counters)
    lines = [f"add table {FAMILY} {TABLE}", f"flush table {FAMILY} {TABLE}"]
    lines += [f"delete chain {FAMILY} {TABLE} {c}" for c in sorted(set(existing_chains) - chains)]
    lines += [
        f"delete counter {FAMILY} {TABLE} {c}" for c in sorted(set(existing_counters) - counters)
    ]
    lines.append(f"table {FAMILY} {TABLE} {{")
    lines += [f"\tcounter {c} {{ }}" for c in sorted(counters)]
    for tunnel, prefixes in filters.tunnel_sources:
        lines += _decap_chain(tunnel, prefixes, named_counters)
    lines += _prerouting(tunnels)
    lines += _input(filters, named_counters)
    lines.append("}")
    return "\n".join(lines) + "\n"


def declared_objects(
    filters: FilterSpec, *, named_counters: bool = True
) -> tuple[frozenset[str], frozenset[str]]:
    """The chains and counter objects afbr's table holds when `filters` is installed."""
    tunnels = [name for name, _ in filters.tunnel_sources]
    chains = {decap_chain(t) for t in tunnels} | {"prerouting", "input"}
    counters = {spoof_counter(t) for t in tunnels} | {
        UNKNOWN_ENDPOINT_COUNTER,
        UNKNOWN_BGP_COUNTER,
    }
    return frozenset(chains), frozenset(counters if named_counters else ())


def _decap_chain(tunnel: str, prefixes: tuple[IPNetwork, ...], named: bool) -> list[str]:
    counter = drop_counted(spoof_counter(tunnel), named=named)
    rules = [f"\tchain {decap_chain(tunnel)} {{"]
    for version, match in ((4, "ip saddr"), (6, "ip6 saddr")):
        family = f"meta nfproto ipv{version}"
        allowed = [str(p) for p in prefixes if p.version == version]
        if allowed:  # RFC 5619 §3.3: inner source within what that AFBR advertised
            rules.append(f"\t\t{family} {match} != {_set(allowed)} {counter}")
        else:
            rules.append(f"\t\t{family} {counter}")
    rules.append("\t}")
    return rules


def _prerouting(tunnels: list[str]) -> list[str]:
    rules = ["\tchain prerouting {", "\t\ttype filter hook prerouting priority raw; policy accept;"]
    if tunnels:
        jumps = ", ".join(f'"{t}" : jump {decap_chain(t)}' for t in tunnels)
        rules.append(f"\t\tiifname vmap {{ {jumps} }}")
    rules.append("\t}")
    return rules


def _input(filters: FilterSpec, named: bool) -> list[str]:
    rules = ["\tchain input {", "\t\ttype filter hook input priority filter; policy accept;"]
    udp = sorted({*IKE_PORTS, *filters.l2tp_udp_ports})
    for version, match in ((4, "ip saddr"), (6, "ip6 saddr")):
        family = f"meta nfproto ipv{version}"
        endpoints = _only(filters.afbr_endpoints, version)
        neighbors = _only(filters.bgp_neighbors, version)
        tunnel_drop = drop_counted(UNKNOWN_ENDPOINT_COUNTER, named=named)
        bgp_drop = drop_counted(UNKNOWN_BGP_COUNTER, named=named)
        source = f"{match} != {_set(endpoints)} " if endpoints else ""
        peers = f"{match} != {_set(neighbors)} " if neighbors else ""
        protocols = _set(str(p) for p in TUNNEL_PROTOCOLS)
        rules += [
            f"\t\t{family} meta l4proto {protocols} {source}{tunnel_drop}",
            f"\t\t{family} udp dport {_set(str(p) for p in udp)} {source}{tunnel_drop}",
            f"\t\t{family} tcp dport {BGP_PORT} {peers}{bgp_drop}",
            f"\t\t{family} tcp sport {BGP_PORT} {peers}{bgp_drop}",
        ]
    rules.append("\t}")
    return rules


def _only(addresses: Iterable[IPAddress], version: int) -> list[str]:
    return sorted(str(a) for a in addresses if a.version == version)


def _set(items: Iterable[str]) -> str:
    return "{ " + ", ".join(items) + " }"
