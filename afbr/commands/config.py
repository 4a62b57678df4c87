"""`afbr config check FILE`: validate a config file and say what is wrong with it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from afbr.config import ConfigError, load_config

HELP = """\
Read an afbr config file, check every key against the schema and the rules of
RFC 5565 / RFC 5619 that a file can break (e.g. a BGP neighbor without a TCP-MD5 key,
ESP proposals without NULL encryption), and report each problem as
KEY: VALUE: WHY.  Nothing is started and nothing in the kernel is touched.
"""

EPILOG = """\
exit status: 0 the file is valid; 2 it is not (every problem is listed).
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "config",
        help="validate a config file",
        description="Work with afbr config files.",
    )
    sub = parser.add_subparsers(title="config commands", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check",
        help="validate a config file",
        description=HELP,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("file", metavar="FILE", help="the YAML config file")
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        if args.json:
            problems = [
                {"key": p.path, "value": _jsonable(p.value) if p.has_value else None, "why": p.why}
                for p in exc.problems
            ]
            print(json.dumps({"file": args.file, "valid": False, "problems": problems}, indent=2))
        else:
            print(f"afbr: {exc}", file=sys.stderr)
        return 2
    summary = {
        "file": args.file,
        "valid": True,
        "role": config.role,
        "core": f"IPv{config.core.family} {config.core.address}",
        "client_prefixes": [str(p) for p in config.client_prefixes],
        "neighbors": [str(n.address) for n in config.bgp.neighbors],
        "ipsec": config.ipsec.enabled,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{args.file}: valid ({config.role}, IPv{config.client_family} islands over an "
            f"IPv{config.core.family} core, {len(config.client_prefixes)} client prefix(es), "
            f"{len(config.bgp.neighbors)} neighbor(s), ipsec "
            f"{'on' if config.ipsec.enabled else 'off'})"
        )
    return 0


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    return str(value)
