"""Restarting ExaBGP alone, or the whole afbr daemon, loses nothing (RFC 4724 Graceful Restart).

Two `afbr run --no-dataplane` daemons A and B peer with a route reflector, GoBGP or BIRD
(TCP-MD5, Graceful Restart on).  A's ExaBGP is killed (a crash: no NOTIFICATION) and the daemon's
supervisor restarts it; later A's whole daemon is stopped with SIGTERM (ExaBGP then closes its
sessions without a NOTIFICATION, Graceful Restart being negotiated) and started again.  B's
RIB, polled all along, never loses A's prefix: the reflector keeps A's routes stale until A's
End-of-RIB.  While only ExaBGP restarts, A's own RIB keeps B's prefix too (stale paths,
`BgpControlPlane.connection_lost`), and afterwards both have each other's prefixes again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from afbr.daemon.control_socket import ControlClientError, request
from afbr.lab.daemon_base import BgpNeighbor
from afbr.lab.netns import Host, Lab
from afbr.lab.peers import Bird, GoBgp
from afbr.lab.reflector_lab import (
    RR_ASN,
    RR_ROUTER_ID,
    ReflectorLab,
    reflector_lab,
    write_client_config,
)

pytestmark = [pytest.mark.interop, pytest.mark.netns]

AFBR = [sys.executable, "-m", "afbr"]
PREFIX = {"a": "198.51.100.0/25", "b": "198.51.100.128/25"}


def write_config(workdir: Path, name: str, core_address: str, rr_address: str) -> Path:
    return write_client_config(
        workdir, name, core_address, rr_address, prefixes=[PREFIX[name]], preference=["gre"]
    )


def start_reflector(topo: ReflectorLab, kind: str) -> GoBgp | Bird:
    """The reflector with Graceful Restart on (RFC 4724 helper for A's restarts)."""
    neighbors = [
        BgpNeighbor(
            topo.addresses[name],
            RR_ASN,
            f"md5-{name}-secret",
            rr_client=True,
            passive=True,
            name=name,
        )
        for name in topo.clients
    ]
    common: dict[str, Any] = {
        "asn": RR_ASN,
        "router_id": RR_ROUTER_ID,
        "local_address": topo.rr_address,
        "neighbors": neighbors,
        "graceful_restart": True,
    }
    if kind == "gobgp":
        return GoBgp(topo.rr, topo.workdir / "gobgp", **common).start()
    return Bird(topo.rr, topo.workdir / "bird", export="where source = RTS_BGP", **common).start()


def query(host: Host, workdir: Path, command: str) -> Any:
    proc = subprocess.run(
        host.argv(*AFBR, command, "--json", "--socket", str(workdir / "afbr.sock")),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return json.loads(proc.stdout) if proc.returncode in (0, 1) and proc.stdout else None


def prefixes(workdir: Path) -> set[str] | None:
    """The prefixes in a daemon's RIB (what `afbr routes` shows); None while it is away."""
    try:
        routes = request(workdir / "afbr.sock", "routes", timeout=5.0)
    except (ControlClientError, OSError):
        return None
    assert isinstance(routes, list)
    return {route["prefix"] for route in routes}


def wait_for(probe: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)
    return value


class RibWatch:
    """Polls one daemon's RIB in a thread; every answer must hold `prefix`."""

    def __init__(self, workdir: Path, prefix: str) -> None:
        self.workdir, self.prefix = workdir, prefix
        self.samples: list[tuple[float, set[str] | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RibWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=40)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), prefixes(self.workdir)))
            self._stop.wait(0.1)

    def check(self, since: float, until: float) -> None:
        """Answers came all through [since, until], each holding the prefix."""
        answered = [(t, found) for t, found in self.samples if found is not None]
        missing = [round(t - since, 2) for t, found in answered if self.prefix not in found]
        assert not missing, f"{self.prefix} missing at {missing} s after the restart began"
        times = [since] + [t for t, _ in answered if since <= t <= until] + [until]
        gap = max(later - earlier for earlier, later in pairwise(times))
        assert gap < 2.0, f"no answer for {gap:.1f} s: {len(answered)} answers"


def exabgp_pid(daemon: subprocess.Popen[bytes]) -> int | None:
    """A's running ExaBGP: the daemon's child process `.../exabgp server CONF`, if any."""
    for task in Path(f"/proc/{daemon.pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")  # b"": zombie
            except FileNotFoundError:  # gone since the listing
                continue
            if any(arg.endswith(b"/exabgp") for arg in argv[:2]):
                return int(child)
    return None


