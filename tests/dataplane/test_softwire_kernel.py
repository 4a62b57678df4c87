"""The softwire dataplane in the real kernel: CE-A, AFBR-A, core, AFBR-B, CE-B.

The AFBRs are driven from an in-memory feed of remote paths (no BGP): each test derives the
desired state with the encap manager and reconciles it in the AFBR's namespace (netlink
sockets opened there with setns, nft run through `ip netns exec`).  One topology serves the
whole module; each case reconciles to its own state, which also removes the previous case's
tunnels.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from afbr.dataplane.softwires import SoftwireDataplane
from afbr.encap.derive import derive_desired
from afbr.encap.model import (
    DesiredState,
    EncapKind,
    EncapOffer,
    IPAddress,
    LocalEncapPolicy,
    RemotePath,
)
from afbr.lab.netns import Host, Lab

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

# Core (underlay) addresses: each AFBR's endpoint in both families.
CORE = {
    "a": {6: "2001:db8:c1::a", 4: "192.0.2.2"},
    "b": {6: "2001:db8:c2::b", 4: "192.0.2.66"},
}
# Client islands: (AFBR side, CE side, prefix) per family.
ISLAND = {
    "a": {4: ("198.51.100.1", "198.51.100.10", "198.51.100.0/25"),
          6: ("2001:db8:a::1", "2001:db8:a::10", "2001:db8:a::/64")},
    "b": {4: ("198.51.100.129", "198.51.100.138", "198.51.100.128/25"),
          6: ("2001:db8:b::1", "2001:db8:b::10", "2001:db8:b::/64")},
}  # fmt: skip
# The encapsulations this dataplane builds itself (ESP softwires need the IKEv2 agent's SAs).
SOFTWIRE_KINDS = (EncapKind.GRE, EncapKind.IP_IN_IP, EncapKind.L2TPV3_IP, EncapKind.L2TPV3_UDP)
SPOOFED_SOURCE = "203.0.113.10"  # on CE-A, advertised by nobody
GRE_KEYS = {"a": 1001, "b": 1002}
L2TP_SESSIONS = {"a": 0x1A, "b": 0x1B}
L2TP_COOKIES = {"a": bytes.fromhex("a1a2a3a4"), "b": bytes.fromhex("b1b2b3b4b5b6b7b8")}


@dataclass
class Topology:
    hosts: dict[str, Host]
    dataplanes: dict[str, SoftwireDataplane]


def _build(lab: Lab) -> dict[str, Host]:
    hosts = {
        "ce_a": lab.host("cea"),
        "a": lab.host("afa", forwarding=True),
        "core": lab.host("core", forwarding=True),
        "b": lab.host("afb", forwarding=True),
        "ce_b": lab.host("ceb"),
    }
    lab.link(hosts["ce_a"], "eth0", hosts["a"], "eth0")
    lab.link(hosts["a"], "eth1", hosts["core"], "eth0")
    lab.link(hosts["core"], "eth1", hosts["b"], "eth1")
    lab.link(hosts["b"], "eth0", hosts["ce_b"], "eth0")
    hosts["core"].ip_batch(
        [
            "addr add 2001:db8:c1::1/64 dev eth0 nodad",
            "addr add 192.0.2.1/26 dev eth0",
            "addr add 2001:db8:c2::1/64 dev eth1 nodad",
            "addr add 192.0.2.65/26 dev eth1",
        ]
    )
    for side, gw6, gw4 in (("a", "2001:db8:c1::1", "192.0.2.1"),
                           ("b", "2001:db8:c2::1", "192.0.2.65")):  # fmt: skip
        net6 = "2001:db8:c2::/64" if side == "a" else "2001:db8:c1::/64"
        net4 = "192.0.2.64/26" if side == "a" else "192.0.2.0/26"
        hosts[side].ip_batch(
            [
                f"addr add {CORE[side][6]}/64 dev eth1 nodad",
                f"addr add {CORE[side][4]}/26 dev eth1",
                f"route add {net6} via {gw6}",
                f"route add {net4} via {gw4}",
                f"addr add {ISLAND[side][4][0]}/25 dev eth0",
                f"addr add {ISLAND[side][6][0]}/64 dev eth0 nodad",
            ]
        )
        ce = hosts["ce_" + side]
        lines = [
            f"addr add {ISLAND[side][4][1]}/25 dev eth0",
            f"addr add {ISLAND[side][6][1]}/64 dev eth0 nodad",
            f"route add default via {ISLAND[side][4][0]}",
            f"route add default via {ISLAND[side][6][0]}",
        ]
        if side == "a":
            lines.append(f"addr add {SPOOFED_SOURCE}/32 dev eth0")
        ce.ip_batch(lines)
    return hosts


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    with Lab("sw") as lab:
        hosts = _build(lab)
        planes = {side: SoftwireDataplane(hosts[side].name) for side in ("a", "b")}
        try:
            yield Topology(hosts, planes)
        finally:
            for plane in planes.values():
                plane.close()


def policy(side: str) -> LocalEncapPolicy:
    return LocalEncapPolicy(
        preference=SOFTWIRE_KINDS,
        local_v4=ipaddress.IPv4Address(CORE[side][4]),
        local_v6=ipaddress.IPv6Address(CORE[side][6]),
        gre_key=GRE_KEYS[side],
        l2tpv3_session_id=L2TP_SESSIONS[side],
        l2tpv3_cookie=L2TP_COOKIES[side],
        l2tpv3_udp_port=1701,
    )


def offer(kind: EncapKind, side: str) -> EncapOffer:
    """What AFBR `side` advertises for `kind` (its own parameters)."""
    mine = policy(side)
    if kind is EncapKind.GRE:
        return EncapOffer(kind, gre_key=mine.gre_key)
    if kind in (EncapKind.L2TPV3_IP, EncapKind.L2TPV3_UDP):
        port = 1701 if kind is EncapKind.L2TPV3_UDP else None
        return EncapOffer(
            kind,
            l2tpv3_session_id=mine.l2tpv3_session_id,
            l2tpv3_cookie=mine.l2tpv3_cookie,
            udp_port=port,
        )
    return EncapOffer(kind)


def feed(
    kind: EncapKind, client: int, core: int, *, extra: tuple[str, ...] = ()
) -> dict[str, list[RemotePath]]:
    """Per AFBR, the remote paths it would learn: the other island's prefix (and extras)."""
    paths: dict[str, list[RemotePath]] = {}
    for side, other in (("a", "b"), ("b", "a")):
        prefixes = [ISLAND[other][client][2], *(extra if other == "b" else ())]
        endpoint: IPAddress = ipaddress.ip_address(CORE[other][core])
        paths[side] = [
            RemotePath(ipaddress.ip_network(p), endpoint, (offer(kind, other),), other)
            for p in prefixes
        ]
    return paths


