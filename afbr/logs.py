"""Logging set-up: text for people, JSON lines for machines (log.format in the config).

RFC 5619 §3.4.1 asks an AFBR to log the activity that matters for security: BGP sessions
up/down, SAs up/down/rekeyed, authentication failures, filtered packets.  Those records carry
an `event` attribute (e.g. `extra={"event": "sa-up", "peer": "2001:db8::b"}`) that the JSON
format emits as fields, so they can be selected by machines.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if extras:
            text += " " + " ".join(f"{k}={v}" for k, v in sorted(extras.items()))
        return text


def setup_logging(fmt: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


class RateLimitedLog:
    """Logs a kind of event at most once per `interval` seconds, with how many were folded.

    For bad input from the network: counted per packet, logged per interval (RFC 5619 asks
    for the record; a flood must not turn into a log flood).
    """

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._folded: dict[str, int] = {}

    def log(
        self, kind: str, now: float, msg: str, *args: object, level: int = logging.WARNING
    ) -> bool:
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._folded[kind] = self._folded.get(kind, 0) + 1
            return False
        folded = self._folded.pop(kind, 0)
        suffix = f" (+{folded} more in the last {self.interval:g}s)" if folded else ""
        self.logger.log(level, msg + suffix, *args, extra={"event": kind})
        self._last[kind] = now
        return True
