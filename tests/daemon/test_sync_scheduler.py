"""The reconcile scheduler (afbr.daemon.sync_scheduler): pure, driven by `now` alone."""

from __future__ import annotations

import pytest

from afbr.daemon.sync_scheduler import (
    RESYNC_INTERVAL,
    STARTUP_GRACE,
    SYNC_DELAY,
    Reason,
    SyncScheduler,
)

T0 = 1000.0


def converged() -> SyncScheduler:
    """A scheduler whose gate is open and whose first reconcile has run (ok) at T0."""
    sched = SyncScheduler(T0)
    assert sched.changed(T0, converged=True)
    sched.reconcile_started(T0 + SYNC_DELAY)
    sched.reconcile_finished(T0 + 1, ok=True)
    return sched


def run_due(sched: SyncScheduler, now: float, *, ok: bool = True) -> Reason:
    assert sched.due(now)
    reason = sched.reconcile_started(now)
    assert not sched.due(now) and sched.next_deadline() is None  # one at a time
    sched.reconcile_finished(now, ok)
    return reason


def test_a_burst_of_changes_makes_one_reconcile_after_the_delay() -> None:
    sched = converged()
    now = T0 + 5
    for i in range(100):
        sched.changed(now + i * 0.0001, converged=True)
    assert sched.next_deadline() == pytest.approx(now + SYNC_DELAY)
    assert not sched.due(now + SYNC_DELAY / 2)
    assert run_due(sched, now + SYNC_DELAY) is Reason.CHANGE
    assert sched.next_deadline() == pytest.approx(now + SYNC_DELAY + RESYNC_INTERVAL)


def test_nothing_is_reconciled_before_end_of_rib_from_every_neighbor() -> None:
    sched = SyncScheduler(T0)
    assert not sched.changed(T0 + 1, converged=False)
    assert not sched.changed(T0 + 2, converged=False)
    assert sched.next_deadline() == T0 + STARTUP_GRACE  # only the grace is pending
    assert not sched.due(T0 + 30)
    assert sched.changed(T0 + 31, converged=True)  # opens the gate: the caller logs it
    assert not sched.changed(T0 + 31.01, converged=True)  # already open
    assert sched.next_deadline() == pytest.approx(T0 + 31 + SYNC_DELAY)
    assert run_due(sched, T0 + 31 + SYNC_DELAY) is Reason.CHANGE
    assert sched.gate_open


def test_the_start_up_grace_opens_the_gate_without_end_of_rib() -> None:
    sched = SyncScheduler(T0)
    sched.changed(T0 + 1, converged=False)
    assert not sched.due(T0 + STARTUP_GRACE - 0.001)
    assert run_due(sched, T0 + STARTUP_GRACE) is Reason.GRACE
    assert sched.gate_open
    sched.changed(T0 + STARTUP_GRACE + 1, converged=False)  # once open, it stays open
    assert sched.next_deadline() == pytest.approx(T0 + STARTUP_GRACE + 1 + SYNC_DELAY)


def test_changes_during_a_reconcile_make_exactly_one_more_when_it_ends() -> None:
    sched = converged()
    sched.changed(T0 + 10, converged=True)
    sched.reconcile_started(T0 + 10 + SYNC_DELAY)
    for i in range(5):
        sched.changed(T0 + 11 + i, converged=True)
        assert not sched.due(T0 + 11 + i) and sched.next_deadline() is None
    sched.reconcile_finished(T0 + 20, ok=True)
    assert sched.next_deadline() == pytest.approx(T0 + 20 + SYNC_DELAY)
    assert run_due(sched, T0 + 20 + SYNC_DELAY) is Reason.CHANGE
    # nothing came during that one: only the periodic resync is left
    assert sched.next_deadline() == pytest.approx(T0 + 20 + SYNC_DELAY + RESYNC_INTERVAL)


def test_a_periodic_resync_runs_with_no_bgp_change() -> None:
    sched = converged()
    assert sched.next_deadline() == T0 + 1 + RESYNC_INTERVAL
    assert not sched.due(T0 + RESYNC_INTERVAL)
    assert run_due(sched, T0 + 1 + RESYNC_INTERVAL) is Reason.RESYNC
    assert run_due(sched, T0 + 1 + 2 * RESYNC_INTERVAL) is Reason.RESYNC


def test_no_periodic_resync_before_the_gate_opens() -> None:
    sched = SyncScheduler(T0)
    assert sched.next_deadline() == T0 + STARTUP_GRACE  # not T0 + RESYNC_INTERVAL


def test_a_failed_reconcile_is_retried_with_a_capped_doubling_backoff() -> None:
    sched = converged()
    now = T0 + 10
    sched.changed(now, converged=True)
    sched.reconcile_started(now + SYNC_DELAY)
    now += 1
    assert sched.reconcile_finished(now, ok=False) == 1.0
    delays = [1.0]
    for _ in range(7):
        deadline = sched.next_deadline()
        assert deadline is not None
        assert not sched.due(deadline - 0.01)
        assert sched.reconcile_started(deadline) is Reason.RETRY
        delay = sched.reconcile_finished(deadline, ok=False)
        assert delay is not None
        delays.append(delay)
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert sched.failures == 8


def test_a_success_resets_the_backoff() -> None:
    sched = converged()
    sched.changed(T0 + 10, converged=True)
    sched.reconcile_started(T0 + 10.05)
    sched.reconcile_finished(T0 + 11, ok=False)
    assert run_due(sched, T0 + 12, ok=False) is Reason.RETRY  # 1 s after, fails again
    assert sched.next_deadline() == T0 + 14  # 2 s
    assert run_due(sched, T0 + 14, ok=True) is Reason.RETRY
    assert sched.failures == 0
    assert sched.next_deadline() == T0 + 14 + RESYNC_INTERVAL  # no retry pending
    sched.changed(T0 + 20, converged=True)
    sched.reconcile_started(T0 + 20.05)
    assert sched.reconcile_finished(T0 + 21, ok=False) == 1.0  # back to the first step


def test_a_change_does_not_wait_for_the_backoff() -> None:
    sched = converged()
    for now in (T0 + 10, T0 + 11, T0 + 13, T0 + 17):  # four failures: next retry in 8 s
        sched.changed(now, converged=True)
        sched.reconcile_started(now + SYNC_DELAY)
        sched.reconcile_finished(now + 0.5, ok=False)
    assert sched.next_deadline() == T0 + 17.5 + 8
    sched.changed(T0 + 19, converged=True)
    assert sched.next_deadline() == pytest.approx(T0 + 19 + SYNC_DELAY)
    assert run_due(sched, T0 + 19 + SYNC_DELAY, ok=False) is Reason.CHANGE
    assert sched.failures == 5
    assert sched.next_deadline() == pytest.approx(T0 + 19 + SYNC_DELAY + 16)


def test_the_backoff_does_not_overflow_after_days_of_failures() -> None:
    assert SyncScheduler(T0).retry_delay(100_000) == 30.0
