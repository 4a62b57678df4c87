"""ExaBGP's API process for afbr: ExaBGP JSON on stdin -> softwire RIB; commands on stdout.

Command line (stable; other tools and tests start it this way)::

    python -m afbr.bgp.exabgp_plugin --config AFBR_YAML --rib-dump FILE
        [--authenticator HEX40] [--dump-interval SECONDS] [--log-level LEVEL]

- `--config`: afbr's YAML config (afbr.config); the plugin uses its BGP part: the local client
  prefixes, the core address (next hop) and the SW-Encap set.  No keys are read.
- `--rib-dump`: where a JSON snapshot of the RIB is written, atomically (temp file + rename),
  at most every `--dump-interval` seconds (default 0.2; stretched to ten times the cost of one
  dump for large RIBs) after a change, and on exit.  Its shape::

      {"format": 1, "time": ..., "generation": N, "core_family": 6, "converged": bool,
       "neighbors_up": [...], "end_of_rib": {neighbor: ["ipv4", "ipv6"]},
       "counters": {reason: n}, "api_errors": {reason: n}, "command_acks": {"done": n},
       "advertised": {"ipv4": [prefix, ...]},
       "prefixes": {prefix: {"neighbor", "next_hop", "endpoint", "local_pref",
                             "as_path_length", "originator_id", "tunnel_encap" (hex|null),
                             "tunnel_types": [int], "tunnels": [{"type", "endpoint"}],
                             "problems": [str]}}}

- `--authenticator`: the RFC 5566 §4 IPsec Tunnel Authenticator (SHA-1 of the public key, hex)
  to attach to every advertised tunnel when IPsec is on.
- At start it writes `announce route-refresh ipv4 unicast` and `... ipv6 unicast`: a plugin
  that ExaBGP respawned gets the neighbors' routes again (ExaBGP answers `error` when no
  session is up yet, the usual case).
- SIGHUP re-reads the config and announces/withdraws the difference; SIGTERM or EOF on stdin
  writes a last dump and exits 0.  Logs go to stderr.

The work is done by `afbr.bgp.control_plane.BgpControlPlane`; this module is only the pipe
plumbing (non-blocking, so a large burst of commands never deadlocks against ExaBGP's JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import select
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import FrameType

from afbr.bgp.control_plane import BgpControlPlane
from afbr.bgp.session_config import BgpSessionConfig

_log = logging.getLogger("afbr.bgp.exabgp_plugin")
_READ_SIZE = 1 << 18
ConfigReloader = Callable[[], BgpSessionConfig | None]


def load_session_config(path: str, authenticator: bytes | None) -> BgpSessionConfig:
    from afbr.config import load_config  # noqa: PLC0415 - only the process entry point needs it

    return BgpSessionConfig.from_afbr_config(load_config(path), authenticator)


def write_dump(path: Path, chunks: Iterable[str]) -> None:
    """Write the snapshot atomically: readers see the old file or the new one."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.writelines(chunks)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class PluginLoop:
    """Select loop over ExaBGP's pipes, feeding a BgpControlPlane."""

    def __init__(
        self,
        control: BgpControlPlane,
        dump_path: Path,
        dump_interval: float,
        *,
        stdin_fd: int,
        stdout_fd: int,
        reload: ConfigReloader | None = None,
    ) -> None:
        self.control = control
        self.reload = reload
        self.dump_path = dump_path
        self.dump_interval = dump_interval
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.out = bytearray()
        self.pending = b""  # a partial line read so far
        self.dirty = True  # write a first (empty) dump promptly
        self.next_dump = 0.0
        self.stop = False
        self.reload_requested = False
        os.set_blocking(stdout_fd, False)
        # Signals wake the select through this pipe (PEP 475 would otherwise resume it).
        self.wakeup_read, wakeup_write = os.pipe()
        os.set_blocking(self.wakeup_read, False)
        os.set_blocking(wakeup_write, False)
        self.wakeup_write = wakeup_write

    def queue(self, commands: Sequence[str]) -> None:
        for command in commands:
            self.out += command.encode() + b"\n"

    def dump(self) -> None:
        started = time.monotonic()
        write_dump(self.dump_path, self.control.snapshot_json_chunks(time.time()))
        cost = time.monotonic() - started
        self.dirty = False
        # At most one dump per interval, and dumps never take more than ~10% of the time.
        self.next_dump = time.monotonic() + max(self.dump_interval, 10 * cost)

    def run(self) -> None:
        while not self.stop:
            if self.reload_requested:
                self.reload_requested = False
                config = self.reload() if self.reload is not None else None
                if config is not None:
                    self.queue(self.control.update_config(config))
            timeout = None
            if self.dirty:
                timeout = max(0.0, self.next_dump - time.monotonic())
            writers = [self.stdout_fd] if self.out else []
            try:
                readable, writable, _ = select.select(
                    [self.stdin_fd, self.wakeup_read], writers, [], timeout
                )
            except InterruptedError:
                continue
            if self.wakeup_read in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wakeup_read, 512)
            if writable:
                self._flush()
            if self.stdin_fd in readable and not self._read_input():
                break  # ExaBGP closed our stdin, or said it is shutting down
            if self.dirty and time.monotonic() >= self.next_dump:
                self.dump()
        # Stopped by a signal: what ExaBGP already wrote still counts for the last dump.
        while select.select([self.stdin_fd], [], [], 0)[0] and self._read_input():
            pass
        self._drain()
        self.dump()

    def _read_input(self) -> bool:
        """Read and process what stdin holds; False at end of input or ExaBGP's shutdown."""
        data = os.read(self.stdin_fd, _READ_SIZE)
        if not data:
            return False
        lines = (self.pending + data).split(b"\n")
        self.pending = lines.pop()
        generation = self.control.generation
        for line in lines:
            self.queue(self.control.feed_line(line))
        if generation != self.control.generation:
            self.dirty = True
        return not self.control.shutdown

    def _flush(self) -> None:
        try:
            written = os.write(self.stdout_fd, self.out)
        except BlockingIOError:
            return
        except BrokenPipeError:
            self.out.clear()
            self.stop = True
            return
        del self.out[:written]

    def _drain(self) -> None:
        deadline = time.monotonic() + 2.0
        while self.out and time.monotonic() < deadline:
            select.select([], [self.stdout_fd], [], 0.1)
            self._flush()


