"""The IPsec agent heals by itself (issue 10): SAs flushed under it on either side, a restart
that finds an empty XFRM table, IKE blocked for a while, the peer's IKE daemon gone and back.
Two real agents (afbr.daemon.ipsec_agent) in namespaces of the UML kernel, real IKE exchanges,
real ESP; traffic is a ping between the client addresses across the softwire, the core link is
captured, and what `summary()` (afbr status) says is checked against the kernel.

Recovery times are printed (`-s` shows them); the assertions carry slack for a busy machine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from afbr.lab.ipsec_agent_lab import (
    CORE,
    ISLAND,
    AgentNode,
    CoreCapture,
    Pinger,
    agent_topology,
    lost,
    outage,
    ping_once,
    wait_until,
    write_key,
)
from afbr.lab.netns import Host, Lab

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

RECOVERY_LIMIT = 15.0  # seconds; the target is 5 (measured and printed), slack for load


@pytest.fixture
def mesh(lab: Lab, tmp_path: Path) -> Iterator[tuple[dict[str, Host], dict[str, AgentNode]]]:
    hosts = agent_topology(lab)
    nodes: dict[str, AgentNode] = {}
    try:
        nodes["a"] = AgentNode(hosts["a"], "a", ("b",), tmp_path / "a")
        nodes["b"] = AgentNode(hosts["b"], "b", ("a",), tmp_path / "b")
        wait_until(lambda: keyed(hosts), 30, "the first CHILD SA")
        yield hosts, nodes
    finally:
        for node in nodes.values():
            node.stop()


BLOCK_IKE = (
    "table inet afbr_test_block { chain in { type filter hook input priority 0; "
    "udp dport { 500, 4500 } drop; }; }"
)


def block_ike(host: Host) -> None:
    host.run("sh", "-c", f"echo '{BLOCK_IKE}' | nft -f -")


def unblock_ike(host: Host) -> None:
    host.run("nft", "delete", "table", "inet", "afbr_test_block")


def keyed(hosts: dict[str, Host]) -> bool:
    return ping_once(hosts["a"], ISLAND["a"], ISLAND["b"])


def both_report_keyed(nodes: dict[str, AgentNode]) -> bool:
    return all(
        node.summary()["peers_without_sa"] == [] and node.summary()["child_sas"] >= 1
        for node in nodes.values()
    )


def _flush_under_ping(
    hosts: dict[str, Host], nodes: dict[str, AgentNode], side: str, tmp_path: Path
) -> float:
    capture = CoreCapture(hosts["a"], "eth0", tmp_path)
    pinger = Pinger(hosts["a"], ISLAND["a"], ISLAND["b"])
    time.sleep(1.0)
    flushed = time.time()
    hosts[side].run("ip", "xfrm", "state", "flush")
    wait_until(lambda: keyed(hosts), RECOVERY_LIMIT, f"traffic after a flush on {side}")
    time.sleep(1.0)
    replies = pinger.stop()
    recovery = outage(replies, flushed)
    assert capture.clear_text(hosts["a"]) == 0, "client packets in clear on the core"
    print(
        f"SA flush on {side}: traffic back after {recovery:.2f}s, "
        f"{len(lost(replies))} of {replies[-1][1]} pings lost"
    )
    wait_until(lambda: both_report_keyed(nodes), 10, "both agents to report the peer keyed")
    assert nodes[side].summary()["kernel_repairs"] >= 1
    return recovery


def test_sa_flush_on_the_lower_address_side_heals(
    mesh: tuple[dict[str, Host], dict[str, AgentNode]], tmp_path: Path
) -> None:
    hosts, nodes = mesh
    assert _flush_under_ping(hosts, nodes, "a", tmp_path) <= RECOVERY_LIMIT


def test_sa_flush_on_the_higher_address_side_heals(
    mesh: tuple[dict[str, Host], dict[str, AgentNode]], tmp_path: Path
) -> None:
    hosts, nodes = mesh
    assert _flush_under_ping(hosts, nodes, "b", tmp_path) <= RECOVERY_LIMIT


def test_status_says_what_the_kernel_holds(
    mesh: tuple[dict[str, Host], dict[str, AgentNode]],
) -> None:
    """With the kernel's SAs gone and the peer unable to answer (its IKE blocked), the
    agent must not report the CHILD SA as up."""
    hosts, nodes = mesh
    block_ike(hosts["b"])
    try:
        hosts["a"].run("ip", "xfrm", "state", "flush")
        wait_until(
            lambda: nodes["a"].summary()["peers_without_sa"] == [CORE["b"]],
            5,
            "afbr status to say the peer has no SA",
        )
        assert nodes["a"].summary()["child_sas"] == 0
        assert not any(sa["in_kernel"] for sa in nodes["a"].sas())
    finally:
        unblock_ike(hosts["b"])
    wait_until(lambda: keyed(hosts), 60, "traffic after IKE was unblocked")


def test_ike_blocked_20s_with_a_flush_recovers_after_unblocking(
    mesh: tuple[dict[str, Host], dict[str, AgentNode]],
) -> None:
    hosts, _nodes = mesh
    block_ike(hosts["a"])
    try:
        hosts["a"].run("ip", "xfrm", "state", "flush")
        time.sleep(20)
        assert not keyed(hosts)  # fail-closed: no SA, no traffic (and none in clear)
    finally:
        unblock_ike(hosts["a"])
    unblocked = time.monotonic()
    wait_until(lambda: keyed(hosts), 40, "traffic after IKE was unblocked")
    print(f"IKE blocked 20 s: traffic back {time.monotonic() - unblocked:.2f}s after unblocking")


@pytest.mark.parametrize("side", ["a", "b"])
def test_a_restart_that_finds_no_sas_in_the_kernel_heals(
    mesh: tuple[dict[str, Host], dict[str, AgentNode]], side: str
) -> None:
    """A reboot-like restart: the agent stops, the kernel loses every SA and policy, the
    agent starts again.  Whichever address it has, it initiates itself (the peer's IKE SA
    looks fine to the peer: nobody else would)."""
    hosts, nodes = mesh
    nodes[side].stop()
    hosts[side].run("ip", "xfrm", "state", "flush")
    hosts[side].run("ip", "xfrm", "policy", "flush")
    restarted = time.monotonic()
    nodes[side].start()
    seconds = wait_until(lambda: keyed(hosts), RECOVERY_LIMIT, f"traffic after {side} restarted")
    print(f"restart of {side} without SAs: traffic back after {time.monotonic() - restarted:.2f}s")
    assert seconds <= RECOVERY_LIMIT
    wait_until(lambda: both_report_keyed(nodes), 10, "both agents to report the peer keyed")


def test_the_peer_deleting_the_ike_sa_is_followed_by_a_new_one(
    mesh: tuple[dict[str, Host], dict[str, AgentNode]],
) -> None:
    """The peer's IKE daemon goes away cleanly (it deletes the IKE SA) and comes back after
    a while: whoever is left keeps trying and keys again soon after the return."""
    hosts, nodes = mesh
    agent_b = nodes["b"].agent
    assert agent_b is not None

    def delete_all() -> None:
        for sa in list(agent_b.dispatcher.sas.values()):
            agent_b.adapter.drive(lambda sa, now: sa.delete(now), sa)

    nodes["b"].call(delete_all)
    time.sleep(1.0)
    nodes["b"].stop()  # gone for 8 s
    hosts["b"].run("ip", "xfrm", "state", "flush")
    time.sleep(8.0)
    back = time.monotonic()
    nodes["b"].start()
    wait_until(lambda: keyed(hosts), RECOVERY_LIMIT, "traffic after the peer came back")
    print(f"peer IKE daemon back after 8 s: keyed {time.monotonic() - back:.2f}s after")
    assert nodes["a"].summary()["initiations"] >= 1


def test_a_psk_rotation_by_reload_loses_nothing_and_leaks_nothing(
    mesh: tuple[dict[str, Host], dict[str, AgentNode]], tmp_path: Path
) -> None:
    """The operator puts a new pairwise key on A, reloads, then on B, reloads.  A's new IKE
    SA fails until B has the key too; meanwhile the old SAs keep forwarding (make-before-
    break), and once both have it the new SAs take over."""
    hosts, nodes = mesh
    capture = CoreCapture(hosts["a"], "eth0", tmp_path)
    pinger = Pinger(hosts["a"], ISLAND["a"], ISLAND["b"])
    time.sleep(1.0)
    before = {sa["spi_in"] for sa in nodes["a"].sas()}
    new_key = "the rotated pairwise key, 32 B.."
    nodes["a"].reload_with_psk(new_key)
    time.sleep(3.0)
    nodes["b"].reload_with_psk(new_key)
    wait_until(
        lambda: {sa["spi_in"] for sa in nodes["a"].sas() if sa["in_kernel"]} - before != set(),
        RECOVERY_LIMIT,
        "a CHILD SA of the new key",
    )
    time.sleep(6.0)  # the old pairs go after the switch
    assert lost(pinger.stop()) == [], "pings lost across the key rotation"
    assert capture.clear_text(hosts["a"]) == 0
    assert {sa["spi_in"] for sa in nodes["a"].sas()} & before == set()  # old pairs gone


def test_an_xfrm_install_failing_for_one_peer_of_three_is_retried_alone(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A keys B and C; the kernel refuses A's first SA towards C.  B is keyed regardless,
    the failure is counted, and C ends up keyed (by a repair of the CHILD SA the kernel
    lacks, or by the IKE SA C started itself, whichever comes first).

    The refusal is injected (a stand-in for a kernel error: `add_sa` raises, once, for C),
    since no real kernel condition fails one SA install on demand."""
    from afbr.dataplane.xfrm_socket import XfrmKernelError
    from afbr.ipsec import xfrm_adapter

    real_add_sa = xfrm_adapter.add_sa
    refused: list[str] = []

    def add_sa_failing_once_for_c(sock: object, spec: object) -> None:
        node_a = nodes.get("a")
        ours = node_a is not None and node_a.agent is not None and sock is node_a.agent.sock
        towards_c = ours and str(getattr(spec, "dst", "")) == CORE["c"]
        if towards_c and not refused:  # A's outbound SA to C, the first time
            refused.append(str(spec))
            raise XfrmKernelError(105, "injected: no buffer space")
        real_add_sa(sock, spec)  # type: ignore[arg-type]

    monkeypatch.setattr(xfrm_adapter, "add_sa", add_sa_failing_once_for_c)
    hosts = agent_topology(lab, ("a", "b", "c"))
    nodes: dict[str, AgentNode] = {}
    try:
        nodes["b"] = AgentNode(hosts["b"], "b", ("a",), tmp_path / "b")
        nodes["c"] = AgentNode(hosts["c"], "c", ("a",), tmp_path / "c")
        nodes["a"] = AgentNode(hosts["a"], "a", ("b", "c"), tmp_path / "a")
        wait_until(lambda: ping_once(hosts["a"], ISLAND["a"], ISLAND["b"]), 30, "A to B keyed")
        wait_until(
            lambda: ping_once(hosts["a"], ISLAND["a"], ISLAND["c"]), RECOVERY_LIMIT, "A to C"
        )
        assert refused, "the injected failure never happened"
        summary = nodes["a"].summary()
        assert summary["xfrm_failures"] >= 1  # counted (and C keyed all the same)
        wait_until(
            lambda: nodes["a"].summary()["peers_without_sa"] == [], 10, "A to report all keyed"
        )
    finally:
        for node in nodes.values():
            node.stop()


