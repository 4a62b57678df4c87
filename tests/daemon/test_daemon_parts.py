"""The daemon's generic parts: control socket, instance lock, supervisor, metrics, logs."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from afbr.daemon.control_socket import ControlClientError, ControlServer, request
from afbr.daemon.instance_lock import AlreadyRunning, InstanceLock
from afbr.daemon.supervisor import Backoff, Supervisor
from afbr.logs import JsonFormatter, RateLimitedLog
from afbr.metrics import Metric, MetricsServer, render


def test_control_socket_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "run" / "afbr.sock"

    async def scenario() -> None:
        server = ControlServer(
            path,
            {"status": lambda req: {"neighbors": 2}, "boom": lambda req: 1 / 0},
            allowed_uid=os.geteuid(),
        )
        await server.start()
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.parent.stat().st_mode & 0o777 == 0o700
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, request, path, "status") == {"neighbors": 2}
        with pytest.raises(ControlClientError, match="unknown command 'nope'"):
            await loop.run_in_executor(None, request, path, "nope")
        with pytest.raises(ControlClientError, match="ZeroDivisionError"):
            await loop.run_in_executor(None, request, path, "boom")
        # the daemon survives a failing command
        assert await loop.run_in_executor(None, request, path, "status") == {"neighbors": 2}
        await server.close()
        assert not path.exists()

    asyncio.run(scenario())


def test_control_client_without_daemon_says_so(tmp_path: Path) -> None:
    with pytest.raises(ControlClientError, match="no afbr daemon"):
        request(tmp_path / "absent.sock", "status")


def test_a_second_instance_refuses_to_start(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path / "afbr.lock")
    first.acquire()
    code = (
        "import sys; from pathlib import Path; from afbr.daemon.instance_lock import *\n"
        "try:\n    InstanceLock(Path(sys.argv[1])).acquire()\n"
        "except AlreadyRunning as e:\n    print(e); sys.exit(3)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "afbr.lock")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 3
    assert f"pid {os.getpid()}" in proc.stdout
    first.release()
    again = InstanceLock(tmp_path / "afbr.lock")
    again.acquire()  # free again once released
    again.release()
    with pytest.raises(AlreadyRunning):
        held = InstanceLock(tmp_path / "other.lock")
        held.acquire()
        InstanceLock(tmp_path / "other.lock").acquire()


def test_backoff_grows_and_is_capped() -> None:
    backoff = Backoff(first=1, factor=2, ceiling=10)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 10]
    assert backoff.delay(100_000) == 10  # days of failures: no float overflow


def test_supervisor_restarts_a_dying_child(tmp_path: Path) -> None:
    starts = tmp_path / "starts"

    async def scenario() -> int:
        sup = Supervisor(
            "child",
            ["sh", "-c", f"echo x >> {starts}; exit 1"],
            backoff=Backoff(first=0.05, factor=1, ceiling=0.05, stable_after=60),
        )
        sup.start()
        for _ in range(200):
            await asyncio.sleep(0.02)
            if starts.exists() and len(starts.read_text().split()) >= 3:
                break
        restarts = sup.restarts
        await sup.stop()
        assert sup.state == "stopped"
        return restarts

    assert asyncio.run(scenario()) >= 2


def test_supervisor_says_why_a_child_cannot_start_and_keeps_trying(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "no" / "exabgp"

    async def scenario() -> tuple[str, int]:
        sup = Supervisor(
            "exabgp",
            [str(missing), "server"],
            backoff=Backoff(first=0.02, factor=2, ceiling=0.05, stable_after=60),
        )
        sup.start()
        for _ in range(200):
            await asyncio.sleep(0.02)
            if sup.restarts >= 3:
                break
        state, restarts = sup.state, sup.restarts
        await sup.stop()
        assert sup.state == "stopped"
        return state, restarts

    with caplog.at_level(logging.ERROR, logger="afbr.daemon.supervisor"):
        state, restarts = asyncio.run(scenario())
    assert state.startswith("failed: ") and str(missing) in state
    assert restarts >= 3
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and all(str(missing) in e and "trying again" in e for e in errors)


def test_supervisor_logs_an_unexpected_failure_of_its_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(process: asyncio.subprocess.Process) -> None:
        raise RuntimeError("on_start is broken")

    async def scenario() -> str:
        sup = Supervisor("sleeper", ["sleep", "30"], on_start=broken)
        sup.start()
        for _ in range(200):
            await asyncio.sleep(0.02)
            if sup.state.startswith("failed"):
                break
        state = sup.state
        await sup.stop(timeout=5)
        return state

    with caplog.at_level(logging.ERROR, logger="afbr.daemon.supervisor"):
        state = asyncio.run(scenario())
    assert state.startswith("failed: ") and "on_start is broken" in state
    [record] = [r for r in caplog.records if "supervising sleeper failed" in r.getMessage()]
    assert record.exc_info is not None and str(record.exc_info[1]) == "on_start is broken"


def test_supervisor_stop_ends_a_running_child() -> None:
    async def scenario() -> int | None:
        sup = Supervisor("sleeper", ["sleep", "30"])
        sup.start()
        while sup.process is None:
            await asyncio.sleep(0.01)
        proc = sup.process
        await sup.stop(timeout=5)
        return proc.returncode

    assert asyncio.run(scenario()) is not None


def test_prometheus_text_format() -> None:
    text = render(
        [
            Metric("afbr_drops_total", "counter", "Packets dropped.", (({"reason": 'a"b'}, 3),)),
            Metric("afbr_routes", "gauge", "Routes.", (({}, 100000),)),
        ]
    )
    assert text.splitlines() == [
        "# HELP afbr_drops_total Packets dropped.",
        "# TYPE afbr_drops_total counter",
        'afbr_drops_total{reason="a\\"b"} 3',
        "# HELP afbr_routes Routes.",
        "# TYPE afbr_routes gauge",
        "afbr_routes 100000",
    ]


def test_metrics_endpoint_serves_on_loopback() -> None:
    async def scenario() -> tuple[bytes, bytes]:
        server = MetricsServer(
            "127.0.0.1:0", lambda: [Metric("afbr_up", "gauge", "Up.", (({}, 1),))]
        )
        await server.start()
        out = []
        for path in (b"/metrics", b"/other"):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
            writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            out.append(await reader.read())
            writer.close()
        await server.close()
        return out[0], out[1]

    ok, missing = asyncio.run(scenario())
    assert ok.startswith(b"HTTP/1.1 200 OK") and ok.endswith(b"afbr_up 1\n")
    assert missing.startswith(b"HTTP/1.1 404")


def test_json_log_lines_carry_event_fields() -> None:
    record = logging.LogRecord("afbr.ipsec", logging.INFO, "", 0, "SA up %s", ("x",), None)
    record.event = "sa-up"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "SA up x"
    assert line["event"] == "sa-up"
    assert line["level"] == "info"


def test_rate_limited_log_folds_a_flood(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RateLimitedLog(logging.getLogger("afbr.test"), interval=10)
    with caplog.at_level(logging.WARNING):
        logged = [limiter.log("garbage", now, "garbage datagram") for now in range(25)]
    assert logged.count(True) == 3  # at 0, 10, 20
    assert "(+9 more in the last 10s)" in caplog.records[1].getMessage()


def test_supervisor_hands_the_childs_stderr_to_the_reader_of_its_output() -> None:
    """ExaBGP's own messages (some on stderr) go through afbr's logger, never raw."""
    lines: list[bytes] = []

    async def read(process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        lines.append(await process.stdout.readline())

    async def scenario() -> None:
        sup = Supervisor("child", ["sh", "-c", "echo on-stderr >&2; sleep 5"], on_start=read)
        sup.start()
        for _ in range(200):
            await asyncio.sleep(0.02)
            if lines:
                break
        await sup.stop()

    asyncio.run(scenario())
    assert lines == [b"on-stderr\n"]
