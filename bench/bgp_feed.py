"""Benchmark: 100,000 IPv4 client prefixes from 100 remote AFBRs into afbr's ExaBGP.

    sudo .venv/bin/python bench/bgp_feed.py [--runs 3] [--json] [--prefixes 100000]

A small BGP speaker (bench/bgp_speaker.py, its own process) replays pre-encoded UPDATEs over
a TCP-MD5 session on loopback in a private namespace.  Each remote AFBR has its own next hop
(a core address) and Tunnel Encapsulation attribute (GRE key + IP-in-IP, encoded with afbr's
own codec), as its routes would arrive through a route reflector.  Two feeds:

- packed: up to 500 prefixes per UPDATE (an AFBR's routes share their attributes);
- single: one prefix per UPDATE.

Each feed goes, in the same run, to:

- bare ExaBGP, whose API process only counts the prefixes in ExaBGP's JSON (no decoding):
  ExaBGP's own cost of turning the feed into JSON;
- afbr's control plane: ExaBGP + afbr's plugin (python -m afbr.bgp.exabgp_plugin), until the
  softwire RIB holds every prefix.

Time runs from the speaker's first byte to the last prefix counted (bare) or in the RIB
(afbr); routes/s = prefixes / time.  Also afbr's resident memory (plugin process) with all
routes in.  Prints medians of N runs as a table, or JSON with --json.  Needs root (a network
namespace).  Prefixes are /25s in 10.0.0.0/8: data in UPDATEs only, never routed.
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bgp_speaker import update_messages

from afbr.bgp.tunnel_encap import Tunnel, TunnelEncapAttribute, encode_tunnel_encap
from afbr.lab.afbr_control_plane import AfbrControlPlane
from afbr.lab.exabgp_peer import ExaBgp
from afbr.lab.netns import Host, Lab

BENCH = Path(__file__).resolve().parent
AFBRS = 100
ASN = 65000
KEY = "bench-md5-key"
ADDR = {6: ("2001:db8:ffff::1", "2001:db8:ffff::2"), 4: ("192.0.2.1", "192.0.2.2")}  # afbr, speaker
FEEDS = {"packed": 500, "single": 1}  # prefixes per UPDATE at most
IPV4_GRE = 0x0800  # EtherType IPv4, the Protocol Type sub-TLV of the client packets


def remote_next_hop(core: int, index: int) -> str:
    if core == 6:
        return str(ipaddress.IPv6Address("2001:db8:aa::") + index + 1)
    return str(ipaddress.IPv4Address("198.51.100.0") + index + 1)


def remote_attribute(index: int) -> bytes:
    """Remote AFBR `index`'s SW-Encap set: GRE with its own key, then IP-in-IP."""
    tunnels = (
        Tunnel.gre(key=1000 + index, protocol_type=IPV4_GRE),
        Tunnel.ip_in_ip(protocol_type=IPV4_GRE),
    )
    return encode_tunnel_encap(TunnelEncapAttribute(tunnels))


