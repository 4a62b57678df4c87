"""Counters of bad IKE input, logged as one summary line per interval rather than per packet."""

from __future__ import annotations

import logging
from collections import Counter
from enum import Enum

log = logging.getLogger(__name__)


class BadInput(Enum):
    GARBAGE = "garbage"  # not an IKE message at all (bad version, bad lengths, junk)
    TRUNCATED = "truncated"
    OVERSIZED = "oversized"
    MALFORMED = "malformed"  # decodes as IKE but a payload is invalid
    REPLAYED = "replayed"  # a request we already answered (answered again from the cache)
    RATE_LIMITED = "rate-limited"  # a retransmitted request not answered again: too soon
    OUT_OF_WINDOW = "out-of-window"  # message id outside the window, or unsolicited response
    UNKNOWN_SPI = "unknown-spi"
    UNKNOWN_PEER = "unknown-peer"  # IKE_SA_INIT from an address with no configuration
    BAD_ICV = "bad-icv"  # SK payload integrity check failed
    UNEXPECTED = "unexpected"  # valid, but not allowed in the SA's state
    COOKIE_REQUIRED = "cookie-required"  # IKE_SA_INIT answered with a cookie (RFC 7296 §2.6)
    HALF_OPEN_LIMIT = "half-open-limit"  # dropped: too many half-open SAs from the same source
    NAT_KEEPALIVE = "nat-keepalive"  # not bad: counted for visibility


class BadInputLog:
    """Counts every kind of bad input; `flush` logs what arrived since the last log line."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self.totals: Counter[BadInput] = Counter()
        self._pending: Counter[BadInput] = Counter()
        self._last_log: float | None = None

    def count(self, kind: BadInput, now: float, detail: str = "") -> None:
        self.totals[kind] += 1
        self._pending[kind] += 1
        log.debug("bad IKE input %s: %s", kind.value, detail)
        self.flush(now)

    def flush(self, now: float, force: bool = False) -> None:
        if not self._pending:
            return
        if not force and self._last_log is not None and now - self._last_log < self.interval:
            return
        summary = ", ".join(f"{k.value}={n}" for k, n in sorted(self._pending.items(), key=_key))
        log.warning("bad IKE input in the last %.0f s: %s", self.interval, summary)
        self._pending.clear()
        self._last_log = now


def _key(item: tuple[BadInput, int]) -> str:
    return item[0].value
