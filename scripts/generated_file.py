"""What the generators of contrib/ files share: write the file, or --check that it is current."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def generator_main(
    description: str, target: Path, render: Callable[[], str], argv: list[str] | None
) -> int:
    """`-o FILE` (default `target`, - for stdout) gets render()'s text; `--check` exits 1 if
    the file differs from it."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("-o", "--output", default=str(target), help="file to write, - for stdout")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = Path(args.output).read_text() if Path(args.output).exists() else ""
        if current != text:
            script = Path(sys.argv[0]).name
            print(f"{args.output} is out of date: run scripts/{script}", file=sys.stderr)
            return 1
        return 0
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    return 0
