"""Rows of dicts as aligned text columns, the way every human view of afbr prints them
(`afbr status|tunnels|routes|sas`, the demo's report): no Python reprs, yes/no for booleans,
`-` for nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def render_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows of dicts as aligned columns, headed by every key in the order first seen (a key
    only some rows have is `-` in the others)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[cell(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    out = ["  ".join(col.upper().ljust(w) for col, w in zip(columns, widths, strict=True))]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(line.rstrip() for line in out)


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
