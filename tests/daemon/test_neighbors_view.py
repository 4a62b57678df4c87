"""`afbr neighbors [ADDRESS]`: the daemon's view of each configured BGP neighbor, read from
what a real ExaBGP 5.0.15 wrote (tests/bgp/exabgp_5_0_15_restart.jsonl), served over the
daemon's own control-socket handlers and printed by the CLI."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from control_socket_thread import serving

from afbr.cli import main
from afbr.daemon import views
from afbr.daemon.runtime import AfbrDaemon
from afbr.daemon.tcp_md5_watch import Md5Counters
from afbr.metrics import render

CAPTURE = Path(__file__).parents[1] / "bgp" / "exabgp_5_0_15_restart.jsonl"
RR, OTHER = "2001:db8:ffff::1", "2001:db8:ffff::9"
CONFIG = f"""\
router_id: 192.0.2.10
asn: 65000
core: {{family: ipv6, address: "2001:db8:ffff::2"}}
clients: {{prefixes: [198.51.100.128/25]}}
bgp:
  neighbors:
    - {{address: "{RR}", asn: 65000, allow_unauthenticated: true}}
    - {{address: "{OTHER}", asn: 65001, allow_unauthenticated: true}}
ipsec: {{enabled: false}}
"""


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def daemon(tmp_path: Path) -> AfbrDaemon:
    path = tmp_path / "afbr.yaml"
    path.write_text(CONFIG + f"state_dir: {tmp_path / 'state'}\ncontrol_socket: {tmp_path / 's'}\n")
    return AfbrDaemon(path, exabgp="/nonexistent/exabgp")


def feed(daemon: AfbrDaemon, lines: list[str], clock: Clock) -> None:
    daemon.control_plane.clock = clock
    for line in lines:
        daemon.control_plane.feed_line(line)


def capture_until_first_update() -> list[str]:
    lines = CAPTURE.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if '"type": "update"' in line)
    return lines[: first + 1]


def test_an_established_neighbor_with_its_prefix(daemon: AfbrDaemon) -> None:
    clock = Clock()
    feed(daemon, capture_until_first_update(), clock)
    clock.now = 42.4
    rows = views.neighbors(daemon)
    assert rows == [
        {
            "address": RR,
            "asn": 65000,
            "state": "up",
            "seconds": 42,
            "received": 1,
            "accepted": 1,
            "md5": False,
            "families": ["ipv4/unicast", "ipv6/unicast"],
            "last_down_reason": None,
        },
        {
            "address": OTHER,
            "asn": 65001,
            "state": "down",
            "seconds": None,  # ExaBGP never reported it
            "received": 0,
            "accepted": 0,
            "md5": False,
            "families": None,
            "last_down_reason": None,
        },
    ]
    assert views.neighbors(daemon, "2001:db8:ffff:0::9") == [rows[1]]  # any spelling
    with pytest.raises(ValueError):
        views.neighbors(daemon, "not-an-address")


def test_the_whole_capture_ends_with_the_notification_and_a_diagnosis(
    daemon: AfbrDaemon,
) -> None:
    feed(daemon, CAPTURE.read_text().splitlines(), Clock())
    daemon.md5_watch.observe(Md5Counters(), [RR])
    daemon.md5_watch.observe(Md5Counters(failure=2), [RR])
    (row,) = views.neighbors(daemon, RR)
    assert row["state"] == "down"
    assert row["last_down_reason"] == "notification received (6,3)"
    assert row["diagnosis"].startswith("TCP-MD5 mismatch or missing key?")


@pytest.fixture
def socket_path(daemon: AfbrDaemon, tmp_path: Path) -> Iterator[Path]:
    feed(daemon, CAPTURE.read_text().splitlines(), Clock())
    with serving(tmp_path / "afbr.sock", daemon._handlers()) as path:
        yield path


def test_the_cli_prints_words_and_numbers(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["neighbors", "--socket", str(socket_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == [
        "ADDRESS",
        "ASN",
        "SECONDS",
        "RECEIVED",
        "ACCEPTED",
        "MD5",
        "FAMILIES",
        "LAST_DOWN_REASON",
        "STATE",
    ]
    assert lines[1].split()[:2] == [RR, "65000"]
    assert lines[1].split()[4:7] == ["0", "no", "ipv4/unicast,ipv6/unicast"]
    assert "notification received (6,3)" in lines[1] and lines[1].endswith("down")
    assert lines[2].split() == [OTHER, "65001", "-", "0", "0", "no", "-", "-", "down"]
    for repr_sign in ("[", "]", "{", "}", "'", "True", "False", "None"):
        assert repr_sign not in out, repr_sign


def test_the_cli_asks_for_one_neighbor_and_prints_json(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["neighbors", OTHER, "--json", "--socket", str(socket_path)]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["address"] == OTHER and row["state"] == "down"
    assert main(["neighbors", "bogus", "--socket", str(socket_path)]) == 1
    assert "does not appear to be an IPv4 or IPv6 address" in capsys.readouterr().err


@pytest.mark.tool("promtool")
def test_the_daemons_own_metrics_pass_promtool(daemon: AfbrDaemon) -> None:
    feed(daemon, capture_until_first_update(), Clock())
    text = render(views.metrics(daemon))
    assert f'afbr_bgp_neighbor_up{{neighbor="{RR}"}} 1' in text
    assert f'afbr_bgp_neighbor_prefixes{{neighbor="{RR}"}} 1' in text
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
