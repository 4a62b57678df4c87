"""`afbr status/tunnels/routes/sas/audit` against a control socket served in-process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from control_socket_thread import serving

from afbr.cli import main
from afbr.commands.show import render_table, render_text

MD5_DIAGNOSIS = (
    "TCP-MD5 mismatch or missing key? (TCPMD5Failure=3 TCPMD5NotFound=0 TCPMD5Unexpected=0)"
)
# Shaped like AfbrDaemon.status() with IPsec on (IpsecAgent.summary()).
STATUS: dict[str, object] = {
    "version": "0.1.0",
    "role": "afbr",
    "router_id": "192.0.2.10",
    "core": "IPv6 2001:db8::a",
    "uptime_seconds": 42,
    "exabgp": {"state": "running", "restarts": 0},
    "neighbors": [
        {"address": "2001:db8::1", "state": "up", "md5": True},
        {"address": "2001:db8::2", "state": "down", "md5": True, "diagnosis": MD5_DIAGNOSIS},
    ],
    "routes": 3,
    "tunnels": 2,
    "ipsec": {
        "enabled": True,
        "peers": 3,
        "peers_without_sa": ["2001:db8::c", "2001:db8::d"],
        "child_sas": 1,
        "ike_auth_failures": 0,
        "sa_up": 3,
        "sa_rekeyed": 1,
        "xfrm_failures": 2,
        "bad_input": {"garbage": 20000, "unknown-spi": 3},
        "repairs": 1,
        "initiations": 1234567,
    },
    "drops": {"malformed_attribute": 0, "spoof_afbr1a2b": 4},
    "daemon": {"bridge_connections": 1, "syncs": 3, "sync_errors": 0},
}
STATE: dict[str, object] = {
    "status": STATUS,
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
    handlers = {name: (lambda req, v=value: v) for name, value in STATE.items()}
    with serving(tmp_path / "afbr.sock", handlers) as path:
        yield path


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


def test_status_text_is_words_and_numbers(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--socket", str(socket_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "exabgp: state running, restarts 0" in lines
    neighbors = lines.index("neighbors:")
    assert lines[neighbors + 1].split() == ["ADDRESS", "MD5", "STATE"]
    assert lines[neighbors + 2].split() == ["2001:db8::1", "yes", "up"]
    assert lines[neighbors + 3].split(maxsplit=2) == [
        "2001:db8::2",
        "yes",
        f"down: {MD5_DIAGNOSIS}",
    ]
    ipsec = lines.index("ipsec:")
    assert lines[ipsec + 1 : ipsec + 12] == [
        "  enabled: yes",
        "  peers: 3",
        "  peers_without_sa: 2001:db8::c, 2001:db8::d",
        "  child_sas: 1",
        "  ike_auth_failures: 0",
        "  sa_up: 3",
        "  sa_rekeyed: 1",
        "  xfrm_failures: 2",
        "  bad_input: garbage 20000, unknown-spi 3",
        "  repairs: 1",
        "  initiations: 1234567",
    ]
    assert "drops: malformed_attribute 0, spoof_afbr1a2b 4" in lines
    for repr_sign in ("[", "]", "{", "}", "'", "True", "False", "None", "e+"):
        assert repr_sign not in out, repr_sign
    assert main(["status", "--json", "--socket", str(socket_path)]) == 0
    assert json.loads(capsys.readouterr().out) == STATUS


def test_status_text_of_empty_and_off_parts() -> None:
    text = render_text(
        "status",
        {
            "neighbors": [],
            "ipsec": {"enabled": False},
            "drops": {},
            "agent": {"peers_without_sa": [], "bad_input": {}},
        },
    )
    assert text.splitlines() == [
        "neighbors:",
        "  (none)",
        "ipsec: enabled no",
        "drops: (none)",
        "agent:",
        "  peers_without_sa: (none)",
        "  bad_input: (none)",
    ]


def test_audit_fails_when_a_check_fails(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "--socket", str(socket_path)]) == 1
    assert "fail" in capsys.readouterr().out


def test_table_alignment() -> None:
    table = render_table([{"a": "x", "bb": None}, {"a": "longer", "bb": [1, 2]}])
    assert table.splitlines() == ["A       BB", "x       -", "longer  1,2"]


def test_a_column_only_later_rows_have_is_shown() -> None:
    table = render_table([{"a": "x"}, {"a": "y", "why": "because"}])
    assert table.splitlines() == ["A  WHY", "x  -", "y  because"]
