"""afbr.encap.prefix_sets.aggregate against the standard library's collapse_addresses (the
oracle: both give the minimal CIDR cover of the same addresses)."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from afbr.encap.prefix_sets import aggregate


def key(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[int, int, int]:
    return (network.version, int(network.network_address), network.prefixlen)


def oracle(networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> list[str]:
    v4 = [n for n in networks if n.version == 4]
    v6 = [n for n in networks if n.version == 6]
    return [str(n) for group in (v4, v6) for n in ipaddress.collapse_addresses(group)]


def test_adjacent_halves_become_their_parent_and_gaps_stay() -> None:
    nets = [ipaddress.ip_network(t) for t in ("10.0.0.0/25", "10.0.0.128/25", "10.0.2.0/24")]
    assert [str(n) for n in aggregate(key(n) for n in nets)] == ["10.0.0.0/24", "10.0.2.0/24"]


def test_covered_prefixes_disappear_and_families_stay_apart() -> None:
    texts = ("2001:db8::/32", "2001:db8:1::/48", "192.0.2.0/24", "192.0.2.64/26", "0.0.0.0/0")
    nets = [ipaddress.ip_network(t) for t in texts]
    assert [str(n) for n in aggregate(key(n) for n in nets)] == ["0.0.0.0/0", "2001:db8::/32"]


def test_a_run_of_blocks_that_is_not_aligned_splits_into_the_fewest_prefixes() -> None:
    nets = [ipaddress.ip_network(f"10.0.{i}.0/24") for i in range(1, 7)]  # 10.0.1.0 - 10.0.6.255
    result = [str(n) for n in aggregate(key(n) for n in nets)]
    assert result == ["10.0.1.0/24", "10.0.2.0/23", "10.0.4.0/23", "10.0.6.0/24"]
    assert result == oracle(nets)


v4_networks = st.builds(
    lambda value, length: ipaddress.IPv4Network((value >> (32 - length) << (32 - length), length)),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
v6_networks = st.builds(
    lambda value, length: ipaddress.IPv6Network(
        (value >> (128 - length) << (128 - length), length)
    ),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)
clustered_v4 = st.builds(  # many near one another, so that merging happens
    lambda value, length: ipaddress.IPv4Network(
        ((0xC6336400 + value) >> (32 - length) << (32 - length), length)
    ),
    st.integers(0, 1023),
    st.integers(22, 32),
)


@given(st.lists(st.one_of(v4_networks, v6_networks, clustered_v4), max_size=60))
def test_same_addresses_as_the_standard_library(networks: list) -> None:  # type: ignore[type-arg]
    assert [str(n) for n in aggregate(key(n) for n in networks)] == oracle(networks)
