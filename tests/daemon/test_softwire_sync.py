"""The daemon's dataplane side (afbr.daemon.softwire_sync) when a step fails: the failure is
reported, the rest goes ahead, and the filter's state is what the kernel holds.

No tunnels (the host kernel may lack them; tests/dataplane/test_softwire_kernel.py runs those
in UML): the desired state holds only the access-control filter, in a namespace of its own.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from nft_fault import INJECTED, calls, nft_failing_once
from test_config import MINIMAL  # the minimal valid config (tests/test_config.py)

from afbr.config import parse_config
from afbr.daemon.softwire_sync import KernelSoftwireSync, SyncWork, local_policy
from afbr.lab.netns import Lab

pytestmark = [pytest.mark.netns]


class KeyingRecorder:
    """A stand-in for afbr.daemon.ipsec_agent.IpsecAgent that records what the reconcile
    handed it to key (the real agent needs XFRM interfaces, which the host kernel may lack;
    the IPsec tests run it for real)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, bytes]]] = []

    def sync(self, needs: Any, authenticators: dict[str, bytes]) -> None:
        self.calls.append((needs, dict(authenticators)))


def test_an_nft_failure_is_reported_ipsec_keyed_and_the_retry_installs_the_filter(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = lab.host("sws")
    injector = nft_failing_once(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{injector}:{os.environ['PATH']}")
    config = parse_config(MINIMAL)
    sync = KernelSoftwireSync(config, netns=host.name)
    keying = KeyingRecorder()
    sync.ipsec = keying  # type: ignore[assignment]
    authenticators = {"2001:db8::b": b"\x01" * 20}
    work = SyncWork([], local_policy(config), authenticators, time.perf_counter())
    try:
        first = sync.finish(work, sync.apply(work))
        assert first["ok"] is False
        assert any(INJECTED in error for error in first["errors"]), first["errors"]
        assert first["ipsec_keyed"] is True
        assert keying.calls == [((), authenticators)]  # keyed although nft failed
        assert calls(injector)[0].startswith("-j list table inet afbr")  # the failed step
        assert sync.counters() == {"dataplane_errors": 1, "decap_filter_installed": 0}

        second = sync.finish(work, sync.apply(work))  # the daemon's retry
        assert second["ok"] is True and second["errors"] == []
        assert len(keying.calls) == 2
        counters = sync.counters()
        assert counters["decap_filter_installed"] == 1
        assert counters["dataplane_errors"] == 1
        assert {"bgp_from_unknown", "tunnel_from_unknown"} <= set(counters)
        assert "chain input" in host.run("nft", "list", "table", "inet", "afbr")
    finally:
        sync.close()
        sync.dataplane.close()


def test_counters_are_read_in_the_worker_and_only_cached_for_views(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`counters()` (status, metrics, the drop log on the event loop) forks no nft; the
    worker's refresh reads the kernel again, e.g. a table someone deleted."""
    host = lab.host("swc")
    config = parse_config(MINIMAL)
    sync = KernelSoftwireSync(config, netns=host.name)
    work = SyncWork([], local_policy(config), {}, time.perf_counter())
    try:
        assert sync.counters()["decap_filter_installed"] == 0  # nothing read yet
        assert sync.finish(work, sync.apply(work))["ok"]
        assert sync.counters()["decap_filter_installed"] == 1
        host.run("nft", "delete", "table", "inet", "afbr")
        # no nft on PATH from here on: a view that forked it would fail
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
        assert sync.counters()["decap_filter_installed"] == 1  # the cached reading
        monkeypatch.undo()
        sync.dataplane.read_filter()  # what refresh_in_worker runs in the worker
        assert sync.counters()["decap_filter_installed"] == 0
        assert sync.finish(work, sync.apply(work))["ok"]  # the periodic resync repairs it
        assert sync.counters()["decap_filter_installed"] == 1
    finally:
        sync.close()
        sync.dataplane.close()
