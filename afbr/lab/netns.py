"""Network namespaces as lab hosts: create, wire with veth, run commands, always clean up.

Used by the tests and the namespace lab runner.  Every namespace and process made through a
`Lab` is owned by it and removed by `Lab.close()` (also on an exception in a `with` block),
so a failing test leaves nothing behind.  Names carry a per-process prefix so parallel runs and
earlier crashed runs never collide with each other or with anything not ours.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

_counter = itertools.count()


class LabError(RuntimeError):
    """A lab command failed; the message carries the command and its stderr."""


def _run(argv: Sequence[str], *, input_text: str | None = None, timeout: float = 60.0) -> str:
    proc = subprocess.run(
        list(argv), input=input_text, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise LabError(f"{shlex.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


@dataclass
class Host:
    """One network namespace."""

    name: str
    lab: Lab
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def argv(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(self, *cmd: str, timeout: float = 60.0, check: bool = True) -> str:
        """Run a command in the namespace and return its stdout; raise LabError on failure."""
        if check:
            return _run(self.argv(*cmd), timeout=timeout)
        proc = subprocess.run(
            self.argv(*cmd), capture_output=True, text=True, timeout=timeout, check=False
        )
        return proc.stdout

    def ok(self, *cmd: str, timeout: float = 60.0) -> bool:
        """True when the command exits 0."""
        proc = subprocess.run(self.argv(*cmd), capture_output=True, timeout=timeout, check=False)
        return proc.returncode == 0

    def ip_batch(self, lines: Sequence[str]) -> None:
        """Apply `ip` commands in one process (process start-up is the slow part under UML)."""
        if lines:
            _run(["ip", "-n", self.name, "-batch", "-"], input_text="\n".join(lines) + "\n")

    def popen(
        self,
        *cmd: str,
        log: Path | None = None,
        env: dict[str, str] | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process in the namespace; the lab ends it on close."""
        out: int | object = stdout if stdout is not None else subprocess.DEVNULL
        logf = None
        if log is not None and stdout is None:
            logf = log.open("ab")
            out = logf
        proc = subprocess.Popen(  # each in its own session so its whole group can be ended
            self.argv(*cmd),
            stdin=stdin,
            stdout=out,  # type: ignore[arg-type]
            stderr=logf if logf is not None else subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        if logf is not None:
            logf.close()
        self.processes.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        """End a process this host started (its whole process group), waiting for it."""
        _end(proc, sig)
        if proc in self.processes:
            self.processes.remove(proc)

    def wait_for(self, *cmd: str, timeout: float = 30.0, interval: float = 0.2) -> str:
        """Retry a command until it succeeds; return its output or raise LabError."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            proc = subprocess.run(self.argv(*cmd), capture_output=True, text=True, check=False)
            if proc.returncode == 0:
                return proc.stdout
            last = proc.stderr.strip() or proc.stdout.strip()
            if time.monotonic() > deadline:
                raise LabError(f"timed out after {timeout}s waiting for {shlex.join(cmd)}: {last}")
            time.sleep(interval)


def _end(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    # A daemon that forked away from the group is found by its namespace at close.


class Lab:
    """A set of namespaces joined by veth pairs, removed on close."""

    def __init__(self, tag: str = "t") -> None:
        self.prefix = f"afbr{os.getpid() % 100000}{tag}{next(_counter)}"
        self.hosts: dict[str, Host] = {}
        self._links = 0

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def host(self, short: str, *, forwarding: bool = False) -> Host:
        """Create a namespace with `lo` up (and IP forwarding when it routes)."""
        name = f"{self.prefix}-{short}"
        _run(["ip", "netns", "add", name])
        host = Host(name, self)
        self.hosts[short] = host
        lines = ["link set lo up"]
        host.ip_batch(lines)
        sysctls = ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"]
        if forwarding:
            sysctls += ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]
        host.run("sysctl", "-q", "-w", *sysctls)
        return host

    def link(self, a: Host, a_if: str, b: Host, b_if: str, *, mtu: int | None = None) -> None:
        """Join two hosts with a veth pair and bring both ends up."""
        self._links += 1
        tmp = f"afbrv{os.getpid() % 100000}x{self._links}"
        _run(["ip", "link", "add", tmp, "type", "veth", "peer", "name", tmp + "p"])
        _run(["ip", "link", "set", tmp, "netns", a.name, "name", a_if])
        _run(["ip", "link", "set", tmp + "p", "netns", b.name, "name", b_if])
        for host, ifname in ((a, a_if), (b, b_if)):
            lines = [f"link set {ifname} up"]
            if mtu is not None:
                lines.insert(0, f"link set {ifname} mtu {mtu}")
            host.ip_batch(lines)

    def close(self) -> None:
        for host in self.hosts.values():
            for proc in reversed(host.processes):
                _end(proc)
            host.processes.clear()
            for pid in _pids_in_netns(host.name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True, check=False)
        self.hosts.clear()


def _pids_in_netns(name: str) -> Iterator[int]:
    """PIDs of processes still inside a namespace (daemons that daemonised away from us)."""
    proc = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
    )
    for word in proc.stdout.split():
        if word.isdigit():
            yield int(word)
