"""ExaBGP as a lab peer: `exabgp server CONF` in a namespace with its named-pipe CLI.

Used plain (a hand-written config, e.g. to send a crafted attribute) and as the BGP half of an
afbr control plane (the config rendered by afbr.bgp.exabgp_config with afbr's API process).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from pathlib import Path

from afbr.bgp.exabgp_config import find_exabgp
from afbr.lab.daemon_base import Daemon, PeerError, write_private
from afbr.lab.netns import Host


def exabgp_binary() -> str:
    """ExaBGP from the interpreter's virtualenv (pip), else from PATH (as the daemon finds it)."""
    found = find_exabgp()
    if not os.access(found, os.X_OK):
        raise PeerError("exabgp is not installed (pip install exabgp)")
    return found


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class ExaBgp(Daemon):
    """ExaBGP (`exabgp server CONF`) with its named-pipe CLI in the work folder.

    `config` is the full ExaBGP configuration text (afbr.bgp.exabgp_config renders afbr's; a
    test may write one by hand).  The CLI's pipes live in WORKDIR/run/exabgp/ under a name
    unique to this instance (EXABGP_ROOT points ExaBGP there), so no two instances meet.
    With `cli=False` ExaBGP runs exactly as `env` says (afbr's own environment turns the CLI
    off); `start` then only checks that it stays up for a moment.
    """

    kind = "exabgp"

    def __init__(
        self,
        host: Host,
        workdir: Path,
        *,
        config: str,
        env: dict[str, str] | None = None,
        cli: bool = True,
    ) -> None:
        super().__init__(host, workdir)
        self.with_cli = cli
        self.config_body = config
        self.extra_env = dict(env or {})
        self.config = workdir / "exabgp.conf"
        self.pipename = "exabgp-" + host.name
        self.pipes = workdir / "run" / "exabgp"

    def env(self) -> dict[str, str]:
        cli = {"exabgp_api_cli": "true", "exabgp_api_pipename": self.pipename}
        return {
            "EXABGP_ROOT": str(self.workdir),
            "exabgp_api_cli": "false",
            "exabgp_daemon_user": "root",
            "exabgp_daemon_drop": "false",
            "exabgp_daemon_daemonize": "false",
            "exabgp_log_destination": "stdout",
            "exabgp_api_ack": "true",
            **self.extra_env,
            **(cli if self.with_cli else {}),
        }

    def start(self, timeout: float = 20.0) -> ExaBgp:
        write_private(self.config, self.config_body)  # it holds the MD5 keys
        if self.with_cli:
            self.pipes.mkdir(parents=True, exist_ok=True)
            for end in ("in", "out"):
                fifo = self.pipes / f"{self.pipename}.{end}"
                if not fifo.exists():
                    os.mkfifo(fifo, 0o600)
        self._spawn(exabgp_binary(), "server", str(self.config), env=self.env())
        if self.with_cli:
            self._wait(self._answers, timeout, "exabgp cli")
        else:
            time.sleep(0.3)
            if not self.running():
                raise self._failed("exited at start")
        return self

    def cli(self, *command: str, timeout: float = 10.0) -> str:
        """Run `exabgp cli COMMAND` against this instance and return its answer."""
        proc = subprocess.run(
            [exabgp_binary(), "cli", "--pipename", self.pipename, *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "EXABGP_ROOT": str(self.workdir)},
        )
        if proc.returncode != 0:
            raise self._failed(f"exabgp cli {' '.join(command)}: {proc.stdout}{proc.stderr}")
        return proc.stdout

    def _answers(self) -> bool:
        try:
            self.cli("version", timeout=5.0)
        except (PeerError, subprocess.TimeoutExpired):
            return False
        return True

    def neighbor_states(self) -> dict[str, str]:
        """`show neighbor summary`: peer address -> state (e.g. "established")."""
        result: dict[str, str] = {}
        for line in self.cli("show", "neighbor", "summary").splitlines():
            words = line.split()  # Peer AS up/down state | #sent #recvd
            if len(words) >= 4 and _is_address(words[0]):
                result[words[0]] = words[3].lower()
        return result

    def session_state(self, address: str) -> str:
        return self.neighbor_states().get(address, "unknown")

    def wait_established(self, address: str, timeout: float = 20.0) -> None:
        self._wait(
            lambda: self.session_state(address) == "established",
            timeout,
            f"session with {address} Established",
        )
