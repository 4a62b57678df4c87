"""The topology every kernel smoke test uses: namespaces `a` and `b` joined by one veth.

One pair is built per test module (namespace set-up costs seconds inside UML); each case adds
its own devices, SAs and policies, and an `Undo` removes them afterwards, pass or fail, so the
next case of the module starts from the bare pair.  The lab itself is deleted when the module's
fixture ends, also on failure.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from afbr.lab.netns import Host, Lab

# Underlay (outer) addresses of the veth ends, from the documentation ranges.
OUTER = {
    4: ("192.0.2.1", "192.0.2.2", 24),
    6: ("2001:db8::1", "2001:db8::2", 64),
}
# Inner addresses carried through the tunnel under test.
INNER = {
    4: ("198.51.100.1", "198.51.100.2", 24),
    6: ("fd00:5::1", "fd00:5::2", 64),
}


@dataclass(frozen=True)
class Pair:
    """Namespaces `a` and `b` with `eth0` joined by a veth carrying both outer families."""

    a: Host
    b: Host


@contextmanager
def veth_pair(tag: str) -> Iterator[Pair]:
    """Build the pair; the namespaces are removed when the block ends, however it ends."""
    with Lab(tag) as lab:
        a = lab.host("a")
        b = lab.host("b")
        lab.link(a, "eth0", b, "eth0")
        for index, host in enumerate((a, b)):
            host.ip_batch(
                [
                    f"addr add {OUTER[4][index]}/{OUTER[4][2]} dev eth0",
                    f"addr add {OUTER[6][index]}/{OUTER[6][2]} dev eth0 nodad",
                ]
            )
        yield Pair(a, b)


@dataclass
class Undo:
    """`ip` commands that remove what one case added; run with -force, so a partial set-up
    (or an object already gone) still cleans up whatever exists."""

    lines: dict[str, list[str]] = field(default_factory=dict)

    def add(self, host: Host, *lines: str) -> None:
        self.lines.setdefault(host.name, []).extend(lines)

    def run(self) -> None:
        for name, lines in self.lines.items():
            subprocess.run(
                ["ip", "-n", name, "-force", "-batch", "-"],
                input="\n".join(lines) + "\n",
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        self.lines.clear()


@dataclass(frozen=True)
class PingResult:
    transmitted: int
    received: int


_PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")


def ping(host: Host, address: str, count: int = 3) -> PingResult:
    """Ping from a namespace; fail the test unless `count` replies arrive within 10 s."""
    proc = subprocess.run(
        host.argv("ping", "-n", "-q", "-c", str(count), "-i", "0.1", "-w", "10", address),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    summary = _PING_SUMMARY.search(proc.stdout)
    assert proc.returncode == 0 and summary is not None, (
        f"ping {address} from {host.name} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
    )
    return PingResult(int(summary.group(1)), int(summary.group(2)))


_SA_PACKETS = re.compile(r"lifetime current:\s*\n\s*(\d+)\(bytes\), (\d+)\(packets\)")
_SA_SPI = re.compile(r"\bspi (0x[0-9a-f]+)")


def sa_packets(host: Host) -> dict[int, int]:
    """Packets each SA of a namespace has processed, by SPI (from `ip -s xfrm state`)."""
    text = host.run("ip", "-s", "xfrm", "state")
    counts: dict[int, int] = {}
    for block in re.split(r"^(?=src )", text, flags=re.MULTILINE):
        spi = _SA_SPI.search(block)
        packets = _SA_PACKETS.search(block)
        if spi is not None and packets is not None:
            counts[int(spi.group(1), 16)] = int(packets.group(2))
    return counts
