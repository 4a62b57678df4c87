"""The demo mesh as data: every generated afbr.yaml is a valid config, the topology holds
together, and the containerlab files describe the same nodes, links and configs as the
namespace runner builds (and match what is committed in lab/demo/)."""

from __future__ import annotations

import ipaddress
import stat
import tomllib
from pathlib import Path

import pytest
import yaml

from afbr.config import load_config, parse_config
from afbr.lab.demo_clab import TOPOLOGY_FILE, clab_files, clab_topology, write_clab
from afbr.lab.demo_mesh import (
    DemoKeys,
    NodePaths,
    build_mesh,
    ip_batch_lines,
    render_afbr_yaml,
    write_afbr_files,
)
from afbr.lab.demo_reflector import gobgp_config
from afbr.lab.demo_report import render_summary, summary_json
from afbr.lab.demo_traffic import parse_ping

MESH = build_mesh()
REPO = Path(__file__).resolve().parents[2]
ALLOWED = [
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "fd00::/8")
]

REGENERATE = "python -m afbr.lab.demo_clab --write lab/demo"


def _within(inner: ipaddress.IPv4Network | ipaddress.IPv6Network, outer: object) -> bool:
    return inner.version == getattr(outer, "version", None) and inner.subnet_of(outer)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", [a.name for a in MESH.afbrs])
@pytest.mark.parametrize("md5", [True, False], ids=["md5", "no-md5"])
@pytest.mark.parametrize("ipsec", [True, False], ids=["ipsec", "no-ipsec"])
def test_every_generated_config_loads(tmp_path: Path, name: str, md5: bool, ipsec: bool) -> None:
    spec = MESH.afbr(name)
    keys = DemoKeys.generate(MESH)
    paths = NodePaths.workdir(tmp_path / spec.name)
    write_afbr_files(MESH, spec, keys, paths, tmp_path / spec.name, md5=md5, ipsec=ipsec)
    config = load_config(paths.config)
    assert config.core.address == spec.core_address
    assert config.client_prefixes == (spec.island,)
    assert config.client_family == spec.client_family
    assert config.control_socket == paths.control_socket
    assert config.state_dir == paths.state_dir
    (neighbor,) = config.bgp.neighbors
    assert neighbor.address == MESH.reflector.addresses[spec.core_family]
    assert (neighbor.md5_key is not None) == md5
    assert config.ipsec.enabled == ipsec
    for key_file in ("bgp-keys.yaml", "ike-keys.yaml"):
        assert stat.S_IMODE((tmp_path / spec.name / key_file).stat().st_mode) == 0o600
    if md5:
        bgp_keys = yaml.safe_load(paths.bgp_keys.read_text())
        assert bgp_keys == {MESH.reflector.name: keys.md5[spec.name]}
    ike_keys = yaml.safe_load(paths.ike_keys.read_text())
    assert set(ike_keys) == {str(p.core_address) for p in MESH.partners(spec)}


def test_the_committed_container_configs_load() -> None:
    for afbr in MESH.afbrs:
        text = render_afbr_yaml(MESH, afbr, NodePaths.container())
        config = parse_config(text, afbr.name)
        assert str(config.bgp.keys_file) == "/etc/afbr/bgp-keys.yaml"


def test_issue_6_shape() -> None:
    """Two IPv4 islands over the IPv6 core, IPv6 islands over the IPv4 core, every island
    with a partner of its family, a dual-stack reflector."""
    by_core = {4: [a for a in MESH.afbrs if a.core_family == 4], 6: []}
    by_core[6] = [a for a in MESH.afbrs if a.core_family == 6]
    assert len(by_core[6]) == 2 and all(a.client_family == 4 for a in by_core[6])
    assert len(by_core[4]) >= 1 and all(a.client_family == 6 for a in by_core[4])
    assert {a.site for a in MESH.afbrs} == {"A", "B", "C"}
    for afbr in MESH.afbrs:
        assert MESH.partners(afbr), afbr.name
    assert set(MESH.reflector.addresses) == {4, 6}
    pairs = {(s.name, d.name) for s, d in MESH.traffic_pairs()}
    assert pairs == {("a", "b"), ("b", "a"), ("a6", "c"), ("c", "a6")}


def test_addresses_only_from_documentation_ranges() -> None:
    seen = []
    for node in MESH.nodes:
        for interface in node.interfaces:
            for cidr in interface.addresses:
                address = ipaddress.ip_interface(cidr).ip
                assert any(address in net for net in ALLOWED), (node.name, cidr)
                seen.append(address)
    for afbr in MESH.afbrs:
        assert any(_within(afbr.island, net) for net in ALLOWED), afbr.island
    assert len(seen) == len(set(seen)), "an address is used twice"


def test_links_join_existing_interfaces_once() -> None:
    ends = [(link.a, link.a_if) for link in MESH.links] + [(k.b, k.b_if) for k in MESH.links]
    assert len(ends) == len(set(ends)), "an interface is on two links"
    names = {node.name for node in MESH.nodes}
    for node_name, ifname in ends:
        assert node_name in names
        assert ifname in {i.name for i in MESH.node(node_name).interfaces}, (node_name, ifname)
    for node in MESH.nodes:  # every interface is wired
        for interface in node.interfaces:
            assert (node.name, interface.name) in ends


def test_client_hosts_route_through_their_afbrs() -> None:
    for afbr in MESH.afbrs:
        client = MESH.node(afbr.client)
        assert f"default via {afbr.gateway}" in client.routes
        lines = ip_batch_lines(client)
        assert f"addr add {afbr.client_address}/{afbr.island.prefixlen} dev {afbr.client_if}" in (
            line.removesuffix(" nodad") for line in lines
        )


