"""The ExaBGP API process: the control-plane core in memory, then the real process on pipes.

Input lines are ExaBGP 5.0.15's own (exabgp_5_0_15_api.jsonl, see test_exabgp_api.py).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from ipaddress import IPv4Address, ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest

from afbr.bgp.control_plane import BgpControlPlane
from afbr.bgp.session_config import BgpSessionConfig, NeighborConfig, SwEncap, SwEncapKind

PLUGIN = [sys.executable, "-m", "afbr.bgp.exabgp_plugin"]
FAST_DUMPS = ["--dump-interval", "0.05"]
RECORDED = (Path(__file__).parent / "exabgp_5_0_15_api.jsonl").read_text().splitlines()
PEER = "2001:db8::1"
UP = next(line for line in RECORDED if '"state": "up"' in line)
DOWN = next(line for line in RECORDED if '"state": "down"' in line)
GRE_ROUTES = next(line for line in RECORDED if '"local-preference": 200' in line)

AFBR_YAML = """\
router_id: 192.0.2.2
asn: 65001
core: {{family: ipv6, address: "2001:db8::2"}}
clients: {{prefixes: [{prefixes}]}}
bgp:
  neighbors:
    - {{address: "2001:db8::1", asn: 65001, role: peer, allow_unauthenticated: true}}
