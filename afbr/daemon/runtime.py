"""`afbr run`: the composition root.  Starts and supervises ExaBGP, feeds the BGP control
plane, keeps the kernel's softwires in step with the RIB, and serves the control socket.

    ExaBGP --API process (afbr.daemon.exabgp_bridge)--> bridge socket --> BgpControlPlane
        --best-path changes--> SoftwireSync (encap derive + dataplane reconcile) --> kernel

- SIGTERM/SIGINT stop the control plane (ExaBGP) and leave forwarding in place: the next
  start adopts the kernel objects that still match.
- SIGHUP re-reads the config and applies only the difference (announcements, softwires).
- ExaBGP dying is not a reason to touch the kernel: the supervisor restarts it with backoff and
  the RIB and softwires are kept until the sessions come back.
- A second instance on the same box refuses to start (an flock in the state directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from afbr import __version__
from afbr.bgp.control_plane import BgpControlPlane
from afbr.bgp.exabgp_config import (
    exabgp_argv,
    exabgp_environment,
    find_exabgp,
    render_exabgp_config,
    write_private_file,
)
from afbr.bgp.keyfile import KeyRing, load_key_file
from afbr.bgp.mesh_view import MeshView
from afbr.bgp.session_config import DEFAULT_RESTART_TIME, BgpSessionConfig
from afbr.config import AfbrConfig, load_config
from afbr.daemon import views
from afbr.daemon.activity_log import DROP_LOG_INTERVAL, FilteredPackets, log_session_event
from afbr.daemon.control_socket import ControlServer, Handler
from afbr.daemon.instance_lock import InstanceLock
from afbr.daemon.ipsec_agent import IpsecAgent
from afbr.daemon.ipsec_credentials import load_psks, local_private_key
from afbr.daemon.supervisor import Backoff, Supervisor
from afbr.daemon.sync_scheduler import STARTUP_GRACE, Reason, SyncScheduler
from afbr.daemon.tcp_md5_watch import CHECK_INTERVAL, TcpMd5Watch, read_md5_counters
from afbr.daemon.views import Softwires
from afbr.dataplane.rtnl_events import RtnlDeletionListener
from afbr.ipsec import public_key_authenticator
from afbr.metrics import Metric, MetricsServer

log = logging.getLogger("afbr.daemon")


class AfbrDaemon:
    def __init__(
        self,
        config_path: Path,
        *,
        softwires_factory: Callable[[AfbrConfig], Softwires] | None = None,
        exabgp: str | None = None,
    ) -> None:
        self.config_path = config_path
        self.config = load_config(config_path)
        self.softwires_factory = softwires_factory
        self.exabgp = exabgp or find_exabgp()
        self.started = time.time()
        self.runtime_dir = self.config.state_dir / "run"
        self.bridge_path = self.runtime_dir / "exabgp-bridge.sock"
        # role: sidecar keeps the whole mesh's view, wrong parts included, and audits it.
        self.mesh_view: MeshView | None = None
        if self.config.role == "sidecar":
            self.mesh_view = MeshView(
                self.config.core.family,
                require_authenticator=self.config.ipsec.enabled
                and self.config.ipsec.auth == "pubkey",
            )
        observers = [log_session_event]  # RFC 5619 §3.4.1: sessions up and down
        if self.mesh_view is not None:
            observers.append(self.mesh_view.apply)
        self.control_plane = BgpControlPlane(self._session_config(self.config), observers=observers)
        self.softwires: Softwires | None = None
        self.ipsec: IpsecAgent | None = None
        self.supervisor: Supervisor | None = None
        self.last_sync: dict[str, Any] = {}
        self.counters: dict[str, int] = {
            "bridge_connections": 0,
            "syncs": 0,
            "sync_errors": 0,  # reconciles that failed (each is retried with backoff)
            "sync_retries": 0,
            "resyncs": 0,  # periodic reconciles with no BGP change
            "resync_repairs": 0,  # periodic reconciles that had to put something back
            "kernel_changes": 0,  # afbr's links/routes deleted in the kernel (a reconcile each)
        }
        # When to reconcile (coalescing, convergence gate, retries, resyncs); monotonic time.
        self.sync_schedule = SyncScheduler(time.monotonic())
        self._bridge_writer: asyncio.StreamWriter | None = None
        self._bridged_pids: set[int] = set()  # ExaBGP processes whose API process connected
        self._sync_handle: asyncio.TimerHandle | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Future[None]] = set()
        self._bridge_tasks: set[asyncio.Task[Any]] = set()  # the bridge connections' handlers
        self.md5_watch = TcpMd5Watch()
        self._exabgp_text = ""
        self.last_reload: dict[str, Any] = {}  # the last SIGHUP's result, for status
        self._lock = InstanceLock(self.config.state_dir / "afbr.lock")

    # -- life cycle ----------------------------------------------------------------------

    async def run(self) -> int:
        self._lock.acquire()  # raises AlreadyRunning: a second instance refuses to start
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload()))
        control = ControlServer(self.config.control_socket, self._handlers())
        bridge = await asyncio.start_unix_server(
            self._serve_bridge, path=str(self._fresh_socket(self.bridge_path)), limit=1 << 24
        )
        os.chmod(self.bridge_path, 0o600)
        metrics = None
        deletions: RtnlDeletionListener | None = None
        try:
            await control.start()
            if self.config.metrics_listen:
                metrics = MetricsServer(self.config.metrics_listen, self.metrics)
                await metrics.start()
            if self.softwires_factory is not None and self.config.role == "afbr":
                self.softwires = self.softwires_factory(self.config)
                if self.config.ipsec.enabled:
                    self.ipsec = IpsecAgent(self.config)
                    self.ipsec.start()
                    self.softwires.ipsec = self.ipsec
                self._arm_sync()  # the start-up grace
            self.supervisor = self._start_exabgp()
            self._spawn(self._sweep_stale())
            self._spawn(self._watch_tcp_md5())
            if self.softwires is not None:
                self._spawn(self._log_filtered())
                deletions = self._watch_deletions(loop)
            log.info(
                "afbr %s running (%s)", __version__, self.config_path, extra={"event": "start"}
            )
            await self._stop.wait()
        finally:
            log.info("stopping the control plane; forwarding stays in place")
            if self.supervisor is not None:
                # No Cease NOTIFICATION: the sessions just drop, so the route reflectors keep
                # our routes through the graceful-restart time (RFC 4724 §4.2) and the other
                # AFBRs keep forwarding to us while we restart.
                await self.supervisor.stop(sig=signal.SIGKILL)
            bridge.close()
            await self._end_tasks()
            if deletions is not None:
                loop.remove_reader(deletions.fileno())
                deletions.close()
            if self.softwires is not None:  # a reconcile under way ends first
                await asyncio.to_thread(self.softwires.close)
            if self.ipsec is not None:
                self.ipsec.close()  # the SAs stay in the kernel: forwarding goes on
            await control.close()
            if metrics is not None:
                await metrics.close()
            self._lock.release()
        return 0

    def _watch_deletions(self, loop: asyncio.AbstractEventLoop) -> RtnlDeletionListener:
        """The kernel is the truth: a softwire link or route of afbr's deleted by anyone makes
        a reconcile now (coalesced; our own deletions make at most one no-op one)."""
        listener = RtnlDeletionListener()

        def readable() -> None:
            try:
                deleted = listener.read_pending()
            except OSError as exc:
                log.error("reading link/route notifications failed: %s", exc)
                return
            if deleted:
                self.counters["kernel_changes"] += 1
                self._schedule_sync()

        loop.add_reader(listener.fileno(), readable)
        return listener

    def _render_exabgp(self, config: AfbrConfig) -> str:
        """ExaBGP's config text for `config` (holds keys: never logged)."""
        bridge_argv = [sys.executable, "-m", "afbr.daemon.exabgp_bridge", str(self.bridge_path)]
        session = self._session_config(config)
        return render_exabgp_config(session, self._bgp_keys(config), bridge_argv)

    def _start_exabgp(self) -> Supervisor:
        self._exabgp_text = self._render_exabgp(self.config)
        conf = write_private_file(self.runtime_dir / "exabgp", "exabgp.conf", self._exabgp_text)
        supervisor = Supervisor(
            "exabgp",
            exabgp_argv(self.exabgp, conf),
            env=exabgp_environment(self._session_config(self.config)),
            backoff=Backoff(first=1.0, ceiling=30.0),
            on_start=self._watch_exabgp_output,
        )
        supervisor.start()
        return supervisor

    async def _watch_exabgp_output(self, process: asyncio.subprocess.Process) -> None:
        if process.stdout is not None:
            self._spawn(_relay_log(process.stdout, logging.getLogger("afbr.exabgp")))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)  # keep a reference until it finishes
        task.add_done_callback(self._tasks.discard)

    async def _end_tasks(self) -> None:
        """Shutdown: cancel the bridge connections' handlers and the spawned tasks and wait
        for them; a CancelledError is how they end here, any other exception is logged."""
        tasks = [*self._bridge_tasks, *self._tasks]
        for task in tasks:
            task.cancel()
        for task, result in zip(
            tasks, await asyncio.gather(*tasks, return_exceptions=True), strict=True
        ):
            if isinstance(result, Exception):
                log.error("%s failed at shutdown: %r", task, result)

    async def reload(self) -> None:
        """SIGHUP: re-read the config and apply all of it (announcements, softwires, ExaBGP's
        sessions, IPsec credentials and settings) or, if any part cannot be applied, none of
        it: the refusal is logged and shown in status ("reload")."""
        try:
            new = load_config(self.config_path)
            exabgp_text = self._render_exabgp(new)  # e.g. an unreadable or unsafe key file
            self._check_reload(new)
        except Exception as exc:  # a broken file must not take the running daemon down
            self.last_reload = {"result": "refused", "reason": str(exc), "at": time.time()}
            log.error(
                "reload refused, keeping the running config: %s",
                exc,
                extra={"event": "reload-refused", "reason": str(exc)},
            )
            return
        self.config = new
        self._reload_ipsec(new)
        commands = self.control_plane.update_config(self._session_config(new))
        await self._send(commands)
        if exabgp_text != self._exabgp_text:
            # Neighbors, timers or TCP-MD5 keys changed: ExaBGP takes them on a restart.
            log.warning("BGP session settings changed; restarting ExaBGP to apply them")
            if self.supervisor is not None:
                await self.supervisor.stop()
            self.supervisor = self._start_exabgp()
        self._schedule_sync()
        self.last_reload = {"result": "applied", "reason": "", "at": time.time()}
        log.info("config reloaded", extra={"event": "reload"})

    def _check_reload(self, new: AfbrConfig) -> None:
        """Raise ValueError (or the loader's error) when `new` cannot be applied running."""
        for what, old_value, new_value in (
            ("role", self.config.role, new.role),
            ("core.address", self.config.core.address, new.core.address),
            ("state_dir", self.config.state_dir, new.state_dir),
            ("control_socket", self.config.control_socket, new.control_socket),
        ):
            if old_value != new_value:
                raise ValueError(f"{what} changed ({old_value} -> {new_value}): restart afbr")
        if new.ipsec.enabled:  # the credentials load, or nothing changes
            local_private_key(new)
            load_psks(new)

    def _reload_ipsec(self, new: AfbrConfig) -> None:
        """Start, stop or reconfigure the IKE agent as the new config says."""
        if self.softwires is None:
            return
        if new.ipsec.enabled and self.ipsec is None:
            log.info("IPsec turned on by a reload: starting the IKE agent")
            self.ipsec = IpsecAgent(new)
            self.ipsec.start()
            self.softwires.ipsec = self.ipsec
        elif not new.ipsec.enabled and self.ipsec is not None:
            log.warning("IPsec turned off by a reload: stopping the IKE agent")
            self.softwires.ipsec = None
            self.ipsec.remove_everything()
            self.ipsec.close()
            self.ipsec = None
        elif self.ipsec is not None:
            self.ipsec.reconfigure(new)

    # -- ExaBGP bridge ------------------------------------------------------------------------

    async def _serve_bridge(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # asyncio runs this as a task; Python 3.11 logs an ERROR with a traceback for one that
        # ends cancelled, so shutdown's cancellation (run's _end_tasks) ends it normally.
        task = asyncio.current_task()
        if task is not None:
            self._bridge_tasks.add(task)
            task.add_done_callback(self._bridge_tasks.discard)
        try:
            await self._bridge_connection(reader, writer)
        except asyncio.CancelledError:
            log.debug("ExaBGP bridge connection closed at shutdown")

    async def _bridge_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.counters["bridge_connections"] += 1
        if self._bridge_writer is not None:
            self._bridge_writer.close()
        self._bridge_writer = writer
        # An API process that ExaBGP respawned finds the sessions up and missed what came
        # before: ask for the routes again.  The first one of an ExaBGP process missed nothing
        # (ExaBGP queues for it), and a refresh would make every reflector send its table twice.
        exabgp_pid = self._exabgp_pid()
        if exabgp_pid is None or exabgp_pid in self._bridged_pids:
            await self._send(self.control_plane.startup_commands())
        else:
            self._bridged_pids.add(exabgp_pid)
        try:
            while line := await reader.readline():
                commands = self.control_plane.feed_line(line)
                if commands:
                    await self._send(commands)
                if self.control_plane.take_changes() or not self.sync_schedule.gate_open:
                    self._schedule_sync()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
            log.warning("ExaBGP bridge connection failed: %s", exc)
        finally:
            if self._bridge_writer is writer:
                self._bridge_writer = None
                # ExaBGP went away: keep every path, stale, until the sessions are back and
                # End-of-RIB refreshes them (RFC 4724 §4.2); forwarding is not touched.
                self.control_plane.connection_lost(time.monotonic())
            writer.close()

    def _exabgp_pid(self) -> int | None:
        process = self.supervisor.process if self.supervisor is not None else None
        return process.pid if process is not None else None

    async def _send(self, commands: list[str]) -> None:
        writer = self._bridge_writer
        if writer is None or not commands:
            return  # the next ExaBGP connection re-announces everything on neighbor up
        writer.write("".join(c + "\n" for c in commands).encode())
        await writer.drain()

    # -- softwires ------------------------------------------------------------------------------

    async def _sweep_stale(self) -> None:
        while True:  # RFC 4724 §4.2: stale paths whose End-of-RIB never came
            await asyncio.sleep(1.0)
            if self.control_plane.sweep_stale(time.monotonic()):
                self._schedule_sync()

    async def _watch_tcp_md5(self) -> None:
        """A neighbor down while the kernel drops segments for their TCP-MD5 signature: say
        so (afbr.daemon.tcp_md5_watch).  Reading a small proc file on the loop is fine."""
        while True:
            try:
                counters = read_md5_counters()
            except (OSError, ValueError) as exc:  # no procfs, an unexpected format: no watch
                log.info("not watching the TCP-MD5 counters: %s", exc)
                return
            up = self.control_plane.rib.neighbors_up
            neighbors = [str(n.address) for n in self.config.bgp.neighbors]
            self.md5_watch.observe(counters, [a for a in neighbors if a not in up])
            await asyncio.sleep(CHECK_INTERVAL)

    async def _log_filtered(self) -> None:
        filtered = FilteredPackets()  # RFC 5619 §3.4.1: filtered packets are logged
        while True:
            await asyncio.sleep(DROP_LOG_INTERVAL)
            if self.softwires is None:
                continue
            try:
                await self.softwires.refresh_in_worker()  # nft is forked there, not on the loop
                filtered.record(self.softwires.counters())
            except Exception:  # counters are a view: a failed reading must not end the daemon
                log.exception("reading the drop counters failed")

    def _schedule_sync(self) -> None:
        """The RIB changed, or may have converged: tell the scheduler, arm its timer."""
        control_plane = self.control_plane
        converged = self.sync_schedule.gate_open or bool(
            control_plane.rib.neighbors_up and control_plane.converged()
        )
        if self.sync_schedule.changed(time.monotonic(), converged):
            log.info(
                "End-of-RIB from every neighbor: %d routes learned, reconciling the kernel",
                len(control_plane.rib),
                extra={"event": "converged"},
            )
        self._arm_sync()

    def _arm_sync(self) -> None:
        """One timer, at the scheduler's next deadline (afbr.daemon.sync_scheduler)."""
        if self._sync_handle is not None:
            self._sync_handle.cancel()
            self._sync_handle = None
        deadline = self.sync_schedule.next_deadline()
        if deadline is None or self.softwires is None or self._stop.is_set():
            return
        delay = max(0.0, deadline - time.monotonic())
        self._sync_handle = asyncio.get_running_loop().call_later(delay, self._run_sync)

    def _run_sync(self) -> None:
        self._sync_handle = None
        now = time.monotonic()
        if self.softwires is None or self._stop.is_set():
            return
        if not self.sync_schedule.due(now):
            self._arm_sync()
            return
        reason = self.sync_schedule.reconcile_started(now)
        if reason is Reason.GRACE:
            log.warning(
                "no End-of-RIB within %.0fs of start; reconciling with what is known", STARTUP_GRACE
            )
        elif reason is Reason.RETRY:
            self.counters["sync_retries"] += 1
        elif reason is Reason.RESYNC:
            self.counters["resyncs"] += 1
        loop = asyncio.get_running_loop()
        self._sync_task = loop.create_task(self._sync(self.softwires, reason))

    async def _sync(self, softwires: Softwires, reason: Reason) -> None:
        ok = False
        try:
            self.last_sync = await softwires.sync_in_worker(self.control_plane, self.config)
            ok = bool(self.last_sync.get("ok", True))
            if reason is Reason.RESYNC and self.last_sync.get("changed"):
                # RFC 5619 §3.4.1: the kernel had lost something of afbr's; it is back
                self.counters["resync_repairs"] += 1
                log.warning(
                    "periodic resync found the kernel changed under afbr and repaired it",
                    extra={"event": "kernel-repair"},
                )
        except Exception:  # keep the daemon and its state; retried with backoff
            log.exception("softwire reconcile failed")
        self.counters["syncs" if ok else "sync_errors"] += 1
        retry = self.sync_schedule.reconcile_finished(time.monotonic(), ok)
        if retry is not None:
            log.warning(
                "softwire reconcile failed (%d in a row); retrying in %.0fs",
                self.sync_schedule.failures,
                retry,
                extra={"event": "reconcile-retry"},
            )
        self._arm_sync()

    # -- control socket -------------------------------------------------------------------------

    def _handlers(self) -> dict[str, Handler]:
        return {
            "status": lambda _req: self.status(),
            "neighbors": lambda req: views.neighbors(self, req.get("address")),
            "tunnels": lambda _req: self.softwires.tunnels() if self.softwires else [],
            "routes": lambda _req: self.routes(),
            "sas": lambda _req: self.ipsec.sas() if self.ipsec is not None else [],
            "audit": lambda _req: self.audit(),
            "mesh": lambda _req: self.mesh(),
        }

    def status(self) -> dict[str, Any]:
        return views.status(self)

    def routes(self) -> list[dict[str, Any]]:
        return views.routes(self)

    def audit(self) -> list[dict[str, str]]:
        return views.audit(self)

    def mesh(self) -> dict[str, Any]:
        return views.mesh(self)

    def metrics(self) -> list[Metric]:
        return views.metrics(self)

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _session_config(config: AfbrConfig) -> BgpSessionConfig:
        key = local_private_key(config) if config.ipsec.enabled else None
        # RFC 5566 §4: with public keys, advertise the hash of ours in BGP.
        authenticator = public_key_authenticator(key.public_key()) if key is not None else None
        # RFC 4724: the reflectors keep our routes while ExaBGP or afbr restarts.
        return BgpSessionConfig.from_afbr_config(
            config, authenticator, graceful_restart=DEFAULT_RESTART_TIME
        )

    @staticmethod
    def _bgp_keys(config: AfbrConfig) -> KeyRing | None:
        if config.bgp.keys_file is None:
            return None
        return load_key_file(config.bgp.keys_file)

    def _fresh_socket(self, path: Path) -> Path:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return path


async def _relay_log(stream: asyncio.StreamReader, logger: logging.Logger) -> None:
    while line := await stream.readline():
        logger.info("%s", line.decode(errors="replace").rstrip())
