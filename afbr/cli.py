"""The `afbr` command line: a thin dispatcher over the subcommand modules in afbr.commands."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from afbr import __version__

# Each module here defines `register(subparsers)`, which adds its subcommand and sets
# `func` on the parser to a callable taking the parsed namespace and returning an exit status.
COMMAND_MODULES: tuple[str, ...] = (
    "afbr.commands.config",
    "afbr.commands.decode",
    "afbr.commands.show",
    "afbr.commands.run",
    "afbr.commands.lab",
    "afbr.commands.check_kernel",
)

DESCRIPTION = """\
afbr turns a Linux box into a softwire-mesh Address Family Border Router (RFC 5565):
it announces the local client prefixes over BGP with a Tunnel Encapsulation attribute
(RFC 9012), builds GRE, IP-in-IP or L2TPv3 softwires to the other AFBRs it learns of,
and protects them with IKEv2/IPsec as RFC 5619 requires.
"""

EPILOG = """\
exit status:
  0  success
  1  a runtime failure (the message says which)
  2  bad usage or malformed input (the message names the offending field)

See `afbr COMMAND --help` for each command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="afbr",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"afbr {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


@dataclass(frozen=True)
class Command:
    """One (sub)command of the parser tree: `path` is () for afbr itself, ("config",
    "check") for `afbr config check`; `help` is its one-line summary in its parent."""

    path: tuple[str, ...]
    parser: argparse.ArgumentParser
    help: str


def iter_commands(parser: argparse.ArgumentParser | None = None) -> Iterator[Command]:
    """Every command, parents before their subcommands, in the order they were added (what
    the man page and the shell completion are generated from: scripts/gen_*.py)."""
    root = parser or build_parser()
    todo = [Command((), root, "")]
    while todo:
        command = todo.pop(0)
        yield command
        children = []
        for action in command.parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help or "" for a in action._choices_actions}
                children += [
                    Command((*command.path, name), sub, helps.get(name, ""))
                    for name, sub in action.choices.items()
                ]
        todo[:0] = children


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    return func(args)
