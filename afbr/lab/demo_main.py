"""`afbr lab demo`: run the demo mesh once, print what works, tear it all down."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from afbr.lab.demo_report import render_summary, summary_json
from afbr.lab.demo_runner import DemoError, RunningDemo, Say
from afbr.lab.demo_traffic import PingResult

DEMO_KERNEL_OPTIONS = (
    "CONFIG_NET_IPGRE",
    "CONFIG_IPV6_GRE",
    "CONFIG_NET_IPIP",
    "CONFIG_IPV6_TUNNEL",
    "CONFIG_INET_ESP",
    "CONFIG_INET6_ESP",
    "CONFIG_XFRM_INTERFACE",
    "CONFIG_CRYPTO_GCM",
)


def missing_kernel_features() -> list[str]:
    """Kernel options the demo needs that this kernel lacks ([] inside afbr's UML guest)."""
    if os.environ.get("AFBR_IN_UML") == "1":
        return []
    config = Path("/proc/config.gz")
    if not config.exists():
        return ["/proc/config.gz (cannot tell)"]
    text = gzip.decompress(config.read_bytes()).decode(errors="replace")
    have = {line.split("=")[0] for line in text.splitlines() if line.endswith(("=y", "=m"))}
    return [option for option in DEMO_KERNEL_OPTIONS if option not in have]


def run_demo(*, keep: bool = False, as_json: bool = False, timeout: float = 150.0) -> int:
    """Build the mesh, wait for it, ping every direction, print the summary, tear down
    (with `keep`: after the summary, wait for Ctrl-C or SIGTERM before tearing down)."""

    def say(text: str) -> None:
        print(f"demo: {text}", file=sys.stderr, flush=True)

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="afbr-demo-"))
    demo = RunningDemo(workdir, say=say)
    traffic: list[PingResult] = []
    converged: float | None = None
    error: str | None = None
    reported = False
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with demo:
            demo.start_all()
            say(f"waiting for the mesh (up to {timeout:.0f}s): sessions, routes, softwires")
            converged = demo.wait_mesh(timeout)
            say(f"mesh complete after {converged:.1f}s; pinging between all islands")
            traffic = demo.ping_islands()
            _report(demo, traffic, converged, time.monotonic() - started, as_json)
            reported = True
            if keep:
                _keep_running(demo, say)
            say("tearing down")
    except DemoError as exc:
        error = str(exc)
    except KeyboardInterrupt:
        say("interrupted: torn down")
        error = None if reported else "interrupted"
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(workdir, ignore_errors=True)
    if error is not None:
        if as_json:
            body = summary_json(demo.mesh, {}, traffic, converged_after=converged,
                                elapsed=time.monotonic() - started, error=error)  # fmt: skip
            print(json.dumps(body, indent=2, default=str))
        print(f"demo: FAILED: {error}", file=sys.stderr)
        return 1
    return 0 if traffic and all(r.ok for r in traffic) else 1


def _report(
    demo: RunningDemo, traffic: list[PingResult], converged: float, elapsed: float, as_json: bool
) -> None:
    snapshot = demo.snapshot()
    if as_json:
        body = summary_json(
            demo.mesh, snapshot, traffic, converged_after=converged, elapsed=elapsed
        )
        print(json.dumps(body, indent=2, default=str), flush=True)
    else:
        text = render_summary(
            demo.mesh, snapshot, traffic, converged_after=converged, elapsed=elapsed
        )
        print(text, flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _keep_running(demo: RunningDemo, say: Say) -> None:
    say(f"--keep: the mesh stays up; its files are in {demo.workdir}")
    for name, daemon in demo.daemons.items():
        say(f"  afbr status --socket {daemon.paths.control_socket}   # AFBR {name}")
    for name, host in demo.hosts.items():
        say(f"  ip netns exec {host.name} ...   # {name}")
    say("press Ctrl-C (or send SIGTERM) to tear it down")
    while True:
        time.sleep(3600)