def test_a_private_key_rotation_by_reload_loses_nothing_and_leaks_nothing(
    lab: Lab, tmp_path: Path
) -> None:
    """Public keys (RFC 5566 §4 authenticators, as BGP carries them): A gets a new private key
    and reloads; B learns A's new authenticator a second later.  A's new IKE SA is refused
    until then and retried; the old SAs forward meanwhile; then the new ones take over."""
    hosts = agent_topology(lab)
    keys = tmp_path / "keys"
    auth_a, auth_b = write_key(keys / "a.pem"), write_key(keys / "b.pem")
    nodes: dict[str, AgentNode] = {}
    try:
        for name, peer, auth in (("a", "b", auth_b), ("b", "a", auth_a)):
            nodes[name] = AgentNode(
                hosts[name],
                name,
                (peer,),
                tmp_path / name,
                private_key=keys / f"{name}.pem",
                authenticators={CORE[peer]: auth},
            )
        wait_until(lambda: keyed(hosts), 30, "the first CHILD SA")
        capture = CoreCapture(hosts["a"], "eth0", tmp_path)
        pinger = Pinger(hosts["a"], ISLAND["a"], ISLAND["b"])
        time.sleep(1.0)
        before = {sa["spi_in"] for sa in nodes["a"].sas()}
        new_auth_a = write_key(keys / "a2.pem")
        nodes["a"].reload_with_key(keys / "a2.pem")
        time.sleep(1.0)
        nodes["b"].learn({CORE["a"]: new_auth_a})

        def new_sa_in_kernel() -> bool:
            return any(sa["in_kernel"] and sa["spi_in"] not in before for sa in nodes["a"].sas())

        wait_until(new_sa_in_kernel, RECOVERY_LIMIT, "a CHILD SA under the new key")
        time.sleep(6.0)  # the old pairs go after the switch
        assert lost(pinger.stop()) == [], "pings lost across the key rotation"
        assert capture.clear_text(hosts["a"]) == 0
        assert {sa["spi_in"] for sa in nodes["a"].sas()} & before == set()
    finally:
        for node in nodes.values():
            node.stop()