encap: {{preference: [gre, ip-in-ip], gre_key: 100}}
ipsec: {{enabled: false}}
"""


def _session(*prefixes: str) -> BgpSessionConfig:
    return BgpSessionConfig(
        local_as=65001,
        router_id=IPv4Address("192.0.2.2"),
        core_address=ip_address("2001:db8::2"),
        neighbors=(NeighborConfig(ip_address(PEER), 65001, allow_unauthenticated=True),),
        client_prefixes=tuple(ip_network(p) for p in prefixes),
        sw_encap=(SwEncap(SwEncapKind.GRE, gre_key=100),),
    )


def test_control_plane_announces_to_a_neighbor_that_comes_up() -> None:
    control = BgpControlPlane(_session("203.0.113.0/25", "203.0.113.128/25"))
    [command] = control.feed_line(UP)
    assert command.startswith(f"neighbor {PEER} announce attributes next-hop 2001:db8::2 ")
    assert command.endswith(" nlri 203.0.113.0/25 203.0.113.128/25")
    assert control.feed_line("done") == [] and control.acks == {"done": 1}


def test_control_plane_feeds_the_rib_and_collects_changes() -> None:
    control = BgpControlPlane(_session("203.0.113.0/25"))
    for line in RECORDED[:3]:
        control.feed_line(line)
    assert control.feed_line(GRE_ROUTES) == []
    assert control.take_changes() == {"198.51.100.0/24", "198.51.100.128/25", "203.0.113.0/26"}
    assert control.take_changes() == set()
    snapshot = control.snapshot(now=12.5)
    best = snapshot["prefixes"]["198.51.100.0/24"]
    assert best == {
        "neighbor": PEER,
        "next_hop": PEER,
        "endpoint": PEER,
        "local_pref": 200,
        "as_path_length": 0,
        "originator_id": None,
        "tunnel_encap": "0002000a01040000000702020800",
        "tunnel_types": [2],
        "tunnels": [{"type": 2, "endpoint": PEER}],
        "problems": [],
    }
    assert snapshot["neighbors_up"] == [PEER] and snapshot["time"] == 12.5
    assert snapshot["advertised"] == {"ipv4": ["203.0.113.0/25"]}
    assert json.loads(control.snapshot_json(now=12.5)) == snapshot  # the fast form agrees
    chunks = list(control.snapshot_json_chunks(now=12.5, batch=2))
    assert len(chunks) == 4 and json.loads("".join(chunks)) == snapshot
    control.feed_line(DOWN)
    assert control.snapshot(now=13)["prefixes"] == {}


def test_control_plane_config_update_gives_the_difference() -> None:
    control = BgpControlPlane(_session("203.0.113.0/25", "203.0.113.128/25"))
    commands = control.update_config(_session("203.0.113.0/25", "192.0.2.0/25"))
    assert commands[0] == "withdraw attributes next-hop 2001:db8::2 nlri 203.0.113.128/25"
    assert commands[1].endswith(" nlri 192.0.2.0/25") and len(commands) == 2


class Plugin:
    """The plugin process as ExaBGP runs it: JSON on its stdin, commands from its stdout."""

    def __init__(self, tmp_path: Path, prefixes: str = "203.0.113.0/25") -> None:
        self.config = tmp_path / "afbr.yaml"
        self.config.write_text(AFBR_YAML.format(prefixes=prefixes))
        self.dump = tmp_path / "rib.json"
        self.proc = subprocess.Popen(
            [*PLUGIN, "--config", str(self.config), "--rib-dump", str(self.dump), *FAST_DUMPS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.buffer = b""

    def send(self, *lines: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(line + "\n" for line in lines).encode())
        self.proc.stdin.flush()

    def read_line(self, timeout: float = 10.0) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError("no command from the plugin")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError("plugin closed its stdout")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def wait_dump(self, probe: Any, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if self.dump.exists():
                last = json.loads(self.dump.read_text())  # never half-written: atomic
                if probe(last):
                    return last
            time.sleep(0.05)
        raise AssertionError(f"dump never matched; last: {json.dumps(last)[:500]}")

    def finish(self) -> tuple[int, str]:
        try:
            self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stderr is not None
        return self.proc.returncode, self.proc.stderr.read().decode()


@pytest.fixture
def plugin(tmp_path: Path) -> Any:
    running = Plugin(tmp_path)
    yield running
    if running.proc.poll() is None:
        running.proc.kill()
        running.proc.wait()


def test_plugin_process_end_to_end(plugin: Plugin) -> None:
    assert plugin.read_line() == "announce route-refresh ipv4 unicast"  # if respawned
    assert plugin.read_line() == "announce route-refresh ipv6 unicast"
    plugin.send("error", "error")  # ExaBGP's answer with no session up
    plugin.wait_dump(lambda d: d["prefixes"] == {})  # a first, empty dump
    plugin.send(*RECORDED[:2])
    command = plugin.read_line()
    assert command.startswith(f"neighbor {PEER} announce attributes next-hop 2001:db8::2 ")
    plugin.send("done", GRE_ROUTES)
    dump = plugin.wait_dump(lambda d: "198.51.100.0/24" in d["prefixes"])
    assert dump["prefixes"]["198.51.100.0/24"]["endpoint"] == PEER
    dump = plugin.wait_dump(lambda d: d["command_acks"] == {"error": 2, "done": 1})

    # SIGHUP: the config now has another prefix; the plugin sends the difference.
    plugin.config.write_text(AFBR_YAML.format(prefixes="192.0.2.0/25"))
    plugin.proc.send_signal(signal.SIGHUP)
    assert plugin.read_line() == "withdraw attributes next-hop 2001:db8::2 nlri 203.0.113.0/25"
    assert plugin.read_line().endswith(" nlri 192.0.2.0/25")

    plugin.send("{broken json", DOWN)
    plugin.proc.send_signal(signal.SIGTERM)
    code, err = plugin.finish()
    assert code == 0, err
    final = json.loads(plugin.dump.read_text())
    assert final["prefixes"] == {} and final["api_errors"] == {"invalid-json": 1}
    assert final["advertised"] == {"ipv4": ["192.0.2.0/25"]}


def test_plugin_exits_on_end_of_input_with_a_last_dump(plugin: Plugin) -> None:
    plugin.send(*RECORDED[:3], GRE_ROUTES)
    assert plugin.proc.stdin is not None
    plugin.proc.stdin.close()
    code, err = plugin.finish()
    assert code == 0, err
    final = json.loads(plugin.dump.read_text())
    assert len(final["prefixes"]) == 3


def test_plugin_survives_garbage(plugin: Plugin) -> None:
    plugin.send("\x00\x01", "[]", '{"type": "update"}', *RECORDED[:3], GRE_ROUTES)
    dump = plugin.wait_dump(lambda d: len(d["prefixes"]) == 3)
    assert dump["api_errors"] == {"invalid-json": 1, "not-an-object": 1, "missing-field": 1}
    assert plugin.proc.poll() is None


def test_plugin_refuses_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "afbr.yaml"
    bad.write_text("router_id: nope\n")
    proc = subprocess.run(
        [*PLUGIN, "--config", str(bad), "--rib-dump", str(tmp_path / "rib.json")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert "router_id" in proc.stderr


def test_a_large_burst_of_commands_does_not_deadlock(tmp_path: Path) -> None:
    # 5,000 prefixes: ~80 kB of commands, more than a pipe holds (afbr.config's check for
    # duplicate prefixes is quadratic, so more would mostly time the config loader).
    prefixes = ", ".join(f"10.{i >> 8}.{i & 255}.0/24" for i in range(5000))
    running = Plugin(tmp_path, prefixes)
    try:
        # ExaBGP would be writing JSON (here 1.4 MB) while the plugin writes its commands.
        running.send(*RECORDED[:2], *([GRE_ROUTES] * 2000))
        announced = 0
        while announced < 5000:
            line = running.read_line()
            if " nlri " in line:
                announced += len(line.split(" nlri ")[1].split())
        assert announced == 5000
        running.wait_dump(lambda d: len(d["prefixes"]) == 3)
    finally:
        running.proc.kill()
        running.proc.wait()
