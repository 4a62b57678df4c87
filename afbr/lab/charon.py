"""strongSwan's charon (5.9) as a lab peer: one IKE daemon per namespace, driven by swanctl.

Each instance gets its own strongswan.conf (an explicit plugin list, no /etc/strongswan.d
includes) and its own vici socket in the work folder (`swanctl --uri unix://...`).  The binary
is charon-systemd (Debian's `charon-systemd`, what afbr's setup installs), which keeps nothing
in /run; the classic /usr/lib/ipsec/charon hard-codes /var/run/charon.pid, so it runs under
`unshare -m` with a folder of its own bind-mounted over /run (then the work folder must not be
under /run, as it is inside the UML guest, where /tmp lives in /run).  On a kernel without
ESP (this project's hosts) the `kernel-libipsec` plugin does ESP in user space over TUN, inside
UDP only; inside the UML kernel `kernel-netlink` installs real kernel SAs.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from afbr.lab.daemon_base import write_private
from afbr.lab.netns import Host

CHARON_SYSTEMD = "/usr/sbin/charon-systemd"
CHARON_CLASSIC = "/usr/lib/ipsec/charon"  # needs a private /run (its pid file)

# The smallest plugin set that does IKEv2 with PSK or raw public keys; `kdf` is required by
# 5.9.8's PRF+ (without it no IKE SA gets keys).
BASE_PLUGINS = (
    "random",
    "nonce",
    "openssl",
    "pem",
    "pkcs1",
    "pkcs8",
    "pubkey",
    "x509",
    "gcm",
    "aes",
    "sha2",
    "hmac",
    "kdf",
)


class CharonError(RuntimeError):
    """charon failed to start or swanctl failed; the message carries the tail of its log."""


def charon_binary() -> str:
    for path in (CHARON_SYSTEMD, CHARON_CLASSIC):
        if Path(path).exists():
            return path
    raise CharonError("no charon binary (install charon-systemd)")


def charon_argv(binary: str, run_dir: Path) -> list[str]:
    """The command that starts `binary`; the classic charon gets `run_dir` as its /run."""
    if binary != CHARON_CLASSIC:
        return [binary]
    if run_dir.resolve().is_relative_to("/run"):
        raise CharonError(f"{binary} needs a private /run: put its work folder outside /run")
    private_run = 'mount --make-rprivate / && mount --bind "$0" /run && exec "$1"'
    return ["unshare", "-m", "sh", "-c", private_run, str(run_dir), binary]


class Charon:
    """One charon in `host`, its files in `workdir`, configured by `swanctl_conf` text."""

    def __init__(
        self,
        host: Host,
        workdir: Path,
        *,
        swanctl_conf: str = "",
        userspace_esp: bool = True,
        ike_port: int = 500,
        nat_t_port: int = 4500,
    ) -> None:
        self.host = host
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.swanctl_conf = swanctl_conf
        self.userspace_esp = userspace_esp
        self.ike_port = ike_port
        self.nat_t_port = nat_t_port
        self.run_dir = workdir / "run"
        self.socket = workdir / "charon.vici"
        self.config = workdir / "strongswan.conf"
        self.swanctl_file = workdir / "swanctl.conf"
        self.log = workdir / "charon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"unix://{self.socket}"

    def strongswan_conf(self) -> str:
        kernel = (
            ("kernel-libipsec", "kernel-netlink") if self.userspace_esp else ("kernel-netlink",)
        )
        plugins = " ".join((*BASE_PLUGINS, *kernel, "socket-default", "vici"))
        return f"""charon {{
    load = {plugins}
    port = {self.ike_port}
    port_nat_t = {self.nat_t_port}
    retransmit_tries = 2
    retransmit_timeout = 1.0
    install_routes = yes
    plugins {{
        vici {{
            socket = {self.uri}
        }}
    }}
    filelog {{
        stderr {{
            time_format = %T
            default = 1
            ike = 2
            cfg = 2
            flush_line = yes
        }}
    }}
}}
"""

    def log_tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def _failed(self, message: str) -> CharonError:
        return CharonError(f"charon in {self.host.name}: {message}\n{self.log_tail()}")

    def start(self, timeout: float = 15.0) -> Charon:
        """Start charon, wait until `swanctl --stats` answers, load the swanctl config."""
        self.config.write_text(self.strongswan_conf())
        write_private(self.swanctl_file, self.swanctl_conf)  # it holds the PSKs
        self.run_dir.mkdir(exist_ok=True)
        self.proc = self.host.popen(
            *charon_argv(charon_binary(), self.run_dir),
            log=self.log,
            env={"STRONGSWAN_CONF": str(self.config)},
        )
        deadline = time.monotonic() + timeout
        while not (self.socket.exists() and self._answers()):
            if self.proc.poll() is not None:
                raise self._failed(f"exited with status {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise self._failed(f"vici socket did not answer within {timeout}s")
            time.sleep(0.2)
        if self.swanctl_conf:
            self.swanctl("--load-all", "--noprompt", "--file", str(self.swanctl_file))
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.host.stop(self.proc)
            self.proc = None

    def _answers(self) -> bool:
        return self.host.ok("swanctl", "--stats", "--uri", self.uri, timeout=5.0)

    def swanctl(self, *args: str, timeout: float = 30.0, check: bool = True) -> str:
        """Run `swanctl ARGS --uri unix://SOCKET` in the namespace; return its output."""
        proc = subprocess.run(
            self.host.argv("swanctl", *args, "--uri", self.uri),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise self._failed(f"swanctl {' '.join(args)} exited {proc.returncode}: {proc.stdout}")
        return proc.stdout

    def stats(self) -> dict[str, str]:
        """`swanctl --stats` as key -> value lines (uptime, worker threads, IKE_SAs, ...)."""
        result: dict[str, str] = {}
        for line in self.swanctl("--stats").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                result[key.strip()] = value.strip()
        return result

    def initiate(self, ike: str, child: str | None = None, timeout: float = 20.0) -> str:
        args = ["--initiate", "--ike", ike, "--timeout", str(int(timeout))]
        if child is not None:
            args += ["--child", child]
        return self.swanctl(*args, timeout=timeout + 5)

    def ike_sa_state(self, ike: str) -> str:
        """The state of the IKE SA named `ike` ("ESTABLISHED", "CONNECTING", ...), or "none"."""
        text = self.swanctl("--list-sas", "--ike", ike)
        found = re.search(rf"^{re.escape(ike)}: #\d+, (\w+),", text, re.MULTILINE)
        return found.group(1) if found else "none"

    def child_sa_states(self, ike: str) -> dict[str, str]:
        """CHILD SA name -> state ("INSTALLED", ...) under the IKE SA named `ike`."""
        text = self.swanctl("--list-sas", "--ike", ike)
        return dict(re.findall(r"^\s+(\S+): #\d+, reqid \d+, (\w+),", text, re.MULTILINE))
