"""The demo mesh in network namespaces: build it, start it, query it, tear it down.

`RunningDemo` builds the topology of afbr.lab.demo_mesh in namespaces of one `Lab`, starts
GoBGP as route reflector (TCP-MD5 on every session) and `afbr run -c afbr.yaml` in each AFBR
namespace, and reads each daemon's state over its control socket (the same requests
`afbr status|routes|tunnels|sas|audit --socket PATH --json` make).  Everything it starts is
ended and every namespace deleted when it closes, also on an error or Ctrl-C.  `afbr lab demo`
(afbr.commands.lab) and the end-to-end tests (tests/lab/test_demo_e2e.py) drive it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from afbr.daemon.control_socket import ControlClientError, request
from afbr.lab.demo_mesh import (
    Afbr,
    DemoKeys,
    DemoMesh,
    NodePaths,
    build_mesh,
    ip_batch_lines,
    write_afbr_files,
)
from afbr.lab.demo_reflector import DemoReflector
from afbr.lab.demo_report import neighbor_state
from afbr.lab.demo_traffic import PingResult, ping_all
from afbr.lab.netns import Host, Lab
from afbr.lab.peers import PeerError

UP_STATES = frozenset({"up", "established"})
STOP_TIMEOUT = 20.0  # seconds a stopping afbr gets before its process group is killed
Say = Callable[[str], None]


class DemoError(RuntimeError):
    """The demo could not be built or did not converge; the message says where and why."""


@dataclass
class DemoAfbrProcess:
    afbr: Afbr
    host: Host
    paths: NodePaths
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    md5: bool = True
    ipsec: bool = True

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def afbr_run_available() -> bool:
    """Whether this build of afbr has the daemon command (`afbr run`)."""
    from afbr.cli import COMMAND_MODULES  # noqa: PLC0415  (import cycle via afbr.commands.lab)

    return "afbr.commands.run" in COMMAND_MODULES


@dataclass
class RunningDemo:
    """The demo mesh in namespaces; use as a context manager."""

    workdir: Path
    mesh: DemoMesh = field(default_factory=build_mesh)
    keys: DemoKeys | None = None
    say: Say = field(default=lambda text: None)
    lab: Lab = field(default_factory=lambda: Lab("demo"))
    hosts: dict[str, Host] = field(default_factory=dict)
    daemons: dict[str, DemoAfbrProcess] = field(default_factory=dict)
    reflector: DemoReflector | None = None
    dataplane: bool = True  # False: `afbr run --no-dataplane` (control plane only, any kernel)

    def __post_init__(self) -> None:
        self.keys = self.keys or DemoKeys.generate(self.mesh)

    def __enter__(self) -> RunningDemo:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for daemon in self.daemons.values():
            if daemon.running():
                self.stop_afbr(daemon.afbr.name)
        self.lab.close()

    # --- building -------------------------------------------------------------------------

    def build(self) -> None:
        """Create the namespaces, wire the links, configure addresses and routes."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        self.say(f"creating {len(self.mesh.nodes)} namespaces and {len(self.mesh.links)} links")
        for node in self.mesh.nodes:  # Lab.host sets what sysctl_settings(node) lists
            self.hosts[node.name] = self.lab.host(node.name, forwarding=node.forwarding)
        for link in self.mesh.links:
            self.lab.link(self.hosts[link.a], link.a_if, self.hosts[link.b], link.b_if)
        for node in self.mesh.nodes:
            self.hosts[node.name].ip_batch(ip_batch_lines(node))

    def start_reflector(self) -> None:
        assert self.keys is not None
        rr = self.mesh.reflector
        self.say(f"starting the route reflector {rr.name}: gobgpd, TCP-MD5 on every session")
        reflector = DemoReflector(self.hosts[rr.name], self.workdir / rr.name, self.mesh, self.keys)
        try:
            reflector.start(timeout=60.0)
        except PeerError as exc:
            raise DemoError(str(exc)) from exc
        self.reflector = reflector

    def start_afbr(self, name: str, *, md5: bool = True, ipsec: bool = True) -> None:
        """Write the AFBR's files and start `afbr run -c afbr.yaml` in its namespace."""
        assert self.keys is not None
        afbr = self.mesh.afbr(name)
        base = self.workdir / name
        paths = NodePaths.workdir(base)
        write_afbr_files(self.mesh, afbr, self.keys, paths, base, md5=md5, ipsec=ipsec)
        daemon = DemoAfbrProcess(
            afbr, self.hosts[name], paths, base / "afbr.log", md5=md5, ipsec=ipsec
        )
        with daemon.log.open("a") as log:
            log.write(f"--- afbr run -c {paths.config} (md5 {md5}, ipsec {ipsec})\n")
        argv = [sys.executable, "-m", "afbr", "run", "-c", str(paths.config)]
        if not self.dataplane:
            argv.append("--no-dataplane")
        daemon.proc = daemon.host.popen(*argv, log=daemon.log)
        self.daemons[name] = daemon

    def reload_afbr(self, name: str, *, ipsec: bool) -> None:
        """Rewrite AFBR `name`'s files (IPsec on or off) and SIGHUP it, as `systemctl reload`."""
        assert self.keys is not None
        daemon = self.daemons[name]
        base = self.workdir / name
        paths = NodePaths.workdir(base)
        write_afbr_files(
            self.mesh, self.mesh.afbr(name), self.keys, paths, base, md5=daemon.md5, ipsec=ipsec
        )
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.ipsec = ipsec

    def start_all(self) -> None:
        if not afbr_run_available():
            raise DemoError("this afbr has no daemon yet (`afbr run`, afbr.commands.run)")
        if shutil.which("gobgpd") is None:
            raise DemoError("gobgpd is not installed (`make setup` installs it)")
        self.build()
        self.start_reflector()
        self.say("starting afbr run -c afbr.yaml in " + ", ".join(a.name for a in self.mesh.afbrs))
        for afbr in self.mesh.afbrs:
            self.start_afbr(afbr.name)

    def stop_afbr(self, name: str) -> None:
        """SIGTERM: the control plane stops, forwarding stays in place (issue 6 item 1)."""
        daemon = self.daemons[name]
        proc = daemon.proc
        if isinstance(proc, subprocess.Popen) and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the daemon only, as `kill PID` or systemd would
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_TIMEOUT)
            daemon.host.stop(proc)  # whatever is left of its process group
        daemon.proc = None
        # ExaBGP runs in a session of its own: one that outlived its afbr would keep a BGP
        # session of the old config alive next to the next afbr's.
        for pid in self.exabgp_pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with daemon.log.open("a") as log:
                log.write(f"--- demo: ExaBGP pid {pid} outlived its afbr; killed it\n")
            self.say(f"{name}: ExaBGP (pid {pid}) outlived its afbr; killed it")

    def restore(self) -> None:
        """Back to the demo as built: every afbr running on its own config, MD5 everywhere."""
        if self.reflector is not None and self.reflector.unauthenticated:
            self.reflector.reload(())
        for name, daemon in self.daemons.items():
            if daemon.running() and daemon.md5 and daemon.ipsec:
                continue
            self.stop_afbr(name)
            self.start_afbr(name)

    # --- state ----------------------------------------------------------------------------

    def query(self, name: str, command: str) -> object:
        """One control-socket request to AFBR `name` (what `afbr COMMAND --json` prints)."""
        try:
            return request(self.daemons[name].paths.control_socket, command, timeout=10.0)
        except OSError as exc:  # e.g. no answer within the timeout while it is busy starting
            raise ControlClientError(f"no answer to {command!r} ({exc})") from exc

    def sees(self, name: str, other: str) -> tuple[bool, bool]:
        """Whether AFBR `name` has a route to `other`'s island and a softwire to its endpoint."""
        peer = self.mesh.afbr(other)
        routes = row_values(self.query(name, "routes"))
        tunnels = row_values(self.query(name, "tunnels"))
        return str(peer.island) in routes, str(peer.core_address) in tunnels

    def mesh_problems(self) -> list[str]:
        """What keeps the mesh from being complete (empty when it is)."""
        problems: list[str] = []
        for afbr in self.mesh.afbrs:
            daemon = self.daemons.get(afbr.name)
            if daemon is None or not daemon.running():
                raise DemoError(f"afbr in {afbr.name} is not running:\n{_tail(daemon)}")
            try:
                problems += self._node_problems(afbr)
            except ControlClientError as exc:
                problems.append(f"{afbr.name}: {exc}")
        return problems

    def _node_problems(self, afbr: Afbr) -> list[str]:
        status = self.query(afbr.name, "status")
        neighbors = status.get("neighbors", []) if isinstance(status, dict) else []
        problems = [
            f"{afbr.name}: neighbor {n.get('address')} is {neighbor_state(n)}"
            for n in neighbors
            if isinstance(n, dict) and neighbor_state(n) not in UP_STATES
        ]
        if not neighbors:
            problems.append(f"{afbr.name}: no BGP neighbors in its status")
        for partner in self.mesh.partners(afbr):
            route, tunnel = self.sees(afbr.name, partner.name)
            if not route:
                problems.append(f"{afbr.name}: no route to {partner.island} ({partner.name})")
            if not tunnel and self.dataplane:
                problems.append(f"{afbr.name}: no softwire to {partner.core_address}")
        return problems

    def kernel_problems(self) -> list[str]:
        """Partner islands without a route in an AFBR's kernel (the daemon reports what it
        wants; this is what the kernel holds)."""
        if not self.dataplane:
            return []
        problems = []
        for afbr in self.mesh.afbrs:
            for partner in self.mesh.partners(afbr):
                family = f"-{partner.client_family}"
                shown = self.hosts[afbr.name].run(
                    "ip", family, "route", "show", str(partner.island)
                )
                if not shown.strip():
                    problems.append(f"{afbr.name}: no kernel route to {partner.island}")
        return problems

    def wait_mesh(self, timeout: float = 150.0) -> float:
        """Poll every AFBR until the mesh is complete; return the seconds it took."""
        start = time.monotonic()
        problems = ["(not polled)"]
        while time.monotonic() - start < timeout:
            problems = self.mesh_problems() or self.kernel_problems()
            if not problems:
                return time.monotonic() - start
            time.sleep(1.0)
        tails = "\n".join(f"--- {n} log:\n{_tail(d)}" for n, d in self.daemons.items())
        if self.reflector is not None:
            tails += f"\n--- {self.mesh.reflector.name} log:\n{self.reflector.log_tail(12)}"
        raise DemoError(
            f"the mesh did not converge in {timeout:.0f}s: " + "; ".join(problems) + "\n" + tails
        )

    def ping_islands(
        self, count: int = 5, interval: float = 0.2, warmup: float = 30.0
    ) -> list[PingResult]:
        """Ping every island from every partner island: first until one answer arrives (IKE
        may still be setting up the SAs), then `count` pings that are the result."""
        pairs = self.mesh.traffic_pairs()
        ping_all(self.hosts, pairs, count=1, interval=interval, deadline=warmup)
        return ping_all(self.hosts, pairs, count=count, interval=interval)

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Each AFBR's status, tunnels, routes, SAs and audit (errors as {"error": ...})."""
        result: dict[str, dict[str, object]] = {}
        for afbr in self.mesh.afbrs:
            node: dict[str, object] = {}
            for command in ("status", "tunnels", "routes", "sas", "audit"):
                try:
                    node[command] = self.query(afbr.name, command)
                except ControlClientError as exc:
                    node[command] = {"error": str(exc)}
            result[afbr.name] = node
        return result

    # --- processes in an AFBR namespace --------------------------------------------------

    def exabgp_pids(self, name: str) -> list[int]:
        """ExaBGP's main process(es) in AFBR `name`'s namespace (not afbr's API plugin)."""
        return [pid for pid, argv in _netns_processes(self.hosts[name].name) if is_exabgp(argv)]


def row_values(rows: object) -> set[str]:
    """Every scalar in a list of rows as text (fields are found by value, not by name)."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif value is not None:
            found.add(str(value))

    walk(rows)
    return found


def is_exabgp(argv: list[str]) -> bool:
    if any("exabgp_plugin" in arg for arg in argv):
        return False
    names = [Path(arg).name for arg in argv]
    return "exabgp" in names or ("-m" in argv and argv[argv.index("-m") + 1 :][:1] == ["exabgp"])


def _netns_processes(netns: str) -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of each process in a named namespace."""
    target = os.stat(f"/run/netns/{netns}").st_ino
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (entry / "ns" / "net").stat().st_ino != target:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            yield int(entry.name), [a.decode(errors="replace") for a in argv if a]


def _tail(daemon: DemoAfbrProcess | None) -> str:
    return daemon.log_tail() if daemon is not None else "(never started)"
