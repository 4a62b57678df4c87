"""`afbr run -c FILE`: run the daemon in the foreground (systemd's Type=exec)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from afbr.config import ConfigError, load_config
from afbr.logs import setup_logging

DESCRIPTION = """\
Run afbr in the foreground: render ExaBGP's configuration from FILE, start and supervise
ExaBGP (restarting it with backoff if it dies, without touching kernel state), keep the
softwire RIB, build the tunnels, routes and filters in the kernel, run IKEv2 where the
config asks for IPsec, and serve the control socket that `afbr status` and friends use.

signals:
  SIGTERM, SIGINT  stop the control plane; forwarding stays in place and the next start
                   adopts the kernel objects that still match
  SIGHUP           re-read FILE and apply only the difference; a broken file is refused
                   and the running config kept

A second afbr on the same box refuses to start.
"""

EPILOG = """\
exit status: 0 stopped by a signal; 1 could not start (the message says why);
2 the config file is invalid (every problem is listed).
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the daemon",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-c", "--config", required=True, type=Path, metavar="FILE")
    parser.add_argument(
        "--exabgp",
        metavar="PATH",
        help="the exabgp program (default: next to this Python, else on PATH)",
    )
    parser.add_argument(
        "--no-dataplane",
        action="store_true",
        help="keep the RIB but touch nothing in the kernel (testing, or role: sidecar)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from afbr.daemon.instance_lock import AlreadyRunning  # noqa: PLC0415
    from afbr.daemon.runtime import AfbrDaemon  # noqa: PLC0415

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"afbr: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_format, config.log_level)
    factory = None
    if not args.no_dataplane and config.role == "afbr":
        from afbr.daemon.softwire_sync import KernelSoftwireSync  # noqa: PLC0415

        factory = KernelSoftwireSync
    try:
        daemon = AfbrDaemon(args.config, softwires_factory=factory, exabgp=args.exabgp)
        return asyncio.run(daemon.run())
    except AlreadyRunning as exc:
        print(f"afbr: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"afbr: cannot start: {exc}", file=sys.stderr)
        return 1
