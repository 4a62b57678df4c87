"""An afbr control plane as a lab peer: ExaBGP with afbr's API plugin, in a namespace.

Exactly what the daemon runs, minus the data plane: afbr's config file (afbr.yaml, see
afbr.config) and its key files are written into the work folder, ExaBGP's configuration is
rendered by afbr.bgp.exabgp_config with the API process

    python -m afbr.bgp.exabgp_plugin --config afbr.yaml --rib-dump rib.json

and ExaBGP runs in the environment afbr gives it.  The plugin keeps the softwire RIB and writes
it as JSON to `rib.json`; the tests read that file.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from afbr.bgp.exabgp_config import exabgp_environment, render_exabgp_config
from afbr.bgp.keyfile import load_key_file
from afbr.bgp.session_config import BgpSessionConfig
from afbr.config import load_config
from afbr.lab.daemon_base import PeerError, wait_until, write_private
from afbr.lab.exabgp_peer import ExaBgp
from afbr.lab.netns import Host


class AfbrControlPlane:
    """ExaBGP + afbr's plugin in `host`.

    `config` is the content of afbr.yaml without the key file paths (this class writes
    `bgp.keys_file` from `md5_keys`, name -> secret, and `ipsec.keys_file` from `ipsec_keys`,
    peer core address -> PSK, when IPsec is on).  `authenticator` is the RFC 5566 §4 IPsec
    Tunnel Authenticator handed to the plugin (`--authenticator`); `plugin_args` go after.
    """

    def __init__(
        self,
        host: Host,
        workdir: Path,
        *,
        config: Mapping[str, Any],
        md5_keys: Mapping[str, str],
        ipsec_keys: Mapping[str, str] | None = None,
        authenticator: bytes | None = None,
        plugin_args: Sequence[str] = (),
        exabgp_env: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        self.bgp_keys = workdir / "bgp-keys.yaml"
        self.ike_keys = workdir / "ike-keys.yaml"
        self.afbr_config = workdir / "afbr.yaml"
        self.rib_dump_file = workdir / "rib.json"
        self.config = _with_key_files(config, self.bgp_keys, self.ike_keys)
        self.md5_keys = dict(md5_keys)
        self.ipsec_keys = dict(ipsec_keys or {})
        self.authenticator = authenticator
        self.plugin_args = list(plugin_args)
        self.exabgp_env = dict(exabgp_env or {})
        self.exabgp: ExaBgp | None = None

    def plugin_argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "afbr.bgp.exabgp_plugin",
            "--config",
            str(self.afbr_config),
            "--rib-dump",
            str(self.rib_dump_file),
            *(["--authenticator", self.authenticator.hex()] if self.authenticator else []),
            *self.plugin_args,
        ]

    def start(self) -> AfbrControlPlane:
        write_private(self.bgp_keys, yaml.safe_dump(self.md5_keys))
        write_private(self.ike_keys, yaml.safe_dump(self.ipsec_keys))
        write_private(self.afbr_config, yaml.safe_dump(self.config, sort_keys=False))
        session = BgpSessionConfig.from_afbr_config(load_config(self.afbr_config))
        keys = load_key_file(self.bgp_keys)
        config = render_exabgp_config(session, keys, self.plugin_argv())
        env = {**exabgp_environment(session), **self.exabgp_env}
        self.exabgp = ExaBgp(self.host, self.workdir / "exabgp", config=config, env=env, cli=False)
        self.exabgp.start()
        return self

    def plugin_pid(self, timeout: float = 10.0) -> int:
        """The plugin process: ExaBGP's child running afbr.bgp.exabgp_plugin."""
        if self.exabgp is None or self.exabgp.proc is None:
            raise PeerError("afbr control plane not started")
        root = self.exabgp.proc.pid
        found: list[int] = []

        def probe() -> bool:
            found[:] = [pid for pid in _descendants(root) if _cmdline_has(pid, b"exabgp_plugin")]
            return bool(found)

        wait_until(probe, timeout=timeout, what="the afbr plugin process under ExaBGP")
        return found[0]

    def stop(self, timeout: float = 30.0) -> None:
        """End the plugin first (it writes its last RIB dump on SIGTERM), then ExaBGP.

        Start with `exabgp_env={"exabgp_api_respawn": "false"}` when the last dump matters:
        otherwise ExaBGP restarts the plugin, whose first dump is empty.
        """
        if self.exabgp is None:
            return
        if self.exabgp.running():
            pid = self.plugin_pid()
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not _alive(pid), timeout=timeout, what="the plugin's exit")
        self.exabgp.stop()

    def running(self) -> bool:
        return self.exabgp is not None and self.exabgp.running()

    def log_tail(self, lines: int = 40) -> str:
        return self.exabgp.log_tail(lines) if self.exabgp is not None else "(not started)"

    def rib_dump(self) -> dict[str, Any]:
        """The plugin's last softwire RIB dump ({} before the first one)."""
        try:
            text = self.rib_dump_file.read_text()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return {}  # caught mid-write by a plugin that does not replace atomically
        return dict(data) if isinstance(data, dict) else {}

    def wait_dump(
        self, probe: Callable[[dict[str, Any]], bool], *, timeout: float = 20.0, what: str
    ) -> dict[str, Any]:
        """Poll the RIB dump until `probe(dump)` holds; return that dump."""
        seen: dict[str, Any] = {}

        def check() -> bool:
            nonlocal seen
            if not self.running():
                raise PeerError(f"afbr control plane exited:\n{self.log_tail()}")
            seen = self.rib_dump()
            return probe(seen)

        try:
            wait_until(check, timeout=timeout, what=what)
        except PeerError as exc:
            raise PeerError(
                f"{exc}\nlast dump: {json.dumps(seen)[:2000]}\n{self.log_tail()}"
            ) from exc
        return seen


def _with_key_files(config: Mapping[str, Any], bgp_keys: Path, ike_keys: Path) -> dict[str, Any]:
    result = dict(config)
    result["bgp"] = {**config.get("bgp", {}), "keys_file": str(bgp_keys)}
    ipsec = dict(config.get("ipsec", {}))
    if ipsec.get("enabled", True) and ipsec.get("auth", "psk") == "psk":
        ipsec["keys_file"] = str(ike_keys)
    result["ipsec"] = ipsec
    return result


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (children via /proc/PID/task/TID/children)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            found += [int(c) for c in children]
            todo += [int(c) for c in children]
    return found


def _cmdline_has(pid: int, needle: bytes) -> bool:
    try:
        return needle in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    """True while the process runs (a zombie waiting for its parent counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
