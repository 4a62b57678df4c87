"""Benchmark: 100,000 IPv4 prefixes from the wire into the kernel's forwarding table.

    lab/uml/run.sh --timeout 3000 -- .venv/bin/python bench/wire_to_forwarding.py [--json]

Issue 6's benchmark.  The feed is bench/bgp_feed.py's packed one: 100,000 IPv4 /25s in
10.0.0.0/8 (data in UPDATEs only, never sent traffic) from 100 remote AFBRs, up to 500 per
UPDATE, each AFBR with its own IPv6 next hop (RFC 8950) and Tunnel Encapsulation attribute
(GRE with a key + IP-in-IP).  bench/bgp_speaker.py replays it, pre-encoded, over a TCP-MD5
session on the loopback of a fresh namespace.  Receivers, alternating, N runs:

- exabgp: bare ExaBGP turning the feed into JSON (bench/bgp_feed.py's `run_bare`): the floor;
- afbr:   the daemon, `afbr run -c FILE`: ExaBGP + softwire RIB + encap derive + kernel
          reconcile; done when every prefix is routed into its softwire (route protocol 175);
- frr:    FRR bgpd + zebra into the kernel FIB (plain next hops; route protocol 186);
- bird:   BIRD 2 into the kernel FIB (plain next hops; route protocol 12).

Time: the speaker's first byte -> the last prefix counted in JSON (exabgp) or the last route
notification before a FIB dump that holds every prefix (bench/fib_watch.py).  FRR and BIRD
reach the next hops 2001:db8:aa::N through a veth link (core0) with 2001:db8:aa::ffff/48.

afbr needs GRE/ip6gre, which only afbr's User-Mode-Linux kernel has, so the whole run goes
there and every receiver meets the same (slower) kernel; the ratio afbr/exabgp is the figure.
Needs root, ExaBGP (the venv), FRR (/usr/lib/frr) and BIRD 2 (`bird`).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import pstats
import pwd
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml
from bgp_feed import (
    ADDR,
    AFBRS,
    ASN,
    BENCH,
    IPV4_GRE,
    KEY,
    _exabgp_neighbor,
    _wait_file,
    _wait_line,
    afbr_config,
    build_feed,
    remote_next_hop,
)
from bgp_speaker import update_messages
from fib_watch import RTPROT_BGP, RTPROT_BIRD, FibWatch

from afbr.bgp.tunnel_encap import Tunnel, TunnelEncapAttribute, encode_tunnel_encap
from afbr.dataplane.rtnl_wire import RTPROT_AFBR
from afbr.lab.daemon_base import BgpNeighbor, write_private
from afbr.lab.exabgp_peer import ExaBgp
from afbr.lab.netns import Host, Lab
from afbr.lab.peers import Bird

CORE = 6  # IPv6 core: RFC 8950 next hops, ip6gre/ip6tnl softwires
PER_UPDATE = 500
RECEIVERS = ("exabgp", "afbr", "frr", "bird")
NEXT_HOP_NET = "2001:db8:aa::ffff/48"  # covers bench/bgp_feed.py's remote next hops
FRR = Path("/usr/lib/frr")
SETTLE_S = 2.0
FEED_BASE = int(
    ipaddress.IPv4Address("10.0.0.0")
)  # bench/bgp_feed.py's /25s  # let the kernel finish tearing down the previous run's namespace


class FibReceiver(Protocol):
    proto: int

    def start(self) -> None: ...

    def running(self) -> bool: ...

    def stop(self) -> None: ...

    def settle(self, timeout: float) -> None: ...

    def notes(self) -> dict[str, float]: ...


@dataclass
class AfbrRun:
    """`afbr run -c FILE` in `host`, optionally under cProfile."""

    host: Host
    workdir: Path
    profile: Path | None = None
    proto: int = RTPROT_AFBR
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        keys = self.workdir / "bgp-keys.yaml"
        write_private(keys, yaml.safe_dump({"rr": KEY}))
        config = afbr_config(CORE)
        config["bgp"]["keys_file"] = str(keys)  # type: ignore[index]
        config["state_dir"] = str(self.workdir / "state")
        config["control_socket"] = str(self.workdir / "afbr.sock")
        path = self.workdir / "afbr.yaml"
        path.write_text(yaml.safe_dump(config))
        python = [sys.executable]
        if self.profile is not None:
            python += ["-m", "cProfile", "-o", str(self.profile)]
        self.proc = self.host.popen(
            *python, "-m", "afbr", "run", "-c", str(path), log=self.workdir / "afbr.log"
        )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            self.host.stop(self.proc)  # SIGTERM: the daemon stops, cProfile writes its file

    def settle(self, timeout: float) -> None:
        """Wait for the reconcile that put the routes in to finish (the nftables filter comes
        after the routes), so its log line with the step timings is written before the stop."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running():
            if "softwires reconciled" in (self.workdir / "afbr.log").read_text(errors="replace"):
                return
            time.sleep(0.2)

    def notes(self) -> dict[str, float]:
        """The daemon's reconciles during the run and their steps, from its log lines."""
        log = (self.workdir / "afbr.log").read_text(errors="replace")
        done = re.findall(r"softwires reconciled: .* in ([0-9.]+)s \(([^)]*)\)", log)
        notes: dict[str, float] = {"reconciles": len(done)}
        notes["reconcile_s"] = round(sum(float(total) for total, _steps in done), 3)
        if done:  # the steps of the first one: the full table
            words = done[0][1].split()
            steps = zip(words[::2], words[1::2], strict=True)
            notes.update({f"first_{step}_s": round(float(v), 3) for step, v in steps})
        return notes