def test_gobgp_config_has_each_client_with_its_key_and_family() -> None:
    keys = DemoKeys.generate(MESH)
    config = tomllib.loads(gobgp_config(MESH, keys))
    neighbors = {n["config"]["neighbor-address"]: n for n in config["neighbors"]}
    assert set(neighbors) == {str(a.core_address) for a in MESH.afbrs}
    for afbr in MESH.afbrs:
        n = neighbors[str(afbr.core_address)]
        assert n["config"]["auth-password"] == keys.md5[afbr.name]  # RFC 2385 on every session
        assert n["transport"]["config"]["local-address"] == str(
            MESH.reflector.addresses[afbr.core_family]
        )
        assert n["route-reflector"]["config"]["route-reflector-client"] is True
        families = [f["config"]["afi-safi-name"] for f in n["afi-safis"]]
        assert families == [f"ipv{afbr.client_family}-unicast"]
    off = tomllib.loads(gobgp_config(MESH, keys, unauthenticated=frozenset({"a"})))
    without = {n["config"]["neighbor-address"]: n["config"] for n in off["neighbors"]}
    assert "auth-password" not in without["2001:db8::a"]
    assert "auth-password" in without["2001:db8::b"]


def test_keys_are_fresh_per_run_and_distinct_per_session() -> None:
    one, two = DemoKeys.generate(MESH), DemoKeys.generate(MESH)
    assert one.md5 != two.md5
    assert len(set(one.md5.values())) == len(MESH.afbrs)
    assert set(one.ike) == {frozenset(("a", "b")), frozenset(("a6", "c"))}


def test_clab_describes_the_same_nodes_and_links_as_the_runner() -> None:
    topology = clab_topology(MESH)["topology"]
    assert set(topology["nodes"]) == {node.name for node in MESH.nodes}
    clab_links = {tuple(link["endpoints"]) for link in topology["links"]}
    runner_links = {(f"{k.a}:{k.a_if}", f"{k.b}:{k.b_if}") for k in MESH.links}
    assert clab_links == runner_links
    files = clab_files(MESH)
    for node in MESH.nodes:
        batch = files[f"{node.name}/ip.batch"].splitlines()
        assert batch == ip_batch_lines(node)
        assert "ip -batch /etc/afbr-demo/ip.batch" in files[f"{node.name}/start.sh"]
    for afbr in MESH.afbrs:
        expected = render_afbr_yaml(MESH, afbr, NodePaths.container())
        assert files[f"{afbr.name}/afbr.yaml"] == expected
        assert "exec afbr run -c /etc/afbr/afbr.yaml" in files[f"{afbr.name}/start.sh"]
    management = clab_topology(MESH)["mgmt"]
    for subnet in (management["ipv4-subnet"], management["ipv6-subnet"]):
        assert any(_within(ipaddress.ip_network(subnet), net) for net in ALLOWED), subnet


def test_committed_lab_demo_is_up_to_date(tmp_path: Path) -> None:
    """lab/demo/ is what `python -m afbr.lab.demo_clab --write lab/demo` writes."""
    write_clab(MESH, tmp_path)
    for relative, text in clab_files(MESH).items():
        committed = REPO / "lab" / "demo" / relative
        assert committed.exists(), f"{committed} missing: run {REGENERATE}"
        assert committed.read_text() == text, f"{committed} is stale: run {REGENERATE}"
    assert (tmp_path / TOPOLOGY_FILE).exists()


def test_ping_summary_parsing() -> None:
    a, b = MESH.afbr("a"), MESH.afbr("b")
    out = (
        "--- 203.0.113.10 ping statistics ---\n"
        "5 packets transmitted, 4 received, 20% packet loss, time 812ms\n"
        "rtt min/avg/max/mdev = 0.210/0.345/0.601/0.130 ms\n"
    )
    result = parse_ping(a, b, out)
    assert (result.sent, result.received, result.lost, result.ok) == (5, 4, 1, False)
    assert result.rtt_avg_ms == pytest.approx(0.345)
    assert result.family == 4 and result.address == "203.0.113.10"
    nothing = parse_ping(a, b, "ping: connect: Network is unreachable\n")
    assert (nothing.sent, nothing.ok) == (0, False)


def test_summary_shows_each_afbr_the_traffic_and_what_is_missing() -> None:
    a, b = MESH.afbr("a"), MESH.afbr("b")
    good = parse_ping(a, b, "5 packets transmitted, 5 received, 0% packet loss\n")
    lossy = parse_ping(b, a, "5 packets transmitted, 3 received, 40% packet loss\n")
    snapshot = {
        afbr.name: {
            "status": {"neighbors": [{"address": "2001:db8::1", "state": "up", "md5": True}]},
            "tunnels": [{"name": "t1"}],
            "routes": [{"prefix": "x"}],
            "sas": [{"spi": 1}] if afbr.name != "c" else [],
            "audit": [{"requirement": "r", "status": "pass"}],
        }
        for afbr in MESH.afbrs
    }
    text = render_summary(MESH, snapshot, [good, lossy], converged_after=12.5, elapsed=30.0)
    lines = text.splitlines()
    assert lines[1].split()[:4] == ["AFBR", "SITE", "ISLAND", "CORE"]
    assert any(line.startswith("a6 ") and "192.0.2.10" in line for line in lines)
    assert "no SA is installed on c " in text
    assert "LOSS" in text and lines[-1].startswith("result: FAILED: 1/2 directions")
    body = summary_json(MESH, snapshot, [good], converged_after=12.5, elapsed=30.0)
    assert body["ok"] is True and body["traffic"][0]["received"] == 5
    assert set(body["afbrs"]) == {a.name for a in MESH.afbrs}