def config_reloader(
    path: str, authenticator: bytes | None
) -> Callable[[], BgpSessionConfig | None]:
    def reload() -> BgpSessionConfig | None:
        try:
            config = load_session_config(path, authenticator)
        except Exception as exc:
            _log.error("config reload failed, keeping the running config: %s", exc)
            return None
        _log.info("config reloaded from %s", path)
        return config

    return reload


def build_argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m afbr.bgp.exabgp_plugin",
        description="afbr's ExaBGP API process: BGP JSON in, softwire RIB dump out.",
    )
    parser.add_argument("--config", required=True, help="afbr YAML config file")
    parser.add_argument("--rib-dump", required=True, type=Path, help="RIB snapshot (JSON)")
    parser.add_argument("--authenticator", help="RFC 5566 IPsec Tunnel Authenticator, 40 hex")
    parser.add_argument("--dump-interval", type=float, default=0.2, help="seconds (0.2)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_argument_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="afbr-plugin %(levelname)s %(name)s: %(message)s",
    )
    authenticator = None
    if args.authenticator:
        try:
            authenticator = bytes.fromhex(args.authenticator)
        except ValueError:
            _log.error("--authenticator: not hex")
            return 2
    try:
        config = load_session_config(args.config, authenticator)
    except Exception as exc:
        _log.error("cannot use config %s: %s", args.config, exc)
        return 2
    stdin_fd = sys.stdin.fileno()
    fcntl.fcntl(stdin_fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
    loop = PluginLoop(
        BgpControlPlane(config),
        args.rib_dump,
        args.dump_interval,
        stdin_fd=stdin_fd,
        stdout_fd=sys.stdout.fileno(),
        reload=config_reloader(args.config, authenticator),
    )
    signal.set_wakeup_fd(loop.wakeup_write)
    loop.queue(loop.control.startup_commands())

    def on_term(signum: int, frame: FrameType | None) -> None:
        loop.stop = True

    def on_hup(signum: int, frame: FrameType | None) -> None:
        loop.reload_requested = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_hup)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
