"""When the daemon reconciles the kernel with the RIB (pure: events and `now` in, decisions out).

- Coalescing: a change is reconciled `delay` (50 ms) after it came, with whatever else came
  meanwhile: a burst of UPDATEs makes one reconcile.
- The convergence gate: nothing is reconciled until the RIB has converged once (End-of-RIB from
  every neighbor up) or the start-up grace has passed.  A restarted daemon's RIB starts empty;
  reconciling it would remove the softwires the kernel kept forwarding on.
- One reconcile at a time: changes during one make one more when it ends.
- Periodic resync: `resync` seconds after the last reconcile ended, one more, BGP change or
  not.  A reconcile re-reads the kernel, so links, routes and filters that vanished behind
  afbr's back (an operator's `ip link del`, `nft flush ruleset`) come back.
- Retry: after a failed reconcile, another after a backoff that doubles with each failure in a
  row (1 s, 2 s, 4 s ... capped at `retry_ceiling`); a success resets it.  A change does not
  wait for the backoff: what it brings is applied as far as the kernel lets it.

The daemon's adapter (afbr.daemon.runtime) arms one timer for `next_deadline()`, asks `due(now)`
when it fires, and reports `reconcile_started` / `reconcile_finished`; `changed` on every
batch of RIB changes.
"""

from __future__ import annotations

import enum

SYNC_DELAY = 0.05  # seconds: coalesce a burst of UPDATEs into one reconcile
# Until the RIB has converged once (End-of-RIB from every neighbor up), the kernel keeps what
# an earlier run left there: an empty RIB at start-up must not remove the softwires.
STARTUP_GRACE = 60.0
RESYNC_INTERVAL = 30.0  # seconds from the end of one reconcile to the next, with no change
RETRY_FIRST = 1.0  # seconds before the first retry of a failed reconcile
RETRY_CEILING = 30.0


class Reason(enum.Enum):
    """Why a reconcile starts."""

    CHANGE = "change"  # RIB changes (or the gate opened on End-of-RIB)
    GRACE = "grace"  # the start-up grace passed without End-of-RIB from every neighbor
    RETRY = "retry"  # the previous reconcile failed
    RESYNC = "resync"  # periodic, with no change


class SyncScheduler:
    """The reconcile timing of one daemon.  Times are seconds of one monotonic clock."""

    def __init__(
        self,
        now: float,
        *,
        delay: float = SYNC_DELAY,
        grace: float = STARTUP_GRACE,
        resync: float = RESYNC_INTERVAL,
        retry_first: float = RETRY_FIRST,
        retry_ceiling: float = RETRY_CEILING,
    ) -> None:
        self.delay = delay
        self.resync = resync
        self.retry_first = retry_first
        self.retry_ceiling = retry_ceiling
        self.gate_open = False  # the RIB converged once, or the grace passed
        self.running = False
        self.failures = 0  # failed reconciles in a row
        self._grace_at = now + grace
        self._change_at: float | None = None  # a coalesced batch of changes waits until then
        self._again = False  # changes came during the running reconcile
        self._retry_at: float | None = None
        self._resync_at: float | None = None

    def changed(self, now: float, converged: bool) -> bool:
        """The RIB changed (or may have converged).  True when this opened the gate."""
        opened = False
        if not self.gate_open:
            if not converged:
                return False  # start-up: keep (adopt) the kernel's softwires
            self.gate_open = opened = True
        if self.running:
            self._again = True  # one more when this one ends
        elif self._change_at is None:  # else it joins the batch already waiting
            self._change_at = now + self.delay
        return opened

    def next_deadline(self) -> float | None:
        """When `due` next turns true (None: not before another event)."""
        if self.running:
            return None
        if not self.gate_open:
            return self._grace_at
        times = [t for t in (self._change_at, self._retry_at, self._resync_at) if t is not None]
        return min(times, default=None)

    def due(self, now: float) -> bool:
        """Whether a reconcile is to start now."""
        deadline = self.next_deadline()
        return deadline is not None and now >= deadline

    def reconcile_started(self, now: float) -> Reason:
        """A reconcile starts now (`due` said so): it covers every change, retry and resync
        waiting.  Returns why it was due."""
        if not self.gate_open:
            reason = Reason.GRACE
            self.gate_open = True
        elif self._change_at is not None and now >= self._change_at:
            reason = Reason.CHANGE
        elif self._retry_at is not None and now >= self._retry_at:
            reason = Reason.RETRY
        elif self._resync_at is not None and now >= self._resync_at:
            reason = Reason.RESYNC
        else:
            reason = Reason.CHANGE  # started early: it still reads the whole RIB
        self.running = True
        self._change_at = self._retry_at = self._resync_at = None
        return reason

    def reconcile_finished(self, now: float, ok: bool) -> float | None:
        """The running reconcile ended; returns the delay before its retry (None: ok)."""
        self.running = False
        self._resync_at = now + self.resync
        retry: float | None = None
        if ok:
            self.failures = 0
        else:
            self.failures += 1
            retry = self.retry_delay(self.failures)
            self._retry_at = now + retry
        if self._again:
            self._again = False
            self._change_at = now + self.delay
        return retry

    def retry_delay(self, failures: int) -> float:
        """Seconds before the retry after `failures` failed reconciles in a row (1-based)."""
        doublings = min(max(0, failures - 1), 32)  # 2**32 s is past any ceiling; no overflow
        return float(min(self.retry_ceiling, self.retry_first * 2**doublings))
