"""Supervision of a child process (ExaBGP): restart with exponential backoff when it dies.

The kernel keeps forwarding while the child is down; the supervisor only restarts it and
reports the state.  A run that lasted `stable_after` seconds resets the backoff.  A child that
cannot be started at all (no such program, not executable) is logged with the reason, shown
as `failed: <reason>` and tried again with the same backoff for as long as the supervisor
runs; anything else that ends the supervising task is logged, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    first: float = 1.0
    factor: float = 2.0
    ceiling: float = 60.0
    stable_after: float = 30.0

    def delay(self, failures: int) -> float:
        """Wait before restart number `failures` (1-based)."""
        exponent = min(max(0, failures - 1), 64)  # past any ceiling; no float overflow
        return float(min(self.ceiling, self.first * self.factor**exponent))


class Supervisor:
    """Keeps `argv` running until `stop()`; `on_start` gets each new process."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        backoff: Backoff | None = None,
        on_start: Callable[[asyncio.subprocess.Process], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.backoff = backoff or Backoff()
        self.on_start = on_start
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.state = "stopped"
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"supervise-{self.name}")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        self.state = f"failed: {exc!r}"
        log.error("supervising %s failed; it is not restarted", self.name, exc_info=exc)

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            started = time.monotonic()
            try:
                self.process = await asyncio.create_subprocess_exec(
                    *self.argv,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    # its stderr too goes through afbr's logger (JSON when asked), never raw
                    stderr=asyncio.subprocess.STDOUT,
                    env={**os.environ, **(self.env or {})},
                    start_new_session=True,
                )
            except OSError as exc:  # no such program, not executable, out of processes
                failures += 1
                delay = self.backoff.delay(failures)
                self.state = f"failed: {exc}"
                self.restarts += 1
                log.error(
                    "%s could not be started (%s): %s; trying again in %.1fs",
                    self.name,
                    self.argv[0],
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            self.state = "running"
            log.info("%s started (pid %d)", self.name, self.process.pid)
            if self.on_start is not None:
                await self.on_start(self.process)
            code = await self.process.wait()
            if self._stopping:
                break
            self.state = "restarting"
            lived = time.monotonic() - started
            failures = 1 if lived >= self.backoff.stable_after else failures + 1
            delay = self.backoff.delay(failures)
            self.restarts += 1
            log.warning(
                "%s exited with %s after %.1fs; restarting in %.1fs", self.name, code, lived, delay
            )
            await asyncio.sleep(delay)
        self.state = "stopped"

    async def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        """End the child (its whole process group) with `sig`, SIGKILL after `timeout`."""
        self._stopping = True
        proc = self.process
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # logged by _ended
                await self._task
        self.state = "stopped"