def reconcile_both(topo: Topology, paths: dict[str, list[RemotePath]]) -> dict[str, DesiredState]:
    desired = {}
    for side in ("a", "b"):
        desired[side] = derive_desired(paths[side], policy(side))
        report = topo.dataplanes[side].reconcile(desired[side])
        assert report.errors == [], report.errors
    return desired


_PING = re.compile(r"(\d+) packets transmitted, (\d+) received")


def ping(host: Host, target: str, *, count: int = 3, source: str | None = None) -> tuple[int, int]:
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-w", "6"]
    if source:
        argv += ["-I", source]
    proc = subprocess.run(host.argv(*argv, target), capture_output=True, text=True, check=False)
    found = _PING.search(proc.stdout)
    assert found is not None, proc.stdout + proc.stderr
    return int(found.group(1)), int(found.group(2))


CASES = [
    pytest.param(kind, client, core, id=f"{kind.name.lower()}-v{client}-over-v{core}")
    for kind in SOFTWIRE_KINDS
    for client, core in ((4, 6), (6, 4))
]


@pytest.mark.parametrize(("kind", "client", "core"), CASES)
def test_client_traffic_crosses_the_core(
    topo: Topology, kind: EncapKind, client: int, core: int
) -> None:
    desired = reconcile_both(topo, feed(kind, client, core))
    assert {t.kind for t in desired["a"].tunnels} == {kind}
    sent, received = ping(topo.hosts["ce_a"], ISLAND["b"][client][1])
    assert received == sent
    # Everything is in place: a second reconcile changes nothing.
    again = topo.dataplanes["a"].reconcile(desired["a"])
    assert not again.changed and again.errors == [], (
        again,
        topo.dataplanes["a"].plan_actions(desired["a"]),
        topo.dataplanes["a"].kernel.observe().links,
    )


