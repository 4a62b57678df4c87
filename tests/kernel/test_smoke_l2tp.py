"""Kernel smoke tests: a real ping through an L2TPv3 Ethernet pseudowire (RFC 3931), the
softwire encapsulation of RFC 5565 §4.2, over IP (protocol 115) and over UDP, with an IPv4 and
an IPv6 underlay.  Static tunnels: `ip l2tp add tunnel` + `ip l2tp add session`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from smoke_topology import INNER, OUTER, Pair, Undo, ping, veth_pair

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

# (encapsulation, outer family)
CASES = [("ip", 4), ("udp", 4), ("ip", 6), ("udp", 6)]
TUNNEL_IDS = (1000, 2000)  # a's, b's
SESSION_IDS = (100, 200)
UDP_PORTS = (1701, 1702)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with veth_pair("l2tp") as built:
        yield built


@pytest.fixture
def undo(pair: Pair) -> Iterator[Undo]:
    cleanup = Undo()
    yield cleanup
    cleanup.run()


@pytest.mark.parametrize(("encap", "outer_family"), CASES, ids=[f"{e}-v{f}" for e, f in CASES])
def test_ping_through_l2tpv3_session(pair: Pair, undo: Undo, encap: str, outer_family: int) -> None:
    outer, inner = OUTER[outer_family], INNER[4]
    for me, peer, host in ((0, 1, pair.a), (1, 0, pair.b)):
        undo.add(host, f"l2tp del tunnel tunnel_id {TUNNEL_IDS[me]}")
        ports = f" udp_sport {UDP_PORTS[me]} udp_dport {UDP_PORTS[peer]}" if encap == "udp" else ""
        host.ip_batch(
            [
                f"l2tp add tunnel tunnel_id {TUNNEL_IDS[me]} peer_tunnel_id {TUNNEL_IDS[peer]} "
                f"encap {encap} local {outer[me]} remote {outer[peer]}{ports}",
                f"l2tp add session name smoke0 tunnel_id {TUNNEL_IDS[me]} "
                f"session_id {SESSION_IDS[me]} peer_session_id {SESSION_IDS[peer]}",
                "link set smoke0 up",
                f"addr add {inner[me]}/{inner[2]} dev smoke0",
            ]
        )
    result = ping(pair.a, inner[1])
    assert result.received == 3
