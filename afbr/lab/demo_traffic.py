"""Traffic between the demo's islands: `ping` from one client host to another, and its result.

A ping runs in the source island's client host (a namespace) towards the destination island's
client host, so every packet crosses two AFBRs and the softwire between them.  Several pings
run side by side (process start-up is the slow part under UML); a background ping counts
losses while a test restarts something.
"""

from __future__ import annotations

import re
import signal
import subprocess
from dataclasses import dataclass

from afbr.lab.demo_mesh import Afbr
from afbr.lab.netns import Host

_COUNTS = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_RTT = re.compile(r"= [\d.]+/([\d.]+)/[\d.]+/[\d.]+ ms")


@dataclass(frozen=True)
class PingResult:
    source: str  # island names: the AFBR serving each island
    destination: str
    family: int
    address: str
    sent: int
    received: int
    rtt_avg_ms: float | None
    output: str = ""

    @property
    def lost(self) -> int:
        return self.sent - self.received

    @property
    def ok(self) -> bool:
        return self.sent > 0 and self.received == self.sent

    def as_dict(self) -> dict[str, object]:
        return {
            "from": self.source,
            "to": self.destination,
            "family": f"IPv{self.family}",
            "address": self.address,
            "sent": self.sent,
            "received": self.received,
            "lost": self.lost,
            "rtt_avg_ms": self.rtt_avg_ms,
            "ok": self.ok,
        }


def parse_ping(src: Afbr, dst: Afbr, output: str) -> PingResult:
    """Read ping's summary lines; a ping that printed none counts as nothing sent."""
    counts = _COUNTS.search(output)
    rtt = _RTT.search(output)
    return PingResult(
        source=src.name,
        destination=dst.name,
        family=dst.client_family,
        address=str(dst.client_address),
        sent=int(counts.group(1)) if counts else 0,
        received=int(counts.group(2)) if counts else 0,
        rtt_avg_ms=float(rtt.group(1)) if rtt else None,
        output=output,
    )


class Ping:
    """One ping process from `src`'s client host to `dst`'s; `count=None` runs until stopped."""

    def __init__(
        self,
        host: Host,
        src: Afbr,
        dst: Afbr,
        *,
        count: int | None,
        interval: float = 0.2,
        deadline: float | None = None,
    ) -> None:
        argv = ["ping", "-n", "-q", "-i", f"{interval:g}"]
        if count is not None:
            argv += ["-c", str(count)]
        if deadline is not None:
            argv += ["-w", f"{deadline:g}"]
        self.host, self.src, self.dst = host, src, dst
        self.proc = host.popen(*argv, str(dst.client_address), stdout=subprocess.PIPE)

    def result(self, timeout: float = 120.0) -> PingResult:
        """Wait for a counted ping to finish and return what it measured."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        finally:
            self.host.stop(self.proc)
        return parse_ping(self.src, self.dst, out.decode(errors="replace"))

    def stop(self) -> PingResult:
        """End a running ping (SIGINT makes ping print its summary) and return the result."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.result(timeout=15.0)


def ping_all(
    hosts: dict[str, Host],
    pairs: tuple[tuple[Afbr, Afbr], ...],
    *,
    count: int,
    interval: float = 0.2,
    deadline: float | None = None,
) -> list[PingResult]:
    """Run one ping per pair side by side; `hosts` maps client node names to their hosts."""
    pings = [
        Ping(hosts[src.client], src, dst, count=count, interval=interval, deadline=deadline)
        for src, dst in pairs
    ]
    return [ping.result() for ping in pings]