def afbr_routes(host: Host) -> str:
    return host.run("ip", "route", "show", "proto", "175") + host.run(
        "ip", "-6", "route", "show", "proto", "175"
    )


def afbr_links(host: Host) -> dict[str, int]:
    """afbr's tunnels by name -> ifindex."""
    found = {}
    for line in host.run("ip", "-o", "link", "show").splitlines():
        index, name = line.split(":")[:2]
        name = name.strip().split("@")[0]
        if name.startswith("afbr"):
            found[name] = int(index)
    return found


def test_withdrawn_prefix_loses_its_route_and_unused_tunnel_goes(topo: Topology) -> None:
    extra = "203.0.113.128/25"
    reconcile_both(topo, feed(EncapKind.GRE, 4, 6, extra=(extra,)))
    assert extra in afbr_routes(topo.hosts["a"])
    reconcile_both(topo, feed(EncapKind.GRE, 4, 6))
    assert extra not in afbr_routes(topo.hosts["a"])
    assert afbr_links(topo.hosts["a"])  # the tunnel still carries the other prefix
    reconcile_both(topo, {"a": [], "b": []})
    assert afbr_routes(topo.hosts["a"]).strip() == ""
    assert afbr_links(topo.hosts["a"]) == {}


def test_spoofed_inner_source_is_dropped_and_counted(topo: Topology) -> None:
    desired = reconcile_both(topo, feed(EncapKind.GRE, 4, 6))
    (tunnel,) = desired["b"].tunnels
    counter = topo.dataplanes["b"].spoof_counter(tunnel.name)
    before = topo.dataplanes["b"].counters()[counter].packets
    sent, received = ping(topo.hosts["ce_a"], ISLAND["b"][4][1], source=SPOOFED_SOURCE)
    assert received == 0
    assert topo.dataplanes["b"].counters()[counter].packets - before >= sent
    # the genuine source still passes
    sent, received = ping(topo.hosts["ce_a"], ISLAND["b"][4][1])
    assert received == sent


def test_gre_from_an_unknown_outer_source_is_dropped(topo: Topology) -> None:
    reconcile_both(topo, feed(EncapKind.GRE, 4, 6))
    core = topo.hosts["core"]
    core.ip_batch(
        [
            f"link add gspoof type ip6gre local 2001:db8:c2::1 remote {CORE['b'][6]} "
            f"okey {GRE_KEYS['b']} encaplimit none",
            "link set gspoof up",
            f"route add {ISLAND['b'][4][2]} dev gspoof",
        ]
    )
    try:
        before = topo.dataplanes["b"].counters()["tunnel_from_unknown"].packets
        sent, received = ping(core, ISLAND["b"][4][1], count=2)
        assert received == 0
        after = topo.dataplanes["b"].counters()["tunnel_from_unknown"].packets
        assert after - before >= sent
    finally:
        core.ip_batch(["link del gspoof"])


@pytest.mark.parametrize("kind", [EncapKind.GRE, EncapKind.L2TPV3_UDP])
def test_restart_adopts_tunnels_and_loses_no_packet(topo: Topology, kind: EncapKind) -> None:
    paths = feed(kind, 4, 6)
    reconcile_both(topo, paths)
    before = afbr_links(topo.hosts["a"])
    pinger = topo.hosts["ce_a"].popen(
        "ping", "-n", "-q", "-c", "40", "-i", "0.05", ISLAND["b"][4][1], stdout=subprocess.PIPE
    )
    for side in ("a", "b"):  # a new dataplane object, as after a daemon restart
        topo.dataplanes[side].close()
        topo.dataplanes[side] = SoftwireDataplane(topo.hosts[side].name)
        report = topo.dataplanes[side].reconcile(derive_desired(paths[side], policy(side)))
        assert report.errors == []
        assert report.links_created == 0 and report.links_deleted == 0
        assert report.routes_replaced == 0 and report.routes_deleted == 0
    out, _ = pinger.communicate(timeout=30)
    found = _PING.search(out.decode())
    assert found is not None and found.group(1) == found.group(2) == "40", out
    assert afbr_links(topo.hosts["a"]) == before
