"""`afbr lab demo`: the demo mesh in network namespaces, with a summary of what works."""

from __future__ import annotations

import argparse
import sys
from typing import Any

DEMO_HELP = """\
Build the demo mesh in network namespaces on this machine and show it working:
three AFBR sites — two IPv4 islands over an IPv6 core, IPv6 islands over an IPv4 core
(site A runs an AFBR for each of its two families) — with GoBGP as route reflector,
TCP-MD5 on every BGP session and IPsec on every softwire.  It starts `afbr run` in each
AFBR namespace, waits for the mesh (sessions, routes, softwires), pings between the client
hosts of every pair of islands, prints each AFBR's state and the traffic results, and
deletes everything it made, also on failure or Ctrl-C.

Needs root and a kernel with GRE, IP-in-IP, ip6tnl, ESP and xfrm interfaces (`make demo`
runs it inside afbr's User-Mode-Linux kernel when this one lacks them), and gobgpd.
The same topology for containerlab is in lab/demo/.
"""

EPILOG = """\
exit status: 0 the mesh came up and every direction passed traffic without loss;
1 it did not (the message says where), or --check-kernel found options missing.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "lab", help="lab topologies (the demo mesh)", description="afbr's lab topologies."
    )
    sub = parser.add_subparsers(title="lab commands", metavar="ACTION", required=True)
    demo = sub.add_parser(
        "demo",
        help="run the demo mesh in network namespaces",
        description=DEMO_HELP,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the mesh running after the summary until Ctrl-C"
    )
    demo.add_argument("--json", action="store_true", help="print the result as JSON")
    demo.add_argument(
        "--timeout",
        type=float,
        default=150.0,
        metavar="SECONDS",
        help="how long to wait for the mesh to converge (default 150)",
    )
    demo.add_argument(
        "--check-kernel",
        action="store_true",
        help="only say whether this kernel has what the demo needs (exit 1 if not)",
    )
    demo.set_defaults(func=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    from afbr.lab.demo_main import missing_kernel_features, run_demo  # noqa: PLC0415

    missing = missing_kernel_features()
    if args.check_kernel:
        if missing:
            print("the kernel lacks: " + ", ".join(missing))
            return 1
        print("the kernel has everything the demo needs")
        return 0
    if missing:
        print(
            "afbr: lab demo: this kernel lacks " + ", ".join(missing) + " (make demo runs the "
            "demo inside afbr's User-Mode-Linux kernel: lab/uml/run.sh -- afbr lab demo)",
            file=sys.stderr,
        )
        return 1
    return run_demo(keep=args.keep, as_json=args.json, timeout=args.timeout)
