"""`afbr status|neighbors|tunnels|routes|sas|audit`: read a running daemon's state over its
control socket."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from afbr.daemon.control_socket import ControlClientError, request
from afbr.text_table import cell, render_table

DEFAULT_SOCKET = Path("/run/afbr/afbr.sock")

COMMANDS: dict[str, tuple[str, str]] = {
    "status": (
        "neighbors, tunnels, SAs, route counts and drops at a glance",
        "The daemon's overall state: each BGP neighbor and its session state, how many\n"
        "softwires, routes and SAs are installed, and the drop counters of the filters\n"
        "(spoofed inner sources, tunnel packets from unknown endpoints) and of the IKE agent.",
    ),
    "neighbors": (
        "BGP neighbors: session state, prefixes, last error",
        "One line per configured BGP neighbor (or only ADDRESS): its ASN, whether the session\n"
        "is up as ExaBGP last reported it and for how many seconds (SECONDS: since the last\n"
        "change, - before the first), the client prefixes it has a path for in the RIB\n"
        "(RECEIVED) and those whose best path is its (ACCEPTED), TCP-MD5 on or off, the\n"
        "families its OPEN offered (with Graceful Restart), the reason ExaBGP gave when the\n"
        "session last went down (e.g. a NOTIFICATION), and the TCP-MD5 diagnosis if any.",
    ),
    "tunnels": (
        "the softwires to remote AFBRs",
        "One line per softwire: its interface, encapsulation, remote endpoint, ifindex,\n"
        "how many client prefixes are routed into it and whether IPsec protects it.",
    ),
    "routes": (
        "client prefixes learned over BGP and their softwires",
        "One line per remote client prefix: the best path's next hop (tunnel endpoint),\n"
        "the neighbor it came from and the softwire it is routed into.",
    ),
    "sas": (
        "IKE and CHILD SAs per remote AFBR",
        "One line per remote AFBR: the IKE SA state, the CHILD SA SPIs and algorithms,\n"
        "packet counters and when it was last rekeyed.",
    ),
    "mesh": (
        "the whole mesh as a route-reflector side-car sees it",
        "Every AFBR the side-car (role: sidecar) has heard of: its client prefixes, next\n"
        "hops, tunnel types and IPsec Tunnel Authenticator, the prefixes two AFBRs claim,\n"
        "and the audit findings (missing authenticator, wrong next-hop family, malformed\n"
        "Tunnel Encapsulation attributes).",
    ),
    "audit": (
        "check the RFC 5565 / RFC 5619 requirements against the running state",
        "Each requirement of RFC 5565 and RFC 5619 that applies to this AFBR, with pass or\n"
        "fail on the running config and state and why (e.g. a BGP session without TCP-MD5,\n"
        "a softwire without IPsec where policy asks for it).  Exit status 1 if any fails.",
    ),
}

EPILOG = """\
exit status: 0 success; 1 the daemon is not reachable or (audit) a check failed;
2 bad usage.  --json prints the daemon's reply as JSON for machines.
"""


def register(subparsers: Any) -> None:
    for name, (short, long) in COMMANDS.items():
        parser = subparsers.add_parser(
            name,
            help=short,
            description=long,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name == "neighbors":
            parser.add_argument("address", nargs="?", metavar="ADDRESS", help="only this neighbor")
        parser.add_argument("--json", action="store_true", help="print JSON for machines")
        parser.add_argument(
            "--socket",
            type=Path,
            default=DEFAULT_SOCKET,
            metavar="PATH",
            help=f"the daemon's control socket (default {DEFAULT_SOCKET})",
        )
        parser.set_defaults(func=run, command=name)


def run(args: argparse.Namespace) -> int:
    try:
        params = {"address": args.address} if getattr(args, "address", None) else {}
        result = request(args.socket, args.command, **params)
    except ControlClientError as exc:
        print(f"afbr: {args.command}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(render_text(args.command, result))
    if args.command == "audit" and isinstance(result, list):
        return 1 if any(row.get("status") == "fail" for row in result) else 0
    return 0


def render_text(command: str, result: object) -> str:
    if command == "status" and isinstance(result, Mapping):
        return _render_status(result)
    if command == "neighbors" and isinstance(result, list):
        return render_table([_neighbor_row(row) for row in result]) if result else "(no neighbors)"
    if isinstance(result, list):
        return render_table(result) if result else f"(no {command})"
    return json.dumps(result, indent=2, default=str)


def _render_status(status: Mapping[str, Any]) -> str:
    """One line per scalar, a table per list, a line or an indented block per mapping: words
    and numbers only (yes/no, comma-separated lists), never a Python repr."""
    lines = []
    for key, raw in status.items():
        is_neighbors = key == "neighbors" and isinstance(raw, list)
        value = [_neighbor_row(row) for row in raw] if is_neighbors else raw
        if isinstance(value, list):
            lines.append(f"{key}:")
            body = render_table(value) if value else "(none)"
            lines.extend("  " + line for line in body.splitlines())
        elif isinstance(value, Mapping) and any(
            isinstance(v, Mapping | list | tuple) for v in value.values()
        ):
            lines.append(f"{key}:")
            lines.extend(f"  {k}: {_text(v)}" for k, v in value.items())
        else:
            lines.append(f"{key}: {_text(value)}")
    return "\n".join(lines)


def _neighbor_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A neighbor's diagnosis goes into its state column, `down: TCP-MD5 mismatch ...?`,
    which comes last so a long one pushes no other column away."""
    shown = {k: v for k, v in row.items() if k not in ("state", "diagnosis")}
    state = row.get("state", "?")
    shown["state"] = f"{state}: {row['diagnosis']}" if row.get("diagnosis") else state
    return shown


def _text(value: object) -> str:
    """A value in a status line: mappings as `key value, ...`, lists comma-separated."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_text(v)}" for k, v in value.items()) or "(none)"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or "(none)"
    return cell(value)
