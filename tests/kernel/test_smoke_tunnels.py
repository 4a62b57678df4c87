"""Kernel smoke tests: a real ping through each point-to-point tunnel type afbr may build
(RFC 5565 §4: GRE, IP-in-IP in all four family combinations).

Each row is one tunnel device on both ends of the veth pair, an inner address on it, and a
ping from `a` to `b` through it.  A failure here means the kernel (or the UML harness) lacks
the encapsulation, not that afbr is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from smoke_topology import INNER, OUTER, Pair, Undo, ping, veth_pair

pytestmark = [pytest.mark.kernel, pytest.mark.netns]


@dataclass(frozen=True)
class TunnelCase:
    kind: str  # `ip link add ... type KIND`
    outer: int  # address family of the underlay
    inner: int  # address family pinged through the tunnel
    options: str = ""


CASES = {
    "gre": TunnelCase("gre", 4, 4),
    "gre-6in4": TunnelCase("gre", 4, 6),
    "gretap": TunnelCase("gretap", 4, 4),
    "ip6gre-4in6": TunnelCase("ip6gre", 6, 4),
    "ip6gre": TunnelCase("ip6gre", 6, 6),
    "ipip": TunnelCase("ipip", 4, 4),
    "sit": TunnelCase("sit", 4, 6),
    "ip6tnl-ipip6": TunnelCase("ip6tnl", 6, 4, "mode ipip6"),
    "ip6tnl-ip6ip6": TunnelCase("ip6tnl", 6, 6, "mode ip6ip6"),
}


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with veth_pair("tun") as built:
        yield built


@pytest.fixture
def undo(pair: Pair) -> Iterator[Undo]:
    cleanup = Undo()
    yield cleanup
    cleanup.run()


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_ping_through_tunnel(pair: Pair, undo: Undo, case: TunnelCase) -> None:
    outer, inner = OUTER[case.outer], INNER[case.inner]
    for me, peer, host in ((0, 1, pair.a), (1, 0, pair.b)):
        undo.add(host, "link del smoke0")
        nodad = " nodad" if case.inner == 6 else ""
        host.ip_batch(
            [
                f"link add smoke0 type {case.kind} {case.options} "
                f"local {outer[me]} remote {outer[peer]} ttl 64",
                "link set smoke0 up",
                f"addr add {inner[me]}/{inner[2]} dev smoke0{nodad}",
            ]
        )
    result = ping(pair.a, inner[1])
    assert result.received == 3
