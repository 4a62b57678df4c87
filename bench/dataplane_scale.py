"""Dataplane at scale: 1,000 softwires and 100,000 routes, afbr's reconcile against ip -batch.

Runs in the current network namespace (inside UML: the guest's root namespace, which is
never deleted; deleting a namespace holding this much stalls UML for minutes):

    lab/uml/run.sh -- .venv/bin/python bench/dataplane_scale.py [--json] [--runs N]

Per run, both ways apply the same operations, alternating, each from an empty state:
- build: 1,000 ip6gre tunnels (IPv6 core, GRE keys) and 100,000 IPv6 client routes (/64s in
  fd00::/8; never carry traffic), 100 per tunnel;
- churn: 10% of both: 100 tunnels replaced by 100 new ones, with their 10,000 routes;
- afbr only: a no-change reconcile of that state (read it back, diff, nothing to do), and the
  same from a fresh dataplane object (a restarted daemon adopting the state).
`ip -batch` gets its commands in chunks of 10,000 lines (one process dies at ~64k commands in
UML, see reference/README.md).  Prints medians and afbr/ip ratios; --json for machines.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from afbr.dataplane.softwires import SoftwireDataplane
from afbr.encap.derive import derive_desired
from afbr.encap.model import (
    DesiredState,
    EncapKind,
    EncapOffer,
    LocalEncapPolicy,
    RemotePath,
)

LOCAL = ipaddress.IPv6Address("2001:db8:ffff::1")
POLICY = LocalEncapPolicy(preference=(EncapKind.GRE,), local_v6=LOCAL, gre_key=7)
CHUNK = 10_000


def endpoint(i: int) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(int(ipaddress.IPv6Address("2001:db8:fffe::")) + i + 1)


def paths_for(tunnels: range, per_tunnel: int) -> list[RemotePath]:
    base = int(ipaddress.IPv6Address("fd00:a::"))
    paths = []
    for t in tunnels:
        offers = (EncapOffer(EncapKind.GRE, gre_key=1000 + t),)
        for r in range(per_tunnel):
            prefix = ipaddress.IPv6Network(((base + ((t * per_tunnel + r) << 64)), 64))
            paths.append(RemotePath(prefix, endpoint(t), offers))
    return paths


def ip_batch_lines(desired: DesiredState, *, delete: Sequence[str] = ()) -> list[str]:
    """The same operations as afbr's reconcile, as `ip` commands."""
    lines = [f"link del {name}" for name in delete]
    for t in desired.tunnels:
        lines.append(
            f"link add {t.name} mtu {t.mtu} type ip6gre local {t.local} remote {t.remote} "
            f"ikey {t.local_gre_key} okey {t.offer.gre_key} hoplimit 64 encaplimit none"
        )
        lines.append(f"link set {t.name} up")
    lines += [f"route add {r.prefix} dev {r.tunnel} proto 175" for r in desired.routes]
    return lines


def ip_batch(lines: list[str]) -> None:
    for start in range(0, len(lines), CHUNK):
        chunk = "\n".join(lines[start : start + CHUNK]) + "\n"
        subprocess.run(["ip", "-batch", "-"], input=chunk, text=True, check=True)


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def only_new(desired: DesiredState, old: DesiredState) -> DesiredState:
    """The tunnels and routes of `desired` that `old` lacks (what churn adds)."""
    names = {t.name for t in old.tunnels}
    return DesiredState(
        tunnels=tuple(t for t in desired.tunnels if t.name not in names),
        routes=tuple(r for r in desired.routes if r.tunnel not in names),
    )


def one_run(full: DesiredState, churned: DesiredState, *, ip_first: bool) -> dict[str, float]:
    result: dict[str, float] = {}
    gone = sorted({t.name for t in full.tunnels} - {t.name for t in churned.tunnels})
    empty = DesiredState()

    def afbr() -> None:
        with SoftwireDataplane(filtering=False) as dataplane:
            report = dataplane.reconcile(full)
            assert not report.errors, report.errors[:5]
            result["afbr_build"] = report.timings["total"]
            report = dataplane.reconcile(churned)
            assert not report.errors, report.errors[:5]
            result["afbr_churn"] = report.timings["total"]
            result["afbr_churn_links_reused"] = report.links_changed
            report = dataplane.reconcile(churned)
            assert not report.changed and not report.errors
            result["afbr_nochange"] = report.timings["total"]
            result.update(
                {f"afbr_nochange_{k}": v for k, v in report.timings.items() if k != "total"}
            )
        with SoftwireDataplane(filtering=False) as restarted:
            report = restarted.reconcile(churned)
            assert not report.changed and not report.errors
            result["afbr_nochange_restart"] = report.timings["total"]
            result["afbr_teardown"] = timed(lambda: restarted.reconcile(empty))

    def ip() -> None:
        result["ip_build"] = timed(lambda: ip_batch(ip_batch_lines(full)))
        added = only_new(churned, full)
        result["ip_churn"] = timed(lambda: ip_batch(ip_batch_lines(added, delete=gone)))
        result["ip_teardown"] = timed(
            lambda: ip_batch([f"link del {t.name}" for t in churned.tunnels])
        )

    for step in (ip, afbr) if ip_first else (afbr, ip):
        step()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tunnels", type=int, default=1000)
    parser.add_argument("--routes", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    per_tunnel = args.routes // args.tunnels
    churn = args.tunnels // 10
    start = time.perf_counter()
    full = derive_desired(paths_for(range(args.tunnels), per_tunnel), POLICY)
    churned = derive_desired(paths_for(range(churn, args.tunnels + churn), per_tunnel), POLICY)
    derive_s = (time.perf_counter() - start) / 2
    gc.freeze()  # the inputs are long-lived: keep the collector from re-scanning them
    runs = [one_run(full, churned, ip_first=i % 2 == 1) for i in range(args.runs)]
    medians = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    summary = {
        "tunnels": args.tunnels,
        "routes": per_tunnel * args.tunnels,
        "runs": args.runs,
        "derive_desired_s": round(derive_s, 3),
        "median_s": {k: round(v, 3) for k, v in sorted(medians.items())},
        "ratio_build": round(medians["afbr_build"] / medians["ip_build"], 3),
        "ratio_churn": round(medians["afbr_churn"] / medians["ip_churn"], 3),
        "all_runs": runs,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['tunnels']} tunnels, {summary['routes']} routes, {args.runs} runs")
        print(f"derive desired state (encap manager): {derive_s:.2f} s")
        for key, value in sorted(medians.items()):
            print(f"  {key:24s} {value:8.3f} s (median)")
        print(f"  build  afbr/ip-batch = {summary['ratio_build']:.3f} (target <= 0.25)")
        print(f"  churn  afbr/ip-batch = {summary['ratio_churn']:.3f} (target <= 0.25)")
        print(f"  no-change reconcile    {medians['afbr_nochange']:.3f} s (target < 1 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
