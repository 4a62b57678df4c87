"""`afbr run` end to end on the control plane, with a real GoBGP route reflector (TCP-MD5).

Two daemons A and B run with --no-dataplane (the host kernel has no tunnels; the dataplane
runs in the UML tests): A's client prefix reaches B's RIB through the reflector, `afbr
status/routes/audit` answer over the control socket, SIGHUP announces a new prefix, a second
instance refuses to start, and SIGTERM stops the daemon and its ExaBGP.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from afbr.lab.netns import Host, Lab
from afbr.lab.reflector_lab import reflector_lab, write_client_config

pytestmark = [pytest.mark.interop, pytest.mark.netns]

CLIENT_PREFIX = {"a": "198.51.100.0/25", "b": "198.51.100.128/25"}


SIDECAR = """\
role: sidecar
ipsec: {enabled: true, auth: pubkey}   # the mesh's policy: authenticators are required
"""


def write_config(workdir: Path, name: str, core_address: str, rr_address: str) -> Path:
    prefixes = [CLIENT_PREFIX[name]] if name in CLIENT_PREFIX else []
    config = write_client_config(
        workdir, name, core_address, rr_address, prefixes=prefixes, preference=["gre", "ip-in-ip"]
    )
    if name == "s":
        text = config.read_text().replace("ipsec: {enabled: false}\n", SIDECAR)
        config.write_text(text.replace("clients: {prefixes: []}\n", ""))
    return config


def afbr(host: Host, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        host.argv(sys.executable, "-m", "afbr", *args),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def query(host: Host, workdir: Path, command: str) -> Any:
    proc = afbr(host, command, "--json", "--socket", str(workdir / "afbr.sock"))
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def wait_for(probe: Any, timeout: float = 40.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except (AssertionError, json.JSONDecodeError, KeyError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.3)


def test_two_daemons_learn_each_other_through_gobgp(lab: Lab, tmp_path: Path) -> None:
    topo = reflector_lab(lab, tmp_path, core=6, clients=["a", "b", "s"])
    keys = {name: f"md5-{name}-secret" for name in ("a", "b", "s")}
    rr = topo.start_reflector("gobgp", keys)
    dirs = {}
    procs = {}
    for name in ("a", "b", "s"):
        dirs[name] = tmp_path / f"afbr-{name}"
        dirs[name].mkdir()
        cfg = write_config(dirs[name], name, topo.addresses[name], topo.rr_address)
        procs[name] = topo.clients[name].popen(
            sys.executable,
            "-m",
            "afbr",
            "run",
            "-c",
            str(cfg),
            "--no-dataplane",
            log=dirs[name] / "afbr.log",
        )
    a, b = topo.clients["a"], topo.clients["b"]
    for name in ("a", "b", "s"):
        rr.wait_established(topo.addresses[name], timeout=40)

    routes = wait_for(
        lambda: [r for r in query(b, dirs["b"], "routes") if r["prefix"] == CLIENT_PREFIX["a"]]
    )
    assert routes[0]["endpoint"] == topo.addresses["a"]
    assert routes[0]["encaps"] == [2, 7]  # GRE then IP-in-IP, A's preference order

    status = query(a, dirs["a"], "status")
    assert status["neighbors"] == [{"address": topo.rr_address, "state": "up", "md5": True}]
    assert status["exabgp"]["state"] == "running"

    audit = {row["requirement"]: row for row in query(a, dirs["a"], "audit")}
    assert audit["every BGP session is authenticated with TCP-MD5"]["status"] == "pass"
    assert audit["softwires are protected by IPsec"]["status"] == "fail"

    # The side-car sees both AFBRs, and its audit fails them for lacking an authenticator.
    side = topo.clients["s"]
    mesh = wait_for(lambda: (m := query(side, dirs["s"], "mesh")) and len(m["afbrs"]) == 2 and m)
    # AFBRs are named by the ORIGINATOR_ID the reflector set: their router ids.
    assert sorted(mesh["afbrs"]) == ["192.0.2.10", "192.0.2.11"]
    assert mesh["afbrs"]["192.0.2.10"]["prefixes"] == [CLIENT_PREFIX["a"]]
    assert mesh["afbrs"]["192.0.2.10"]["next_hops"] == [topo.addresses["a"]]
    assert mesh["afbrs"]["192.0.2.10"]["tunnel_types"] == [2, 7]
    findings = [r for r in query(side, dirs["s"], "audit") if r["requirement"].startswith("mesh")]
    assert len(findings) == 2
    assert all("no IPsec Tunnel Authenticator" in f["why"] for f in findings)

    second = afbr(a, "run", "-c", str(dirs["a"] / "afbr.yaml"), "--no-dataplane")
    assert second.returncode == 1
    assert "another afbr is running" in second.stderr

    # SIGHUP: a new client prefix on A is announced without a restart.
    config = dirs["a"] / "afbr.yaml"
    config.write_text(
        config.read_text().replace("[198.51.100.0/25]", "[198.51.100.0/25, 203.0.113.0/24]")
    )
    procs["a"].send_signal(signal.SIGHUP)
    wait_for(lambda: any(r["prefix"] == "203.0.113.0/24" for r in query(b, dirs["b"], "routes")))
    assert query(a, dirs["a"], "status")["exabgp"]["restarts"] == 0

    # A broken file on SIGHUP is refused and the running config kept.
    good = config.read_text()
    config.write_text(good.replace("asn: 65000", "asn: -5"))
    procs["a"].send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in (dirs["a"] / "afbr.log").read_text())
    assert query(a, dirs["a"], "status")["neighbors"][0]["state"] == "up"
    refused = query(a, dirs["a"], "status")["reload"]
    assert refused["result"] == "refused" and "asn" in refused["reason"], refused

    # A reload that cannot be applied running (a new core address) is refused whole: the
    # new prefix in the same file is not announced either.
    core_line = next(line for line in good.splitlines() if line.startswith("core:"))
    moved = 'core: {family: ipv6, address: "2001:db8::99"}'
    config.write_text(
        good.replace(core_line, moved).replace("203.0.113.0/24]", "203.0.113.0/24, 192.0.2.128/25]")
    )
    procs["a"].send_signal(signal.SIGHUP)
    wait_for(lambda: "core.address" in query(a, dirs["a"], "status")["reload"]["reason"])
    time.sleep(1.0)
    assert not any(r["prefix"] == "192.0.2.128/25" for r in query(b, dirs["b"], "routes"))
    config.write_text(good)

    # SIGTERM: A stops cleanly, its ExaBGP with it (what the reflector then keeps is
    # test_daemon_graceful_restart's subject).
    a.stop(procs["a"])
    assert procs["a"].returncode == 0, (dirs["a"] / "afbr.log").read_text()[-2000:]
    assert not any(
        "exabgp" in line
        for line in a.run("ps", "-eo", "args").splitlines()
        if str(dirs["a"]) in line
    )
