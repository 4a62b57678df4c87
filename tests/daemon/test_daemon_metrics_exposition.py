"""The daemon's metrics follow Prometheus's conventions: one unit per metric (paths and
packets dropped apart), per-neighbor and per-peer series, build info and start time; the
rendered text of a realistic status passes `promtool check metrics` (Debian's prometheus
package) with no warning, and the exposition rules are checked here as well."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from afbr.bgp.softwire_rib import PathProblem
from afbr.daemon.daemon_metrics import status_metrics
from afbr.metrics import render

NEIGHBORS = [
    {"address": "2001:db8::1", "state": "up", "received": 3, "accepted": 2},
    {"address": "2001:db8::2", "state": "down", "received": 1, "accepted": 1},
]
SAS = [  # IpsecAgent.sas(): CHILD SAs per peer, one of them not (yet) in the kernel
    {"peer": "2001:db8::b", "spi_in": "c0000001", "in_kernel": True},
    {"peer": "2001:db8::b", "spi_in": "c0000002", "in_kernel": True},
    {"peer": "2001:db8::c", "spi_in": "c0000003", "in_kernel": False},
    {"peer": "2001:db8::d", "spi_in": "c0000004", "in_kernel": True},
]
# Shaped like views.status(): the RIB's counters and the softwire side's in "drops".
STATUS: dict[str, Any] = {
    "version": "0.1.0",
    "neighbors": [{"address": n["address"], "state": n["state"]} for n in NEIGHBORS],
    "routes": 3,
    "tunnels": 2,
    "drops": {
        "tunnel-encap-treat-as-withdraw": 5,
        "no-usable-tunnel": 1,
        "dataplane_errors": 2,
        "decap_filter_installed": 1,
        "spoof_afbr0123": 4,
        "unknown_endpoint": 9,
        'odd"name\\with\nnewline': 1,  # a counter name escaped, not trusted
    },
    "exabgp": {"restarts": 1},
    "daemon": {"syncs": 10, "sync_errors": 1, "sync_retries": 1, "resyncs": 4},
    "ipsec": {
        "enabled": True,
        "peers": 3,
        "peers_without_sa": ["2001:db8::c"],
        "child_sas": 3,
        "sa_up": 3,
        "sa_rekeyed": 2,
        "ike_auth_failures": 5,
        "bad_input": {"garbage": 20000},
        "xfrm_failures": 2,
        "repairs": 4,
        "kernel_repairs": 1,
        "start_overs": 0,
        "initiations": 7,
        "peer_errors": 0,
    },
}


def exposition() -> str:
    return render(status_metrics(STATUS, neighbors=NEIGHBORS, sas=SAS, started=1.7e9))


def samples(text: str) -> set[str]:
    return {line for line in text.splitlines() if not line.startswith("#")}


def test_drops_are_split_by_unit() -> None:
    text = exposition()
    assert samples(text) >= {
        'afbr_dropped_paths_total{reason="tunnel-encap-treat-as-withdraw"} 5',
        'afbr_dropped_paths_total{reason="no-usable-tunnel"} 1',
        'afbr_dropped_packets_total{reason="spoof_afbr0123"} 4',
        'afbr_dropped_packets_total{reason="unknown_endpoint"} 9',
        "afbr_dataplane_errors_total 2",
        "afbr_decap_filter_installed 1",
    }
    paths = {line.split('"')[1] for line in samples(text) if "dropped_paths" in line}
    assert paths == {problem.value for problem in PathProblem}  # every reason, from 0
    assert "afbr_drops_total" not in text
    assert not any("dropped" in line and "installed" in line for line in samples(text))


def test_per_neighbor_per_peer_build_and_start_time() -> None:
    assert samples(exposition()) >= {
        'afbr_bgp_neighbor_up{neighbor="2001:db8::1"} 1',
        'afbr_bgp_neighbor_up{neighbor="2001:db8::2"} 0',
        'afbr_bgp_neighbor_prefixes{neighbor="2001:db8::1"} 2',
        'afbr_bgp_neighbor_prefixes_received{neighbor="2001:db8::1"} 3',
        'afbr_ipsec_child_sas{peer="2001:db8::b"} 2',
        'afbr_ipsec_child_sas{peer="2001:db8::d"} 1',
        'afbr_build_info{version="0.1.0"} 1',
        "process_start_time_seconds 1700000000",
        "afbr_bgp_neighbors_up 1",
    }
    # Without the agent's SA list, the total as before.
    assert "afbr_ipsec_child_sas 3" in samples(render(status_metrics(STATUS)))


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def test_exposition_rules() -> None:
    """HELP and TYPE once per family, before its samples; counters end in _total; label
    values escaped; no series twice."""
    text = exposition()
    helped: list[str] = []
    typed: dict[str, str] = {}
    series: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.append(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name not in typed, f"TYPE twice: {name}"
            typed[name] = kind
            assert kind in ("counter", "gauge")
            assert name.endswith("_total") == (kind == "counter"), name
        else:
            match = SAMPLE.match(line)
            assert match, line
            name, _, labels, value = match.groups()
            assert name in typed, f"sample before its TYPE: {line}"
            float(value)
            if labels:
                assert "".join(m.group(0) for m in LABEL.finditer(labels)) == labels, line
            assert line.rsplit(" ", 1)[0] not in series, f"series twice: {line}"
            series.add(line.rsplit(" ", 1)[0])
    assert sorted(helped) == sorted(set(helped)) == sorted(typed)
    assert 'reason="odd\\"name\\\\with\\nnewline"' in text


@pytest.mark.tool("promtool")
def test_promtool_finds_nothing_to_say() -> None:
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=exposition(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""
