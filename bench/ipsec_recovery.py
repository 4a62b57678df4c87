"""How fast IPsec heals (issue 10): traffic gap after an SA flush on the lower and on the
higher core address, after IKE blocked for 20 s with a flush (from the unblocking), and after a
reboot-like restart of either AFBR that finds an empty XFRM table.  Medians of N runs.

Two real IPsec agents (afbr.lab.ipsec_agent_lab) in namespaces of a kernel with ESP (the UML
kernel here, `scripts/bench.sh ipsec_recovery`); a ping every 0.1 s across the softwire;
the gap is from the fault (or the unblocking) to the first reply after the longest silence.
The baseline is the same scenario before this work: no recovery at all until the CHILD rekey
(an hour), or until the peer's dead-peer detection gave up (about 95 s) after a restart.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from afbr.lab.ipsec_agent_lab import (
    ISLAND,
    AgentNode,
    Pinger,
    agent_topology,
    lost,
    outage,
    ping_once,
    wait_until,
)
from afbr.lab.netns import Host, Lab

BLOCK_IKE = (
    "table inet afbr_bench_block { chain in { type filter hook input priority 0; "
    "udp dport { 500, 4500 } drop; }; }"
)


def flush(side: str) -> Callable[[dict[str, Host], dict[str, AgentNode]], float]:
    def run(hosts: dict[str, Host], _nodes: dict[str, AgentNode]) -> float:
        hosts[side].run("ip", "xfrm", "state", "flush")
        return time.time()

    return run


def ike_blocked(hosts: dict[str, Host], _nodes: dict[str, AgentNode]) -> float:
    hosts["a"].run("sh", "-c", f"echo '{BLOCK_IKE}' | nft -f -")
    hosts["a"].run("ip", "xfrm", "state", "flush")
    time.sleep(20.0)
    hosts["a"].run("nft", "delete", "table", "inet", "afbr_bench_block")
    return time.time()


def restart_empty(side: str) -> Callable[[dict[str, Host], dict[str, AgentNode]], float]:
    def run(hosts: dict[str, Host], nodes: dict[str, AgentNode]) -> float:
        nodes[side].stop()
        hosts[side].run("ip", "xfrm", "state", "flush")
        hosts[side].run("ip", "xfrm", "policy", "flush")
        started = time.time()
        nodes[side].start()
        return started

    return run


SCENARIOS = {
    "SA flush, lower address": flush("a"),
    "SA flush, higher address": flush("b"),
    "IKE blocked 20 s + flush (from unblocking)": ike_blocked,
    "restart without SAs, lower address": restart_empty("a"),
    "restart without SAs, higher address": restart_empty("b"),
}


def one_run(
    name: str, fault: Callable[[dict[str, Host], dict[str, AgentNode]], float]
) -> tuple[float, int]:
    with Lab("bench") as lab, tempfile.TemporaryDirectory() as tmp:
        hosts = agent_topology(lab)
        nodes = {
            "a": AgentNode(hosts["a"], "a", ("b",), Path(tmp) / "a"),
            "b": AgentNode(hosts["b"], "b", ("a",), Path(tmp) / "b"),
        }
        try:
            wait_until(lambda: ping_once(hosts["a"], ISLAND["a"], ISLAND["b"]), 60, name)
            pinger = Pinger(hosts["a"], ISLAND["a"], ISLAND["b"])
            time.sleep(1.0)
            at = fault(hosts, nodes)
            wait_until(lambda: ping_once(hosts["a"], ISLAND["a"], ISLAND["b"]), 120, name)
            time.sleep(0.5)
            replies = pinger.stop()
            return outage(replies, at), len(lost(replies))
        finally:
            for node in nodes.values():
                node.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for name, fault in SCENARIOS.items():
        results = [one_run(name, fault) for _ in range(args.runs)]
        gaps = [gap for gap, _lost in results]
        rows.append(
            {
                "scenario": name,
                "median_s": round(statistics.median(gaps), 2),
                "runs_s": [round(g, 2) for g in gaps],
                "pings_lost": [n for _gap, n in results],
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'scenario':45} {'median':>8}  runs (s)                      pings lost")
        for row in rows:
            runs = " ".join(f"{g:.2f}" for g in row["runs_s"])
            print(f"{row['scenario']:45} {row['median_s']:7.2f}s  {runs:29} {row['pings_lost']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
