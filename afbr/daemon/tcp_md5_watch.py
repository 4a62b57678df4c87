"""Why a BGP neighbor stays down: the kernel's TCP-MD5 drop counters (RFC 2385).

A segment whose MD5 signature is wrong or missing is dropped by the kernel without an answer,
so a session with a mismatching key just never comes up, and ExaBGP cannot tell why.  The
kernel counts those drops per network namespace in the TcpExt line of /proc/net/netstat:

- TCPMD5Failure: a signature that does not verify (the keys differ);
- TCPMD5NotFound: no signature where a key is set for the sender (the peer has no key);
- TCPMD5Unexpected: a signature where no key is set (we have no key for the peer).

The counters do not name the sender.  When they rise while neighbors stay down (down at two
readings in a row), those neighbors are the suspects: one warning per reading that saw a rise,
and a diagnosis on each suspect in `afbr status` until it comes up.

`parse_netstat`, `md5_counters` and `TcpMd5Watch` are pure; `read_md5_counters` is the
adapter that reads the file (the daemon runs in its own network namespace, so
/proc/self/net is that namespace's).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("afbr.activity")

NETSTAT = Path("/proc/self/net/netstat")
CHECK_INTERVAL = 5.0  # seconds between readings
# The TcpExt counters, in the order a diagnosis names them.
MD5_COUNTERS = ("TCPMD5Failure", "TCPMD5NotFound", "TCPMD5Unexpected")


class NetstatFormatError(ValueError):
    """The text is not in /proc/net/netstat's format (name lines and value lines in pairs)."""


def parse_netstat(text: str) -> dict[str, dict[str, int]]:
    """/proc/net/netstat (or /proc/net/snmp) as {section: {counter: value}}.  Each section is
    two lines, `Section: name name ...` then `Section: value value ...`."""
    sections: dict[str, dict[str, int]] = {}
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if len(lines) % 2:
        raise NetstatFormatError(f"{len(lines)} lines: names and values come in pairs")
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        section = names[0]
        if not section.endswith(":") or values[0] != section or len(names) != len(values):
            raise NetstatFormatError(f"section {section!r}: names and values do not match")
        try:
            numbers = [int(v) for v in values[1:]]
        except ValueError as exc:
            raise NetstatFormatError(f"section {section!r}: {exc}") from None
        sections[section.removesuffix(":")] = dict(zip(names[1:], numbers, strict=True))
    return sections


@dataclass(frozen=True)
class Md5Counters:
    """The namespace's TCP-MD5 drop counters (0 where the kernel has no such counter)."""

    failure: int = 0
    not_found: int = 0
    unexpected: int = 0

    def values(self) -> tuple[int, int, int]:
        return (self.failure, self.not_found, self.unexpected)

    def rose_since(self, earlier: Md5Counters) -> bool:
        return any(n > b for n, b in zip(self.values(), earlier.values(), strict=True))

    def text(self) -> str:
        return " ".join(f"{n}={v}" for n, v in zip(MD5_COUNTERS, self.values(), strict=True))


def md5_counters(text: str) -> Md5Counters:
    """The TCP-MD5 counters out of /proc/net/netstat's text."""
    tcp_ext = parse_netstat(text).get("TcpExt", {})
    return Md5Counters(*(tcp_ext.get(name, 0) for name in MD5_COUNTERS))


def read_md5_counters(path: Path = NETSTAT) -> Md5Counters:
    """Adapter: this network namespace's counters (raises OSError, NetstatFormatError)."""
    return md5_counters(path.read_text(encoding="ascii"))


class TcpMd5Watch:
    """Successive readings of the counters and of the neighbors down -> suspects."""

    def __init__(self) -> None:
        self.last: Md5Counters | None = None
        self._down: frozenset[str] = frozenset()
        self._suspects: dict[str, str] = {}  # neighbor -> its diagnosis

    def observe(self, counters: Md5Counters, down: Iterable[str]) -> str | None:
        """Record a reading; on a rise while neighbors stayed down, log and return the
        warning.  The first reading is the baseline (counters kept from before a restart);
        a counter that went down (a new namespace) makes a new baseline."""
        down_now = frozenset(down)
        stayed_down = sorted(down_now & self._down)
        previous, self.last, self._down = self.last, counters, down_now
        self._suspects = {n: d for n, d in self._suspects.items() if n in down_now}
        if previous is None or not counters.rose_since(previous) or not stayed_down:
            return None
        diagnosis = f"TCP-MD5 mismatch or missing key? ({counters.text()})"
        for neighbor in stayed_down:
            self._suspects[neighbor] = diagnosis
        rise = " ".join(
            f"{name}+{now - before}"
            for name, now, before in zip(
                MD5_COUNTERS, counters.values(), previous.values(), strict=True
            )
            if now > before
        )
        message = (
            f"BGP neighbor{'s' if len(stayed_down) > 1 else ''} {', '.join(stayed_down)} "
            f"down while the kernel dropped TCP segments for their MD5 signature ({rise}): "
            "a mismatching or missing TCP-MD5 key on one side?"
        )
        log.warning("%s", message, extra={"event": "tcp-md5"})
        return message

    def diagnosis(self, neighbor: str) -> str | None:
        return self._suspects.get(neighbor)

    def annotate(self, neighbors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Status rows ({"address", "state", ...}): a down suspect gets its "diagnosis"."""
        rows = []
        for row in neighbors:
            diagnosis = self._suspects.get(str(row.get("address")))
            if diagnosis is not None and row.get("state") == "down":
                rows.append({**row, "diagnosis": diagnosis})
            else:
                rows.append(dict(row))
        return rows
