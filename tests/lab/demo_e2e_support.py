"""What the demo's end-to-end tests share: the running demo, background watchers, kernel views."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from afbr.daemon.control_socket import ControlClientError
from afbr.lab.demo_mesh import GRACEFUL_RESTART_SECONDS
from afbr.lab.demo_runner import RunningDemo
from afbr.lab.netns import Host

MESH_TIMEOUT = 150.0  # UML start-up of 4 daemons, their ExaBGPs and IKE
# How long a stopped AFBR's routes may linger elsewhere: the reflector keeps them stale for
# the graceful-restart time (RFC 4724 §4.2) if the session went down without NOTIFICATION.
WITHDRAW_TIMEOUT = GRACEFUL_RESTART_SECONDS + 30.0


@contextmanager
def running_demo(workdir: Path, *, dataplane: bool) -> Iterator[RunningDemo]:
    """The whole demo, converged; torn down when the block ends, however it ends."""
    with RunningDemo(workdir, dataplane=dataplane) as demo:
        demo.build()
        demo.start_reflector()
        for afbr in demo.mesh.afbrs:
            demo.start_afbr(afbr.name)
        demo.wait_mesh(MESH_TIMEOUT)
        yield demo


def back_to_normal(demo: RunningDemo) -> None:
    """Undo whatever a test changed, then wait for the complete mesh."""
    demo.restore()
    demo.wait_mesh(MESH_TIMEOUT)


@dataclass
class RouteWatch:
    """Samples, in a thread, whether AFBR `name` has its route to `other`'s island; every
    sample without it (or with the daemon not answering) is recorded as a gap."""

    demo: RunningDemo
    name: str
    other: str
    interval: float = 0.1
    samples: int = 0
    gaps: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RouteWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                route, _tunnel = self.demo.sees(self.name, self.other)
                if not route:
                    self.gaps.append(f"{time.monotonic():.1f}: no route")
            except ControlClientError as exc:
                self.gaps.append(f"{time.monotonic():.1f}: {exc}")
            self.samples += 1
            self._stop.wait(self.interval)


def wait_for(probe: object, *, timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not probe():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


_XFRM_STATE = re.compile(r"^src (\S+) dst (\S+)\s*\n\s+proto esp", re.MULTILINE)


def esp_states(host: Host) -> set[tuple[str, str]]:
    """(source, destination) of each ESP SA in the namespace's kernel."""
    return set(_XFRM_STATE.findall(host.run("ip", "xfrm", "state")))


def kernel_routes(host: Host, prefix: str) -> str:
    """`ip route show PREFIX` in the namespace (either family)."""
    family = "-6" if ":" in prefix else "-4"
    return host.run("ip", family, "route", "show", prefix).strip()
