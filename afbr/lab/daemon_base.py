"""What the lab's daemon launchers share: a BGP neighbor, polling, one process with a log.

A launcher (afbr.lab.peers, afbr.lab.exabgp_peer) writes its daemon's config into a work folder
the caller owns and starts it with `Host.popen`, so the `Lab` ends it whatever happens.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from afbr.lab.netns import Host


class PeerError(RuntimeError):
    """A lab peer failed to start or to answer; the message carries the tail of its log."""


@dataclass(frozen=True)
class BgpNeighbor:
    """One BGP neighbor of a lab daemon."""

    address: str
    peer_as: int
    md5_password: str | None = None  # RFC 2385 TCP-MD5 key, None for none
    rr_client: bool = False
    passive: bool = False  # wait for the neighbor to connect
    name: str = ""  # protocol name where the daemon wants one (BIRD)

    @property
    def label(self) -> str:
        return "peer_" + re.sub(r"[^0-9A-Za-z]", "_", self.name or self.address)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, from its first byte on (configs hold keys)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def wait_until(
    probe: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.2
) -> None:
    """Poll `probe` until it is true; raise PeerError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise PeerError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Daemon:
    """What every launcher shares: a host, a work folder, one process, a log file."""

    kind = "daemon"

    def __init__(self, host: Host, workdir: Path) -> None:
        self.host = host
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / f"{self.kind}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def _failed(self, message: str) -> PeerError:
        return PeerError(f"{self.kind} in {self.host.name}: {message}\n{self.log_tail()}")

    def _spawn(self, *argv: str, env: dict[str, str] | None = None) -> None:
        self.proc = self.host.popen(*argv, log=self.log, env=env)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            self.host.stop(self.proc)
            self.proc = None

    def _wait(self, probe: Callable[[], bool], timeout: float, what: str) -> None:
        def alive_probe() -> bool:
            if not self.running():
                raise self._failed(f"exited while waiting for {what}")
            return probe()

        try:
            wait_until(alive_probe, timeout=timeout, what=what)
        except PeerError as exc:
            if "timed out" in str(exc):
                raise self._failed(str(exc)) from exc
            raise