def build_feed(prefixes: int, per_update: int, core: int) -> bytes:
    """Every UPDATE of one feed, concatenated: AFBRS remote AFBRs, prefixes split evenly."""
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    nets = [ipaddress.IPv4Network((base + (i << 7), 25)) for i in range(prefixes)]
    share = -(-prefixes // AFBRS)
    out = bytearray()
    for index in range(AFBRS):
        mine = nets[index * share : (index + 1) * share]
        if mine:
            for msg in update_messages(
                mine, remote_next_hop(core, index), remote_attribute(index), per_update
            ):
                out += msg
    return bytes(out)


@dataclass
class RunResult:
    seconds: float
    rss_mb: float | None = None  # afbr's plugin process
    exabgp_rss_mb: float | None = None  # its ExaBGP, for context


def _speaker(host: Host, core: int, feed: Path) -> subprocess.Popen[bytes]:
    own, speaker = ADDR[core]
    proc = host.popen(
        sys.executable,
        str(BENCH / "bgp_speaker.py"),
        "--listen",
        speaker,
        "--peer",
        own,
        "--feed",
        str(feed),
        "--md5",
        KEY,
        "--core",
        str(core),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"listening":
        raise RuntimeError("the speaker did not start")
    return proc


def _wait_line(proc: subprocess.Popen[bytes], word: str, timeout: float) -> str:
    """The speaker's next stdout line starting with `word` (`established T`, `sent T0 T1 N`)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if line.startswith(word + " "):
            return line
        if not line:
            raise RuntimeError(f"the speaker exited before '{word}'")
    raise RuntimeError(f"the speaker said no '{word}' within {timeout}s")


def _exabgp_neighbor(core: int, process: str) -> str:
    own, speaker = ADDR[core]
    nexthop = "    capability { nexthop true; }\n    nexthop { ipv4 unicast ipv6; }\n"
    return f"""process {process} {{
    run {{run}};
    encoder json;
}}
neighbor {speaker} {{
    router-id 192.0.2.1;
    local-address {own};
    local-as {ASN};
    peer-as {ASN};
    md5-password "{KEY}";
    family {{ ipv4 unicast; ipv6 unicast; }}
{nexthop if core == 6 else ""}    api {{
        processes [ {process} ];
        receive {{ parsed; update; }}
        neighbor-changes;
    }}
}}
"""


def _wait_file(path: Path, proc_alive: Callable[[], bool], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        if not proc_alive():
            raise RuntimeError(f"the receiver exited before {path.name} appeared")
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {path}")


def run_bare(host: Host, workdir: Path, core: int, feed: Path, prefixes: int) -> RunResult:
    """Bare ExaBGP: from the first byte sent to the last prefix seen in its JSON."""
    done = workdir / "done"
    counter = f"{sys.executable} {BENCH / 'exabgp_counter.py'} {prefixes} {done}"
    config = _exabgp_neighbor(core, "counter").replace("{run}", counter)
    speaker = _speaker(host, core, feed)
    exabgp = ExaBgp(host, workdir / "exabgp", config=config, cli=False).start()
    try:
        start = float(_wait_line(speaker, "sent", 60).split()[1])
        end = float(_wait_file(done, exabgp.running, 900).split()[0])
        assert exabgp.proc is not None
        return RunResult(end - start, exabgp_rss_mb=rss_mb(exabgp.proc.pid))
    finally:
        exabgp.stop()
        host.stop(speaker)


def afbr_config(core: int) -> dict[str, object]:
    """afbr.yaml for the receiving AFBR: one route-reflector neighbor (the speaker)."""
    own, speaker = ADDR[core]
    return {
        "router_id": "192.0.2.1",
        "asn": ASN,
        "core": {"family": f"ipv{core}", "address": own},
        "clients": {"prefixes": ["203.0.113.0/24" if core == 6 else "2001:db8:1::/48"]},
        "bgp": {
            "neighbors": [
                {"address": speaker, "asn": ASN, "role": "route-reflector", "md5_key": "rr"}
            ]
        },
        "encap": {"preference": ["gre", "ip-in-ip"]},
        "ipsec": {"enabled": False},
    }


def run_afbr(
    host: Host, workdir: Path, core: int, feed: Path, prefixes: int, *, dump_interval: float
) -> RunResult:
    """afbr's control plane: from the first byte sent until the softwire RIB holds them all.

    The plugin shows its RIB only in dumps; with dumps off during the feed (the default), the
    end is when the plugin and its ExaBGP stop using CPU (their last clock tick, 10 ms
    resolution), and the dump the plugin writes when it is ended proves the RIB held them all.
    """
    speaker = _speaker(host, core, feed)
    plane = AfbrControlPlane(
        host,
        workdir / "afbr",
        config=afbr_config(core),
        md5_keys={"rr": KEY},
        plugin_args=["--dump-interval", str(dump_interval)],
        exabgp_env={"exabgp_api_respawn": "false"},  # keep the plugin's last dump
    ).start()
    try:
        plugin = plane.plugin_pid()
        assert plane.exabgp is not None and plane.exabgp.proc is not None
        exabgp = plane.exabgp.proc.pid
        _wait_line(speaker, "established", 60)
        end = plugin_done_at(plugin, exabgp, quiet=2.0, timeout=900)
        start = float(_wait_line(speaker, "sent", 60).split()[1])
        rss = rss_mb(plugin)
        exabgp_rss = rss_mb(exabgp)
        plane.stop()
    finally:
        if plane.exabgp is not None:
            plane.exabgp.stop()
        host.stop(speaker)
    held = len(plane.rib_dump().get("prefixes", {}))
    if held < prefixes:
        raise RuntimeError(
            f"the softwire RIB held {held} of {prefixes} prefixes when the plugin and ExaBGP "
            "went idle (a machine too busy to measure on?)"
        )
    return RunResult(end - start, rss, exabgp_rss)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of stat)


EXABGP_IDLE_TICKS_PER_S = 5  # an idle ExaBGP's reactor still wakes up: ~3 ticks/s measured


def plugin_done_at(plugin: int, exabgp: int, *, quiet: float, timeout: float) -> float:
    """When the plugin last used CPU, once it has been idle for `quiet` seconds while its
    ExaBGP was idle too (no more JSON coming: ExaBGP only ticks over, see above).

    The plugin must have started on the feed first.  A plugin waiting for a busy ExaBGP is
    not done, which is why ExaBGP's rate counts.
    """
    samples: collections.deque[tuple[float, int]] = collections.deque()  # (time, ExaBGP ticks)
    plugin_ticks = cpu_ticks(plugin)
    plugin_changed: float | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.01)
        now = time.time()
        ticks = cpu_ticks(plugin)
        if ticks != plugin_ticks:
            plugin_ticks, plugin_changed = ticks, now
        samples.append((now, cpu_ticks(exabgp)))
        while samples and samples[0][0] < now - quiet:
            samples.popleft()
        if plugin_changed is None or now - plugin_changed < quiet:
            continue
        exabgp_rate = (samples[-1][1] - samples[0][1]) / quiet
        if exabgp_rate <= EXABGP_IDLE_TICKS_PER_S:
            return plugin_changed
    raise RuntimeError("the plugin and its ExaBGP never went idle")


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return None
    return None


def measure(args: argparse.Namespace) -> dict[str, object]:
    feeds = {name: size for name, size in FEEDS.items() if args.feed in (name, "both")}
    results: dict[str, dict[str, list[RunResult]]] = {
        feed: {"bare": [], "afbr": []} for feed in feeds
    }
    with tempfile.TemporaryDirectory(prefix="afbr-bench-") as tmp, Lab("bench") as lab:
        root = Path(tmp)
        host = lab.host("feed")
        own, speaker = ADDR[args.core]
        plen = 128 if args.core == 6 else 32
        host.ip_batch([f"addr add {own}/{plen} dev lo", f"addr add {speaker}/{plen} dev lo"])
        for feed, per_update in feeds.items():
            path = root / f"{feed}.bin"
            path.write_bytes(build_feed(args.prefixes, per_update, args.core))
            for run in range(args.runs):
                for kind in ("bare", "afbr"):
                    if kind == "afbr" and args.bare_only:
                        continue
                    workdir = root / f"{feed}-{kind}-{run}"
                    if kind == "bare":
                        result = run_bare(host, workdir, args.core, path, args.prefixes)
                    else:
                        result = run_afbr(
                            host,
                            workdir,
                            args.core,
                            path,
                            args.prefixes,
                            dump_interval=args.dump_interval,
                        )
                    results[feed][kind].append(result)
                    print(f"# {feed} {kind} run {run + 1}: {result.seconds:.2f} s", file=sys.stderr)
    return summarize(results, args)


def summarize(
    results: dict[str, dict[str, list[RunResult]]], args: argparse.Namespace
) -> dict[str, object]:
    summary: dict[str, object] = {"prefixes": args.prefixes, "afbrs": AFBRS, "runs": args.runs}
    for feed, kinds in results.items():
        row: dict[str, object] = {}
        for kind, runs in kinds.items():
            if not runs:
                continue
            seconds = statistics.median(r.seconds for r in runs)
            row[kind] = {
                "median_s": round(seconds, 3),
                "routes_per_s": round(args.prefixes / seconds),
                "runs_s": [round(r.seconds, 3) for r in runs],
            }
            rss = [r.rss_mb for r in runs if r.rss_mb is not None]
            if rss:
                row[kind]["rss_mb"] = round(statistics.median(rss), 1)  # type: ignore[index]
            exabgp_rss = [r.exabgp_rss_mb for r in runs if r.exabgp_rss_mb is not None]
            if exabgp_rss:
                row[kind]["exabgp_rss_mb"] = round(statistics.median(exabgp_rss), 1)  # type: ignore[index]
        if "bare" in row and "afbr" in row:
            bare_s = row["bare"]["median_s"]  # type: ignore[index]
            row["afbr_overhead_pct"] = round(100 * (row["afbr"]["median_s"] / bare_s - 1), 1)  # type: ignore[index]
        summary[feed] = row
    return summary


def print_table(summary: dict[str, object]) -> None:
    head = f"{summary['prefixes']} IPv4 prefixes from {summary['afbrs']} AFBRs"
    print(f"{head}, median of {summary['runs']} runs")
    print(
        f"{'feed':8} {'receiver':9} {'seconds':>8} {'routes/s':>9}"
        f" {'afbr RSS MB':>12} {'ExaBGP RSS MB':>14}"
    )
    for feed in ("packed", "single"):
        row = summary.get(feed)
        if not isinstance(row, dict):
            continue
        for kind in ("bare", "afbr"):
            if kind in row:
                r = row[kind]
                rss = f"{r['rss_mb']:.1f}" if "rss_mb" in r else "-"
                exa = f"{r['exabgp_rss_mb']:.1f}" if "exabgp_rss_mb" in r else "-"
                print(
                    f"{feed:8} {kind:9} {r['median_s']:8.2f} {r['routes_per_s']:9d}"
                    f" {rss:>12} {exa:>14}"
                )
        if "afbr_overhead_pct" in row:
            print(f"{feed:8} afbr adds {row['afbr_overhead_pct']:+.1f}% to bare ExaBGP's time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prefixes", type=int, default=100_000)
    parser.add_argument("--core", type=int, choices=(4, 6), default=6)
    parser.add_argument("--feed", choices=(*FEEDS, "both"), default="both")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--bare-only", action="store_true", help="skip afbr (baseline only)")
    parser.add_argument(
        "--dump-interval",
        type=float,
        default=3600.0,
        help="the plugin's --dump-interval (default: no RIB dumps during the feed)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/bgp_feed.py needs root (it runs in a network namespace)", file=sys.stderr)
        return 2
    # A SIGTERM (e.g. from `timeout`) unwinds like an exception: the lab removes its namespace.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    summary = measure(args)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_table(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
