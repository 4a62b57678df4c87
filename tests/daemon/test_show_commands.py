"""`afbr status/tunnels/routes/sas/audit` against a control socket served in-process."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from afbr.cli import main
from afbr.commands.show import render_table
from afbr.daemon.control_socket import ControlServer

STATE: dict[str, object] = {
    "status": {"role": "afbr", "neighbors": [{"address": "2001:db8::1", "state": "up"}]},
    "tunnels": [{"name": "afbr1a2b", "type": "gre", "remote": "2001:db8::b", "ipsec": True}],
    "routes": [],
    "sas": [],
    "audit": [
        {"requirement": "BGP sessions use TCP-MD5", "rfc": "RFC 5565 §13.3", "status": "pass"},
        {"requirement": "softwires protected by IPsec", "rfc": "RFC 5619 §4.4.2", "status": "fail"},
    ],
}


@pytest.fixture
def socket_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "afbr.sock"
    loop = asyncio.new_event_loop()
    handlers = {name: (lambda req, v=value: v) for name, value in STATE.items()}
    server = ControlServer(path, handlers, allowed_uid=-1)
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield path
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_tunnels_as_table_and_json(socket_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tunnels", "--socket", str(socket_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "TYPE", "REMOTE", "IPSEC"]
    assert out[1].split() == ["afbr1a2b", "gre", "2001:db8::b", "yes"]
    assert main(["tunnels", "--json", "--socket", str(socket_path)]) == 0
    assert json.loads(capsys.readouterr().out) == STATE["tunnels"]


def test_empty_listing_says_so(socket_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", "--socket", str(socket_path)]) == 0
    assert capsys.readouterr().out.strip() == "(no routes)"


def test_status_nests_lists(socket_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--socket", str(socket_path)]) == 0
    out = capsys.readouterr().out
    assert "role: afbr" in out
    assert "2001:db8::1" in out


def test_audit_fails_when_a_check_fails(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "--socket", str(socket_path)]) == 1
    assert "fail" in capsys.readouterr().out


def test_table_alignment() -> None:
    table = render_table([{"a": "x", "bb": None}, {"a": "longer", "bb": [1, 2]}])
    assert table.splitlines() == ["A       BB", "x       -", "longer  1,2"]
