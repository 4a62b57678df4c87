"""`afbr check-kernel [-c FILE]`: does this kernel have what the configured encapsulations need?"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from afbr.commands.kernel_probe import (
    ProbeError,
    ProbeResult,
    all_probes,
    needed_probes,
    run_probes,
)
from afbr.config import AfbrConfig, ConfigError, load_config

DESCRIPTION = """\
Tell whether this kernel has what afbr needs, by trying it: in a network namespace made for
the purpose (and deleted afterwards, even on failure) create and delete one object of each
kind the data plane uses -- gre / ip6gre, sit / ip6tnl (IP-in-IP), an L2TPv3 tunnel with an
Ethernet session, an xfrm interface, an ESP SA with each configured ESP proposal, an
nftables table -- and report each as ok or missing with the kernel's own error.  veth and
TUN are probed too, to show that probing itself works.

With -c FILE only what that config needs counts (its core family, encap.preference, IPsec
and its ESP proposals); without it, everything afbr can use.  Needs root (or CAP_NET_ADMIN
and CAP_SYS_ADMIN) for the namespace; the host's own network is not touched.
"""

EPILOG = """\
exit status: 0 everything needed is there; 1 something needed is missing, or probing is
impossible here; 2 the config file is invalid.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check-kernel",
        help="probe the kernel for the tunnels, ESP and xfrm interfaces afbr needs",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="FILE",
        help="count only what this config needs (default: everything afbr can use)",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="with -c, probe every kind anyway (only the needed ones decide the exit status)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config: AfbrConfig | None = None
    if args.config is not None:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(f"afbr: {exc}", file=sys.stderr)
            return 2
    needed = needed_probes(config)
    probes = [p for p in all_probes() if args.all or config is None or p.basic or p.name in needed]
    try:
        netns, results = run_probes(probes, needed)
    except ProbeError as exc:
        print(f"afbr: cannot probe the kernel: {exc}", file=sys.stderr)
        return 1
    missing = [r.name for r in results if r.needed and not r.ok]
    if args.json:
        print(json.dumps(_summary(args.config, netns, results, missing), indent=2))
    else:
        _print(args.config, netns, results, missing)
    return 1 if missing else 0


def _summary(
    config: Path | None, netns: str, results: list[ProbeResult], missing: list[str]
) -> dict[str, Any]:
    return {
        "kernel": os.uname().release,
        "config": str(config) if config is not None else None,
        "netns": netns,
        "ok": not missing,
        "missing": missing,
        "probes": [
            {
                "name": r.name,
                "what": r.what,
                "needed": r.needed,
                "basic": r.basic,
                "ok": r.ok,
                "error": r.error or None,
                "kernel_options": list(r.options),
            }
            for r in results
        ],
    }


def _print(config: Path | None, netns: str, results: list[ProbeResult], missing: list[str]) -> None:
    scope = f"what {config} needs" if config is not None else "everything afbr can use"
    print(f"kernel {os.uname().release}: {scope}, probed in network namespace {netns}")
    width = max(len(r.name) for r in results)
    for r in results:
        state = "ok" if r.ok else "missing"
        tag = "needed" if r.needed else ("basic" if r.basic else "not needed")
        line = f"  {r.name:<{width}}  {state:<7}  {tag:<10}  {r.what}"
        if not r.ok:
            line += f": {r.error} (kernel options: {' '.join(r.options)})"
        print(line)
    if missing:
        print(f"missing: {', '.join(missing)}")
    else:
        print("everything needed is there")
