"""`afbr run -c FILE`: run the daemon in the foreground (systemd's Type=exec)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from afbr.bgp.keyfile import KeyFileError
from afbr.bgp.session_config import SessionConfigError
from afbr.commands.startup_check import check_startup
from afbr.config import ConfigError
from afbr.logs import setup_logging

log = logging.getLogger("afbr")

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

Before anything starts, FILE and every file it names are checked as `afbr config check`
does (keys files, private key, ExaBGP's rendered config); any problem is listed and afbr
exits.  A missing exabgp program is only warned about: afbr keeps trying to start it and
`afbr status` shows why it fails.

A second afbr on the same box refuses to start.
"""

EPILOG = """\
exit status: 0 stopped by a signal; 1 could not start (the message says why);
2 the config file, or a file it names, is invalid (every problem is listed).
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the daemon",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-c", "--config", required=True, type=Path, metavar="FILE", help="the YAML config file"
    )
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
        checked = check_startup(
            args.config,
            exabgp=args.exabgp,
            need_exabgp=False,
            ipsec_agent=not args.no_dataplane,
        )
    except ConfigError as exc:
        print(f"afbr: {exc}", file=sys.stderr)
        return 2
    config = checked.config
    setup_logging(config.log_format, config.log_level)
    if not checked.exabgp_found:
        log.warning("exabgp not found at %s: afbr keeps trying to start it", checked.exabgp)
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
    except (ConfigError, KeyFileError, SessionConfigError) as exc:
        # A file changed between the check and its use: still a message, not a traceback.
        print(f"afbr: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"afbr: cannot start: {exc}", file=sys.stderr)
        return 1