@dataclass
class FrrRun:
    """FRR's zebra + bgpd in `host`, each in the foreground with its files in `workdir`."""

    host: Host
    workdir: Path
    proto: int = RTPROT_BGP
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def bgpd_config(self) -> str:
        own, speaker = ADDR[CORE]
        return f"""hostname w2f
router bgp {ASN}
 bgp router-id 192.0.2.1
 no bgp default ipv4-unicast
 neighbor {speaker} remote-as {ASN}
 neighbor {speaker} update-source {own}
 neighbor {speaker} password {KEY}
 neighbor {speaker} capability extended-nexthop
 neighbor {speaker} timers connect 1
 address-family ipv4 unicast
  neighbor {speaker} activate
 exit-address-family
"""

    def _daemon(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        conf = self.workdir / f"{name}.conf"
        return self.host.popen(
            str(FRR / name),
            *("-f", str(conf), "-i", str(self.workdir / f"{name}.pid")),
            *("-z", str(self.workdir / "zserv.api"), "--vty_socket", str(self.workdir)),
            *("-u", "frr", "-g", "frr", "-P", "0", "--log", "stdout", *extra),
            log=self.workdir / f"{name}.log",
        )

    def start(self) -> None:
        # FRR drops to its own user (root is not in its vty group): its folder is its own.
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.parent.chmod(0o711)
        user = pwd.getpwnam("frr")
        write_private(self.workdir / "zebra.conf", "hostname w2f\n")
        write_private(self.workdir / "bgpd.conf", self.bgpd_config())  # holds the MD5 key
        for path in (self.workdir, self.workdir / "zebra.conf", self.workdir / "bgpd.conf"):
            os.chown(path, user.pw_uid, user.pw_gid)
        self.procs.append(self._daemon("zebra"))
        deadline = time.monotonic() + 30
        while not (self.workdir / "zserv.api").exists():
            if time.monotonic() > deadline or not self.running():
                raise RuntimeError(f"zebra did not start: see {self.workdir}/zebra.log")
            time.sleep(0.05)
        self.procs.append(self._daemon("bgpd", "-l", ADDR[CORE][0]))

    def running(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            self.host.stop(proc)

    def settle(self, timeout: float) -> None:
        pass  # done when its routes are in

    def notes(self) -> dict[str, float]:
        return {}


@dataclass
class BirdRun:
    """BIRD 2 (afbr.lab.peers.Bird) exporting its BGP routes to the kernel."""

    host: Host
    workdir: Path
    proto: int = RTPROT_BIRD
    bird: Bird | None = None

    def start(self) -> None:
        own, speaker = ADDR[CORE]
        kernel = "protocol kernel { ipv4 { export where source = RTS_BGP; }; }"
        self.bird = Bird(
            self.host,
            self.workdir,
            asn=ASN,
            router_id="192.0.2.1",
            local_address=own,
            neighbors=[BgpNeighbor(speaker, ASN, md5_password=KEY, name="feed")],
            extra_config=kernel,
            export="none",
        ).start()

    def running(self) -> bool:
        return self.bird is not None and self.bird.running()

    def stop(self) -> None:
        if self.bird is not None:
            self.bird.stop()

    def settle(self, timeout: float) -> None:
        pass  # done when its routes are in

    def notes(self) -> dict[str, float]:
        return {}


def single_tlv_feed(prefixes: int) -> bytes:
    """The feed for FRR: the same UPDATEs, but each Tunnel Encapsulation attribute holds only
    its GRE TLV.  FRR 8.4's parser takes an attribute for one Tunnel TLV (bgp_attr_encap:
    "tlv_length(10) != length(18)", then "sub-tlv length 7 exceeds remaining length 6") and
    refuses the UPDATE, although RFC 9012 §2 allows several TLVs in one attribute."""
    base = bytearray()
    share = -(-prefixes // AFBRS)
    nets = [ipaddress.IPv4Network((FEED_BASE + (i << 7), 25)) for i in range(prefixes)]
    for index in range(AFBRS):
        gre = Tunnel.gre(key=1000 + index, protocol_type=IPV4_GRE)
        encap = encode_tunnel_encap(TunnelEncapAttribute((gre,)))
        mine = nets[index * share : (index + 1) * share]
        for msg in update_messages(mine, remote_next_hop(CORE, index), encap, PER_UPDATE):
            base += msg
    return bytes(base)


@dataclass
class RunResult:
    seconds: float
    notes: dict[str, float] = field(default_factory=dict)


def new_hosts(lab: Lab) -> tuple[Host, Host]:
    """The receiver's and the speaker's namespaces, joined by a veth link (eth0).

    Two namespaces, not one: afbr filters BGP from anyone but its configured neighbors
    (RFC 5565 §13.3), and on a shared loopback its own SYNs would look like a stranger's.
    The receiver reaches the next hops' network through a second veth link (core0).
    """
    rx, tx = lab.host("rx"), lab.host("tx")
    lab.link(rx, "eth0", tx, "eth0")
    own, speaker = ADDR[CORE]
    rx.ip_batch(
        [
            f"addr add {own}/64 dev eth0 nodad",
            "link add core0 type veth peer name core1",  # both ends here: an up link
            f"addr add {NEXT_HOP_NET} dev core0 nodad",
            "link set core1 up",
            "link set core0 up",
        ]
    )
    tx.ip_batch([f"addr add {speaker}/64 dev eth0 nodad"])
    return rx, tx


def start_speaker(tx: Host, feed: Path, timeout: float) -> tuple[subprocess.Popen[bytes], Sent]:
    """bench/bgp_speaker.py in `tx`, and a thread that catches its `sent T0 T1 N` line."""
    own, address = ADDR[CORE]
    speaker = tx.popen(
        sys.executable,
        str(BENCH / "bgp_speaker.py"),
        *("--listen", address, "--peer", own, "--feed", str(feed), "--md5", KEY),
        *("--core", str(CORE), "--eor-ipv6"),  # afbr reconciles once every family is in
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    if speaker.stdout is None or speaker.stdout.readline().strip() != b"listening":
        raise RuntimeError("the speaker did not start")
    sent = Sent()

    def read_sent() -> None:
        with contextlib.suppress(RuntimeError):  # reported as "never said"
            sent.line = _wait_line(speaker, "sent", timeout)

    sent.thread = threading.Thread(target=read_sent, daemon=True)
    sent.thread.start()
    return speaker, sent


@dataclass
class Sent:
    line: str = ""
    thread: threading.Thread | None = None

    def first_byte(self, timeout: float) -> float:
        if self.thread is not None:
            self.thread.join(timeout)
        if not self.line:
            raise RuntimeError("the speaker never said 'sent'")
        return float(self.line.split()[1])


def run_fib(
    rx: Host, tx: Host, receiver: FibReceiver, feed: Path, *, prefixes: int, timeout: float
) -> RunResult:
    """Speaker's first byte -> the last of `prefixes` routes of the receiver's protocol."""
    with FibWatch(rx.name, receiver.proto) as watch:
        speaker, sent = start_speaker(tx, feed, timeout)
        try:
            receiver.start()
            end = watch.wait_all(prefixes, alive=receiver.running, timeout=timeout)
            start = sent.first_byte(timeout)
            receiver.settle(timeout)
        finally:
            receiver.stop()
            tx.stop(speaker)
            rx.run("ip", "-4", "route", "flush", "proto", str(receiver.proto), check=False)
    # After the stop: afbr logs a reconcile once it is done, after its last route went in.
    notes = {**receiver.notes(), "fib_dumps": watch.dumps, "overrun": int(watch.overrun)}
    notes |= {"first_byte_at": round(start, 3), "last_route_at": round(end, 3)}  # epoch seconds
    return RunResult(end - start, notes)


def run_bare(rx: Host, tx: Host, workdir: Path, feed: Path, prefixes: int) -> RunResult:
    """Bare ExaBGP (bench/bgp_feed.py's counter): first byte -> last prefix in its JSON."""
    done = workdir / "done"
    counter = f"{sys.executable} {BENCH / 'exabgp_counter.py'} {prefixes} {done}"
    config = _exabgp_neighbor(CORE, "counter").replace("{run}", counter)
    speaker, sent = start_speaker(tx, feed, 600)
    exabgp = ExaBgp(rx, workdir / "exabgp", config=config, cli=False).start()
    try:
        end = float(_wait_file(done, exabgp.running, 600).split()[0])
        return RunResult(end - sent.first_byte(60))
    finally:
        exabgp.stop()
        tx.stop(speaker)


def run_one(kind: str, root: Path, run: int, feed: Path, args: argparse.Namespace) -> RunResult:
    workdir = root / f"{kind}-{run}"
    with Lab("w2f") as lab:
        rx, tx = new_hosts(lab)
        if kind == "exabgp":
            return run_bare(rx, tx, workdir, feed, args.prefixes)
        receiver: FibReceiver
        if kind == "afbr":
            profile = root / f"afbr-{run}.prof" if args.profile else None
            receiver = AfbrRun(rx, workdir, profile)
        elif kind == "frr":
            receiver = FrrRun(rx, workdir)
            feed = root / "feed-frr.bin"
        else:
            receiver = BirdRun(rx, workdir)
        return run_fib(rx, tx, receiver, feed, prefixes=args.prefixes, timeout=args.timeout)


def show_logs(workdir: Path, lines: int = 20) -> None:
    """The tail of every log of a failed run, on stderr (the guest's files die with it)."""
    for log in sorted(workdir.rglob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"# --- {log}", *tail, sep="\n", file=sys.stderr)


def show_profile(path: Path, top: int) -> None:
    """The afbr daemon's costliest functions (own time, then cumulative), on stderr."""
    if not path.exists():
        print(f"# no profile at {path} (the daemon did not stop cleanly?)", file=sys.stderr)
        return
    for order in ("tottime", "cumulative"):
        stats = pstats.Stats(str(path), stream=sys.stderr)
        stats.strip_dirs().sort_stats(order).print_stats(top)


def _work_root(parent: Path | None) -> contextlib.AbstractContextManager[str]:
    if os.environ.get("AFBR_BENCH_KEEP") == "1":
        kept = tempfile.mkdtemp(prefix="afbr-w2f-", dir=parent)
        print(f"# the runs' files stay in {kept}", file=sys.stderr)
        return contextlib.nullcontext(kept)
    return tempfile.TemporaryDirectory(prefix="afbr-w2f-", dir=parent)


def measure(args: argparse.Namespace) -> dict[str, object]:
    results: dict[str, list[RunResult]] = {kind: [] for kind in args.receivers}
    load = [Path("/proc/loadavg").read_text().split()[:3]]
    failures: list[str] = []
    with _work_root(args.workdir) as tmp:
        root = Path(tmp)
        feed = root / "feed.bin"
        feed.write_bytes(build_feed(args.prefixes, PER_UPDATE, CORE))
        (root / "feed-frr.bin").write_bytes(single_tlv_feed(args.prefixes))
        for run in range(args.runs):
            shift = run % len(args.receivers)  # alternate who goes first
            for kind in args.receivers[shift:] + args.receivers[:shift]:
                time.sleep(SETTLE_S)
                try:
                    result = run_one(kind, root, run, feed, args)
                except (RuntimeError, OSError) as exc:  # one failed run; the others count
                    show_logs(root / f"{kind}-{run}")
                    print(f"# run {run + 1} {kind}: FAILED: {exc}", file=sys.stderr)
                    failures.append(f"run {run + 1} {kind}: {exc}")
                    continue
                if kind == "afbr" and args.profile:
                    show_profile(root / f"afbr-{run}.prof", args.profile)
                results[kind].append(result)
                extra = " ".join(f"{k}={v}" for k, v in result.notes.items())
                print(f"# run {run + 1} {kind}: {result.seconds:.2f} s {extra}", file=sys.stderr)
    load.append(Path("/proc/loadavg").read_text().split()[:3])
    summary = summarize(results, args, load)
    summary["failures"] = failures
    return summary


def summarize(
    results: dict[str, list[RunResult]], args: argparse.Namespace, load: list[list[str]]
) -> dict[str, object]:
    summary: dict[str, object] = {
        "prefixes": args.prefixes,
        "afbrs": 100,
        "per_update": PER_UPDATE,
        "runs": args.runs,
        "kernel": os.uname().release,
        "loadavg_start_end": load,
    }
    medians: dict[str, float] = {}
    for kind, runs in results.items():
        if not runs:
            continue
        medians[kind] = statistics.median(r.seconds for r in runs)
        summary[kind] = {
            "median_s": round(medians[kind], 3),
            "routes_per_s": round(args.prefixes / medians[kind]),
            "runs_s": [round(r.seconds, 3) for r in runs],
            "notes": [r.notes for r in runs],
        }
    if "exabgp" in medians:
        summary["ratio_to_exabgp"] = {
            kind: round(seconds / medians["exabgp"], 2)
            for kind, seconds in medians.items()
            if kind != "exabgp"
        }
    return summary


def print_table(summary: dict[str, object]) -> None:
    print(
        f"{summary['prefixes']} IPv4 prefixes from {summary['afbrs']} AFBRs, "
        f"{summary['per_update']} per UPDATE, median of {summary['runs']} runs "
        f"(kernel {summary['kernel']})"
    )
    ratios = summary.get("ratio_to_exabgp", {})
    assert isinstance(ratios, dict)
    print(f"{'receiver':9} {'seconds':>8} {'routes/s':>9} {'x exabgp':>9}  runs")
    for kind in RECEIVERS:
        row = summary.get(kind)
        if not isinstance(row, dict):
            continue
        ratio = f"{ratios[kind]:.2f}" if kind in ratios else "1.00" if kind == "exabgp" else "-"
        runs = " ".join(f"{s:.2f}" for s in row["runs_s"])
        print(f"{kind:9} {row['median_s']:8.2f} {row['routes_per_s']:9d} {ratio:>9}  {runs}")
    if "afbr" in ratios:
        verdict = "meets" if ratios["afbr"] <= 1.2 else "misses"
        print(f"afbr/exabgp = {ratios['afbr']:.2f} ({verdict} the <= 1.2x target)")
    print(f"load average (guest) start/end: {summary['loadavg_start_end']}")
    for failure in summary.get("failures", []):  # type: ignore[attr-defined]
        print(f"FAILED {failure}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prefixes", type=int, default=100_000)
    parser.add_argument(
        "--receivers",
        type=lambda text: [k for k in text.split(",") if k],
        default=list(RECEIVERS),
        help="comma-separated subset of " + ",".join(RECEIVERS),
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="per run, seconds")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the runs' files go (default: $TMPDIR); it is emptied after the run, "
        "set AFBR_BENCH_KEEP=1 to keep it",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="run the afbr daemon under cProfile; print its N costliest functions per run",
    )
    args = parser.parse_args()
    unknown = set(args.receivers) - set(RECEIVERS)
    if unknown:
        parser.error(f"unknown receivers: {', '.join(sorted(unknown))}")
    if os.geteuid() != 0:
        print("bench/wire_to_forwarding.py needs root (network namespaces)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    summary = measure(args)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_table(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
