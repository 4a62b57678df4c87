"""The demo mesh end to end (issue 6 item 7), in a real kernel with real peers.

One demo per module (afbr.lab.demo_mesh: AFBRs a, b, a6, c, GoBGP reflector, TCP-MD5, IPsec),
built once because start-up is slow inside UML; every test starts from the converged mesh and
puts back what it changed.  Traffic is ping between the client hosts behind the AFBRs, so
every packet crosses two AFBRs and the softwire between them.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
from demo_e2e_support import (
    MESH_TIMEOUT,
    WITHDRAW_TIMEOUT,
    back_to_normal,
    esp_states,
    kernel_routes,
    running_demo,
    wait_for,
)

from afbr.cli import main
from afbr.daemon.control_socket import ControlClientError
from afbr.lab.demo_runner import RunningDemo
from afbr.lab.demo_traffic import Ping, PingResult

pytestmark = [pytest.mark.kernel, pytest.mark.netns, pytest.mark.interop]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    with running_demo(tmp_path_factory.mktemp("demo"), dataplane=True) as running:
        yield running


@pytest.fixture(autouse=True)
def converged(demo: RunningDemo) -> Iterator[None]:
    demo.wait_mesh(MESH_TIMEOUT)
    yield
    back_to_normal(demo)


def _pings_between(demo: RunningDemo, one: str, two: str) -> list[Ping]:
    """Pings both ways between the islands of AFBRs `one` and `two`, until stopped."""
    a, b = demo.mesh.afbr(one), demo.mesh.afbr(two)
    return [
        Ping(demo.hosts[a.client], a, b, count=None, interval=0.1),
        Ping(demo.hosts[b.client], b, a, count=None, interval=0.1),
    ]


def _nothing_lost(results: list[PingResult], minimum: int) -> None:
    for result in results:
        assert result.sent >= minimum, result.output
        assert result.lost == 0, f"{result.source}->{result.destination}: {result.output}"


def test_traffic_in_every_direction(demo: RunningDemo) -> None:
    results = demo.ping_islands(count=5)
    directions = {(r.source, r.destination) for r in results}
    assert directions == {("a", "b"), ("b", "a"), ("a6", "c"), ("c", "a6")}
    for result in results:
        assert result.ok, result.output
    for afbr in demo.mesh.afbrs:  # routed into a softwire, not anywhere else
        for partner in demo.mesh.partners(afbr):
            route = kernel_routes(demo.hosts[afbr.name], str(partner.island))
            assert "dev " in route and "eth1" not in route, (afbr.name, route)


def test_softwires_are_protected_by_ipsec(demo: RunningDemo) -> None:
    demo.ping_islands(count=2)
    for afbr in demo.mesh.afbrs:
        states = esp_states(demo.hosts[afbr.name])
        for partner in demo.mesh.partners(afbr):
            me, peer = str(afbr.core_address), str(partner.core_address)
            assert {(me, peer), (peer, me)} <= states, (afbr.name, states)
        sas = demo.query(afbr.name, "sas")
        assert isinstance(sas, list) and sas, f"{afbr.name}: `afbr sas` lists no SA"


def test_the_log_records_the_activity_rfc_5619_asks_for(demo: RunningDemo) -> None:
    """RFC 5619 §3.4.1: sessions up, SAs up (rekeys, failures and filtered packets have their
    own tests: tests/ipsec, tests/daemon/test_activity_log.py)."""
    for afbr in demo.mesh.afbrs:
        log = demo.daemons[afbr.name].log.read_text(errors="replace")
        for event in ("event=bgp-up", "event=ike-up", "event=sa-up"):
            assert event in log, f"{afbr.name}: no {event} in its log"


def test_audit_passes_on_the_demo(demo: RunningDemo, capsys: pytest.CaptureFixture[str]) -> None:
    for afbr in demo.mesh.afbrs:
        socket = str(demo.daemons[afbr.name].paths.control_socket)
        assert main(["audit", "--socket", socket]) == 0, capsys.readouterr().out
        rows = demo.query(afbr.name, "audit")
        assert isinstance(rows, list) and rows
        assert [r for r in rows if r["status"] == "fail"] == []


def test_restarting_exabgp_alone_loses_nothing(demo: RunningDemo) -> None:
    (old,) = demo.exabgp_pids("a")
    pings = _pings_between(demo, "a", "b")
    time.sleep(1.0)
    os.kill(old, signal.SIGKILL)  # a crash: afbr's supervisor restarts it
    wait_for(
        lambda: demo.exabgp_pids("a") not in ([], [old]),
        timeout=30,
        what="afbr to start a new ExaBGP",
    )
    demo.wait_mesh(MESH_TIMEOUT)
    time.sleep(2.0)
    _nothing_lost([p.stop() for p in pings], minimum=20)
    status = demo.query("a", "status")
    assert isinstance(status, dict) and status["exabgp"]["restarts"] >= 1
    assert demo.daemons["a"].running()  # afbr itself was not restarted


@pytest.mark.parametrize(
    "restarted", ["a", "b"], ids=["lower-address-initiator", "higher-address-responder"]
)
def test_restarting_afbr_under_ping_loses_nothing(demo: RunningDemo, restarted: str) -> None:
    pings = _pings_between(demo, "a", "b")
    time.sleep(1.0)
    sas_before = {sa["spi_in"] for sa in demo.query("b" if restarted == "a" else "a", "sas")}
    demo.stop_afbr(restarted)  # SIGTERM: the control plane stops, forwarding stays
    time.sleep(2.0)
    demo.start_afbr(restarted)  # adopts the kernel objects, negotiates new SAs
    demo.wait_mesh(MESH_TIMEOUT)
    other = "b" if restarted == "a" else "a"
    wait_for(
        lambda: not sas_before & {sa["spi_in"] for sa in demo.query(other, "sas")},
        timeout=30,
        what=f"{other} to move to the SAs negotiated with the restarted {restarted}",
    )
    time.sleep(5.0)  # past the switch and the old pairs' removal (afbr.ipsec.xfrm_adapter)
    _nothing_lost([p.stop() for p in pings], minimum=60)


@pytest.mark.parametrize("stopped", ["b", "c"], ids=["ipv6-core", "ipv4-core"])
def test_stopping_an_afbr_withdraws_its_prefixes_and_tunnels_elsewhere(
    demo: RunningDemo, stopped: str
) -> None:
    gone = demo.mesh.afbr(stopped)
    (witness,) = demo.mesh.partners(gone)
    assert demo.sees(witness.name, stopped) == (True, True)
    demo.stop_afbr(stopped)
    wait_for(
        lambda: demo.sees(witness.name, stopped) == (False, False),
        timeout=WITHDRAW_TIMEOUT,
        what=f"{witness.name} to drop {stopped}'s route and softwire",
    )
    assert kernel_routes(demo.hosts[witness.name], str(gone.island)) == ""
    tunnels = demo.query(witness.name, "tunnels")
    assert str(gone.core_address) not in str(tunnels)
    links = demo.hosts[witness.name].run("ip", "-d", "link", "show")
    assert f"remote {gone.core_address} " not in links + " ", links


def _failing(demo: RunningDemo, name: str) -> list[dict[str, str]]:
    rows = demo.query(name, "audit")
    assert isinstance(rows, list)
    return [row for row in rows if row["status"] == "fail"]


def test_audit_fails_when_md5_is_off(demo: RunningDemo, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.reflector is not None
    demo.reflector.reload(unauthenticated={"a"})  # the session itself comes up without MD5
    demo.stop_afbr("a")
    demo.start_afbr("a", md5=False)
    demo.wait_mesh(MESH_TIMEOUT)
    failing = _failing(demo, "a")
    assert len(failing) == 1, failing
    assert "TCP-MD5" in failing[0]["requirement"]
    assert "2001:db8::1" in failing[0]["why"]  # names the neighbor without a key
    socket = str(demo.daemons["a"].paths.control_socket)
    assert main(["audit", "--socket", socket]) == 1
    assert "TCP-MD5" in capsys.readouterr().out


def test_audit_fails_when_ipsec_is_off(demo: RunningDemo) -> None:
    demo.stop_afbr("a")
    demo.start_afbr("a", ipsec=False)
    wait_for(lambda: _session_up(demo, "a"), timeout=MESH_TIMEOUT, what="a's BGP session")
    # the decapsulation filter's row passes once the first reconcile has read the table back
    wait_for(
        lambda: (
            [row["requirement"] for row in _failing(demo, "a")]
            == ["softwires are protected by IPsec"]
        ),
        timeout=MESH_TIMEOUT,
        what="the audit to fail the IPsec row only",
    )
    failing = _failing(demo, "a")
    assert "ipsec.enabled is false" in failing[0]["why"]


def _session_up(demo: RunningDemo, name: str) -> bool:
    try:
        status = demo.query(name, "status")
    except ControlClientError:
        return False  # not listening yet
    return isinstance(status, dict) and all(n["state"] == "up" for n in status["neighbors"])


def _one_ping_ok(demo: RunningDemo, one: str, two: str) -> bool:
    a, b = demo.mesh.afbr(one), demo.mesh.afbr(two)
    result = Ping(demo.hosts[a.client], a, b, count=1, interval=0.2).result(timeout=15)
    return result.lost == 0 and result.sent >= 1


def test_a_softwire_link_and_route_deleted_by_hand_come_back(demo: RunningDemo) -> None:
    """The kernel is the truth (issue 10): afbr hears of the deletion and reconciles."""
    host = demo.hosts["a"]
    (tunnel,) = [t for t in demo.query("a", "tunnels") if t["in_kernel"]]  # type: ignore[union-attr]
    island = str(demo.mesh.afbr("b").island)
    host.run("ip", "link", "del", "dev", tunnel["device"])  # its route goes with it
    wait_for(lambda: kernel_routes(host, island) != "", timeout=10, what="the route back")
    wait_for(lambda: _one_ping_ok(demo, "a", "b"), timeout=30, what="traffic a -> b back")
    rows = demo.query("a", "tunnels")
    assert isinstance(rows, list) and all(row["in_kernel"] for row in rows), rows
    status = demo.query("a", "status")
    assert isinstance(status, dict) and status["daemon"]["kernel_changes"] >= 1


def test_an_sa_flush_under_the_daemon_heals_and_status_tells_the_truth(
    demo: RunningDemo,
) -> None:
    pings = _pings_between(demo, "a", "b")
    time.sleep(1.0)
    demo.hosts["a"].run("ip", "xfrm", "state", "flush")
    wait_for(lambda: esp_states(demo.hosts["a"]) != set(), timeout=10, what="new SAs in the kernel")
    time.sleep(3.0)
    results = [p.stop() for p in pings]
    for result in results:  # a rekey's round trip, at most a few pings
        assert result.lost <= 10, result.output
    status = demo.query("a", "status")
    assert isinstance(status, dict)
    assert status["ipsec"]["peers_without_sa"] == [] and status["ipsec"]["kernel_repairs"] >= 1


def test_a_reload_turns_ipsec_off_and_on(demo: RunningDemo) -> None:
    """ipsec.enabled flipped by SIGHUP: off, the IKE agent stops and afbr's SAs go (the peer
    still requires IPsec, so no softwire: nothing in clear either); on again, the agent starts
    and the softwire is keyed."""
    demo.reload_afbr("a", ipsec=False)
    wait_for(
        lambda: demo.query("a", "status")["ipsec"] == {"enabled": False},  # type: ignore[index]
        timeout=20,
        what="the IKE agent to stop",
    )
    status = demo.query("a", "status")
    assert isinstance(status, dict) and status["reload"]["result"] == "applied"
    wait_for(lambda: esp_states(demo.hosts["a"]) == set(), timeout=20, what="a's SAs to go")
    demo.reload_afbr("a", ipsec=True)
    wait_for(lambda: _one_ping_ok(demo, "a", "b"), timeout=60, what="traffic a -> b keyed again")
    assert esp_states(demo.hosts["a"]) != set()
    status = demo.query("a", "status")
    assert isinstance(status, dict) and status["ipsec"]["enabled"] is True
