"""The decapsulation filter's nftables script: rendered without root, applied in a namespace."""

from __future__ import annotations

import ipaddress
import sys

import pytest

from afbr.dataplane.nft_filter import CounterValue, FilterState, NftFilter
from afbr.dataplane.nft_ruleset import declared_objects, render_ruleset
from afbr.encap.model import FilterSpec

net = ipaddress.ip_network
addr = ipaddress.ip_address
FILTERS = FilterSpec(
    tunnel_sources=(
        ("afbr0123456789a", (net("198.51.100.0/24"), net("203.0.113.0/25"))),
        ("afbr0123456789b", (net("2001:db8:5::/48"),)),
    ),
    afbr_endpoints=frozenset({addr("2001:db8::2"), addr("192.0.2.2")}),
    bgp_neighbors=frozenset({addr("2001:db8::99")}),
    l2tp_udp_ports=frozenset({1701, 1702}),
)


def test_each_tunnel_admits_only_what_its_afbr_advertised() -> None:
    script = render_ruleset(FILTERS)
    assert (
        "meta nfproto ipv4 ip saddr != { 198.51.100.0/24, 203.0.113.0/25 } "
        'counter name "spoof_afbr0123456789a" drop'
    ) in script
    # a family the AFBR advertised nothing of is dropped whole
    assert 'meta nfproto ipv6 counter name "spoof_afbr0123456789a" drop' in script
    assert 'meta nfproto ipv4 counter name "spoof_afbr0123456789b" drop' in script
    assert (
        'iifname vmap { "afbr0123456789a" : jump decap_afbr0123456789a, '
        '"afbr0123456789b" : jump decap_afbr0123456789b }'
    ) in script


def test_tunnel_protocols_only_from_afbrs_and_bgp_only_from_neighbors() -> None:
    script = render_ruleset(FILTERS)
    assert (
        "meta nfproto ipv6 meta l4proto { 4, 41, 47, 50, 115 } ip6 saddr != { 2001:db8::2 } "
        'counter name "tunnel_from_unknown" drop'
    ) in script
    assert "meta nfproto ipv4 udp dport { 500, 1701, 1702, 4500 } ip saddr != { 192.0.2.2 }" in (
        script
    )
    assert (
        "meta nfproto ipv6 tcp dport 179 ip6 saddr != { 2001:db8::99 } counter name "
        '"bgp_from_unknown" drop'
    ) in script
    # no IPv4 neighbor configured: all IPv4 BGP is refused
    assert 'meta nfproto ipv4 tcp dport 179 counter name "bgp_from_unknown" drop' in script


def test_objects_of_tunnels_gone_are_deleted_in_the_same_transaction() -> None:
    script = render_ruleset(
        FILTERS,
        existing_chains=["decap_afbrold", "decap_afbr0123456789a", "input"],
        existing_counters=["spoof_afbrold", "spoof_afbr0123456789a"],
    )
    lines = script.splitlines()
    assert lines[:4] == [
        "add table inet afbr",
        "flush table inet afbr",
        "delete chain inet afbr decap_afbrold",
        "delete counter inet afbr spoof_afbrold",
    ]
    assert "decap_afbr0123456789a" not in "".join(lines[:4])


@pytest.mark.netns
def test_applied_atomically_counters_kept_stale_objects_removed(lab: object) -> None:
    host = lab.host("nft")  # type: ignore[attr-defined]
    nft = NftFilter(host.name)
    assert nft.counters() == {}  # before the first reconcile: no table, nothing counted
    nft.named_counters = False
    assert nft.counters() == {}
    nft.named_counters = True
    assert nft.apply(FILTERS) is True
    assert nft.apply(FILTERS) is False  # unchanged: no nft run
    counters = nft.counters()
    assert set(counters) == {
        "spoof_afbr0123456789a",
        "spoof_afbr0123456789b",
        "tunnel_from_unknown",
        "bgp_from_unknown",
    }
    # Count something: BGP to ourselves over loopback from a non-neighbor is dropped.
    probe = (
        "import socket; s = socket.socket(); s.settimeout(0.3); s.connect_ex(('127.0.0.1', 179))"
    )
    host.run(sys.executable, "-c", probe, check=False)
    dropped = nft.counters()["bgp_from_unknown"].packets
    assert dropped >= 1
    fewer = FilterSpec(
        tunnel_sources=FILTERS.tunnel_sources[:1],
        afbr_endpoints=FILTERS.afbr_endpoints,
        bgp_neighbors=FILTERS.bgp_neighbors,
    )
    fresh = NftFilter(host.name)  # a restarted daemon: reads what is there
    assert fresh.apply(fewer) is True
    after = fresh.counters()
    assert "spoof_afbr0123456789b" not in after
    if fresh.named_counters:  # kernels without nft_objref count inline, from zero again
        assert after["bgp_from_unknown"].packets == dropped
    chains, _counters = fresh.existing()
    assert "decap_afbr0123456789b" not in chains


def test_without_nft_objref_the_drops_count_inline_under_the_same_names() -> None:
    script = render_ruleset(FILTERS, existing_counters=["spoof_afbrold"], named_counters=False)
    assert "counter name" not in script
    assert "\tcounter " not in script  # no counter objects declared
    assert "delete counter inet afbr spoof_afbrold" in script
    assert 'counter drop comment "spoof_afbr0123456789a"' in script
    assert 'counter drop comment "tunnel_from_unknown"' in script


def test_the_table_is_installed_only_with_every_chain_and_counter_declared() -> None:
    chains, counters = declared_objects(FILTERS)
    assert chains == {"prerouting", "input", "decap_afbr0123456789a", "decap_afbr0123456789b"}
    values = dict.fromkeys(counters, CounterValue(0, 0))
    assert FilterState(chains, values).holds(FILTERS)
    assert FilterState(chains | {"decap_afbrold"}, values).holds(FILTERS)  # extra: still holds
    assert not FilterState(chains - {"input"}, values).holds(FILTERS)
    del values["spoof_afbr0123456789b"]
    assert not FilterState(chains, values).holds(FILTERS)
    assert FilterState(chains, {}).holds(FILTERS, named_counters=False)  # inline counters
    assert not FilterState(frozenset(), {}).holds(FilterSpec())  # no table at all


@pytest.mark.netns
def test_state_reads_chains_and_counters_and_no_table_as_empty(lab: object) -> None:
    host = lab.host("nfs")  # type: ignore[attr-defined]
    nft = NftFilter(host.name)
    assert nft.state() == FilterState(frozenset(), {})
    nft.apply(FILTERS)
    assert nft.state().holds(FILTERS)
    host.run("nft", "flush chain inet afbr input; delete chain inet afbr input")
    assert not nft.state().holds(FILTERS)
