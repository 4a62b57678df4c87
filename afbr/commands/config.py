"""`afbr config check FILE`: validate a config file and say what is wrong with it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from afbr.commands.startup_check import check_startup
from afbr.config import ConfigError

HELP = """\
A dry run of `afbr run`'s start-up.  Read an afbr config file, check every key against the
schema and the rules of RFC 5565 / RFC 5619 that a file can break (e.g. a BGP neighbor
without a TCP-MD5 key, ESP proposals without NULL encryption, a YAML key or a neighbor given
twice), then everything the daemon reads at start-up:

  - the BGP and IKE keys files: present, a regular file and not a symbolic link, mode 0600
    or stricter, owned by this user or root, valid YAML, every md5_key named present, IKE
    pre-shared keys named by the remote AFBR's core address (or `mesh` with group_psk);
  - ipsec.private_key (auth: pubkey): the same file rules, an unencrypted PEM key of a type
    IKE signs with; its RFC 5566 authenticator (what BGP advertises) is printed;
  - ExaBGP's configuration as the daemon renders it, and the exabgp program itself.

Each problem is reported as KEY: VALUE: WHY (VALUE is the file when a file is at fault).
Nothing is started and nothing in the kernel is touched.
"""

EPILOG = """\
exit status: 0 the file is valid; 2 it is not (every problem is listed).
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "config",
        help="check a config file and the files it names (a dry run of start-up)",
        description="Work with afbr config files: `afbr config check FILE` checks FILE and\n"
        "every file it names as `afbr run` would at start-up, without starting anything.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(title="config commands", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check",
        help="check FILE, its keys files, private key and ExaBGP as `afbr run` would",
        description=HELP,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("file", metavar="FILE", help="the YAML config file")
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    check.add_argument(
        "--exabgp",
        metavar="PATH",
        help="the exabgp program `afbr run --exabgp` would use (default: next to this "
        "Python, else on PATH)",
    )
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    try:
        result = check_startup(args.file, exabgp=args.exabgp)
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
    config = result.config
    authenticator = result.authenticator.hex() if result.authenticator is not None else None
    summary = {
        "file": args.file,
        "valid": True,
        "role": config.role,
        "core": f"IPv{config.core.family} {config.core.address}",
        "client_prefixes": [str(p) for p in config.client_prefixes],
        "neighbors": [str(n.address) for n in config.bgp.neighbors],
        "ipsec": config.ipsec.enabled,
        "authenticator": authenticator,
        "exabgp": result.exabgp,
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
        print(f"exabgp: {result.exabgp}")
        if authenticator is not None:
            print(f"ipsec authenticator (RFC 5566, SHA-1 of the public key): {authenticator}")
    return 0


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    return str(value)