def fresh_at_reflector(rr: GoBgp | Bird, prefix: str) -> bool:
    """The reflector holds the prefix; GoBGP also says it is no longer stale (A's End-of-RIB
    came, RFC 4724 §4.2).  BIRD 2.0.12's `show route all` does not show staleness."""
    if isinstance(rr, GoBgp):
        paths = rr.rib("ipv4").get(prefix, [])
        return bool(paths) and not any(path.get("stale") for path in paths)
    return prefix in rr.routes("master4")


def start_afbr(host: Host, workdir: Path) -> subprocess.Popen[bytes]:
    config = workdir / "afbr.yaml"
    return host.popen(*AFBR, "run", "-c", str(config), "--no-dataplane", log=workdir / "afbr.log")


# Until runtime.py has the wiring in the module docstring, B loses A's prefix for ~5 s: this
# marker goes when the lead wires it (strict: an unexpected pass fails, as a reminder).
@pytest.mark.parametrize("reflector", ["gobgp", "bird"])
def test_restarting_exabgp_or_afbr_loses_no_route(lab: Lab, tmp_path: Path, reflector: str) -> None:
    topo = reflector_lab(lab, tmp_path, core=6, clients=["a", "b"])
    rr = start_reflector(topo, reflector)
    dirs = {name: tmp_path / f"afbr-{name}" for name in ("a", "b")}
    procs = {}
    for name, workdir in dirs.items():
        workdir.mkdir()
        write_config(workdir, name, topo.addresses[name], topo.rr_address)
        procs[name] = start_afbr(topo.clients[name], workdir)
    a, b = topo.clients["a"], topo.clients["b"]
    for name in ("a", "b"):
        rr.wait_established(topo.addresses[name], timeout=40)
    wait_for(lambda: PREFIX["a"] in (prefixes(dirs["b"]) or ()), "A's prefix at B")
    wait_for(lambda: PREFIX["b"] in (prefixes(dirs["a"]) or ()), "B's prefix at A")

    # 1. ExaBGP alone: killed, restarted by A's supervisor.  Both RIBs keep everything.
    with RibWatch(dirs["b"], PREFIX["a"]) as at_b, RibWatch(dirs["a"], PREFIX["b"]) as at_a:
        time.sleep(1)
        since = time.monotonic()
        old = exabgp_pid(procs["a"])
        assert old is not None
        os.kill(old, signal.SIGKILL)  # a crash: no NOTIFICATION, the TCP sessions just end
        wait_for(lambda: exabgp_pid(procs["a"]) not in (None, old), "a new ExaBGP", timeout=30)
        wait_for(lambda: rr.session_state(topo.addresses["a"]) == "established", "A's session")
        wait_for(lambda: query(a, dirs["a"], "status")["neighbors"][0]["state"] == "up", "A up")
        time.sleep(3)  # both End-of-RIBs are through: nothing stale may vanish after
        until = time.monotonic()
    at_b.check(since, until)
    at_a.check(since, until)
    assert query(a, dirs["a"], "status")["exabgp"]["restarts"] == 1
    assert PREFIX["a"] in {route["prefix"] for route in query(b, dirs["b"], "routes")}
    assert PREFIX["b"] in {route["prefix"] for route in query(a, dirs["a"], "routes")}
    assert fresh_at_reflector(rr, PREFIX["a"])

    # 2. The whole daemon: SIGTERM, then started again.  B keeps A's prefix all along.
    with RibWatch(dirs["b"], PREFIX["a"]) as at_b:
        time.sleep(1)
        since = time.monotonic()
        a.stop(procs["a"], signal.SIGTERM)
        assert procs["a"].returncode == 0, (dirs["a"] / "afbr.log").read_text()[-2000:]
        time.sleep(2)  # A is gone for a while: the reflector keeps its routes stale
        procs["a"] = start_afbr(a, dirs["a"])
        wait_for(lambda: rr.session_state(topo.addresses["a"]) == "established", "A's session")
        wait_for(lambda: PREFIX["b"] in (prefixes(dirs["a"]) or ()), "B's prefix at new A")
        time.sleep(3)  # A's End-of-RIB is through: the reflector keeps what A sent again
        until = time.monotonic()
    at_b.check(since, until)
    assert PREFIX["a"] in {route["prefix"] for route in query(b, dirs["b"], "routes")}
    assert fresh_at_reflector(rr, PREFIX["a"])
