"""afbr's control plane against real route reflectors (GoBGP, BIRD), TCP-MD5 on every session.

Two afbr control planes, A and B (ExaBGP + afbr's plugin, exactly as the daemon runs them), are
clients of one reflector.  A announces its client prefixes with its SW-Encap set and IPsec
Tunnel Authenticator; the test checks what GoBGP decoded of A's attribute, and that B's
softwire RIB holds exactly A's prefixes with exactly that attribute — IPv4 clients over an
IPv6 core (RFC 8950 next hop) and IPv6 clients over an IPv4 core (IPv4-mapped next hop).
A wrong MD5 key gets no session.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
from bgp_interop_support import (
    A_AUTHENTICATOR,
    A_ENCAP,
    CLIENT_PREFIXES,
    KEY,
    afbr_config,
    codec_tunnels,
    expected_a_tunnels,
    gobgp_tunnels,
    poll,
)

from afbr.lab.afbr_control_plane import AfbrControlPlane
from afbr.lab.netns import Lab
from afbr.lab.peers import Bird, GoBgp, PeerError, tcp_md5_rejections
from afbr.lab.reflector_lab import ReflectorKind, ReflectorLab, reflector_lab

pytestmark = [pytest.mark.interop, pytest.mark.netns]


def _start_planes(
    topo: ReflectorLab, tmp_path: Path, a_key: str = KEY
) -> tuple[AfbrControlPlane, AfbrControlPlane]:
    a = AfbrControlPlane(
        topo.clients["a"],
        tmp_path / "afbr-a",
        config=afbr_config(topo, "a", ipsec=True, encap=A_ENCAP),
        md5_keys={"rr": a_key},
        ipsec_keys={topo.addresses["b"]: "0x0123456789abcdef0123456789abcdef"},
        authenticator=A_AUTHENTICATOR,
    ).start()
    b = AfbrControlPlane(
        topo.clients["b"],
        tmp_path / "afbr-b",
        config=afbr_config(topo, "b", ipsec=False, encap={"preference": ["ip-in-ip"]}),
        md5_keys={"rr": KEY},
    ).start()
    return a, b


def _explain(rr: GoBgp | Bird, a: AfbrControlPlane, client_family: int) -> str:
    """What the reflector holds and what A logged, for a failure message."""
    if isinstance(rr, Bird):
        held = rr.cli("show", "route", "all", "table", f"master{client_family}")
        protocols = rr.cli("show", "protocols")
    else:
        held = str(rr.rib(f"ipv{client_family}"))
        protocols = str(rr.cli_json("neighbor"))[:2000]
    return (
        f"reflector routes:\n{held}\nreflector sessions:\n{protocols}\n"
        f"A's dump: {a.rib_dump()}\nA's log:\n{a.log_tail(60)}\n{rr.log_tail(30)}"
    )


def _reflected_attribute(rr: GoBgp | Bird, prefix: str, client_family: int) -> str | None:
    """BIRD keeps attribute 23 opaque (`BGP.17`): its octets as hex, once it has the route."""
    assert isinstance(rr, Bird)
    for line in rr.routes(f"master{client_family}").get(prefix, []):
        found = re.match(r"BGP\.17 \[\w*\]: ([0-9a-f ]+)$", line)
        if found:
            return found.group(1).replace(" ", "")
    return None


@pytest.mark.parametrize("core", [6, 4], ids=["ipv4-over-ipv6", "ipv6-over-ipv4"])
@pytest.mark.parametrize("kind", ["gobgp", "bird"])
def test_attribute_crosses_the_reflector(
    lab: Lab, tmp_path: Path, kind: ReflectorKind, core: int
) -> None:
    topo = reflector_lab(lab, tmp_path, core=core, clients=["a", "b"])
    client_family = 10 - core  # 4 over 6, 6 over 4
    rr = topo.start_reflector(kind, {"a": KEY, "b": KEY})
    a, b = _start_planes(topo, tmp_path)
    rr.wait_established(topo.addresses["a"])
    rr.wait_established(topo.addresses["b"])
    a_prefixes = CLIENT_PREFIXES[core]["a"]
    expected = expected_a_tunnels(client_family)

    try:
        dump = b.wait_dump(
            lambda d: set(d.get("prefixes", {})) >= set(a_prefixes),
            timeout=30,
            what="A's prefixes in B's softwire RIB",
        )
    except PeerError as exc:
        raise AssertionError(f"{exc}\n{_explain(rr, a, client_family)}") from exc
    # Exactly A's prefixes (B's own are not in its RIB), each with A's attribute.
    assert sorted(dump["prefixes"]) == sorted(a_prefixes)
    a_core = ipaddress.ip_address(topo.addresses["a"])
    for prefix in a_prefixes:
        path = dump["prefixes"][prefix]
        assert codec_tunnels(path["tunnel_encap"]) == expected, prefix
        assert path["tunnel_types"] == [4, 2, 7, 1]
        assert ipaddress.ip_address(path["endpoint"]) == a_core  # RFC 5565 §9
        assert path["problems"] == []
    assert dump["counters"] == {} or all(v == 0 for v in dump["counters"].values())
    assert dump["api_errors"] == {}
    if core == 4:  # RFC 4798 §2: IPv6 NLRI with the IPv4-mapped next hop
        next_hop = ipaddress.ip_address(path["next_hop"])
        assert isinstance(next_hop, ipaddress.IPv6Address)
        assert next_hop.ipv4_mapped == a_core
    else:  # RFC 8950: IPv4 NLRI with an IPv6 next hop
        assert ipaddress.ip_address(path["next_hop"]) == a_core

    if isinstance(rr, GoBgp):
        rib = poll(lambda: rr.rib(f"ipv{client_family}"), timeout=10, what="GoBGP's RIB")
        for prefix in a_prefixes:
            (gobgp_path,) = [p for p in rib[prefix] if p["neighbor-ip"] == str(a_core)]
            assert gobgp_tunnels(gobgp_path) == expected, prefix
    else:
        reflected = _reflected_attribute(rr, a_prefixes[0], client_family)
        assert reflected == dump["prefixes"][a_prefixes[0]]["tunnel_encap"]  # byte-identical
        assert codec_tunnels(reflected) == expected

    # A's side: it announced its prefixes and ExaBGP accepted every command.
    a_dump = a.wait_dump(lambda d: bool(d.get("command_acks")), what="A's command acks")
    assert sorted(a_dump["advertised"][f"ipv{client_family}"]) == sorted(a_prefixes)
    assert a_dump["command_acks"].get("error", 0) == 0
    assert b.rib_dump()["neighbors_up"] == [topo.rr_address]


@pytest.mark.parametrize("kind", ["gobgp", "bird"])
def test_wrong_md5_key_gets_no_session(lab: Lab, tmp_path: Path, kind: ReflectorKind) -> None:
    topo = reflector_lab(lab, tmp_path, core=6, clients=["a", "b"])
    rr = topo.start_reflector(kind, {"a": KEY, "b": KEY})
    a, b = _start_planes(topo, tmp_path, a_key="not-" + KEY)
    rr.wait_established(topo.addresses["b"])  # the right key still works next to it
    poll(lambda: tcp_md5_rejections(topo.rr) > 0, timeout=10, what="segments refused for MD5")
    assert rr.session_state(topo.addresses["a"]) != "established"
    a_dump: dict[str, Any] = a.rib_dump()
    assert a_dump.get("neighbors_up", []) == []
    b_dump = b.wait_dump(lambda d: d.get("neighbors_up") == [topo.rr_address], what="B up")
    assert b_dump["prefixes"] == {}  # nothing from A reached B
