"""Test support (no tests here): afbr's IKE agent and a real strongSwan charon in namespaces.

`AfbrNode` runs afbr's dispatcher + UDP adapter + XFRM installer on an asyncio loop in a
thread of its own, with its sockets inside namespace A.  `Charon` runs strongSwan 5.9.8
(charon-systemd with kernel-netlink, a private /run through unshare -m, the minimal plugin
list that worked, incl. kdf) inside namespace B and drives it with swanctl.
Both sides are route-based: an xfrm interface per peer, wildcard selectors, if_id.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from afbr.dataplane.xfrm import IF_ID_MIN, REQID_MIN, SaState, list_sas
from afbr.dataplane.xfrm_events import XfrmEvent
from afbr.dataplane.xfrm_socket import XfrmSocket
from afbr.ipsec import IkeConfig, IkeDispatcher, IkeEvent, IkeSa
from afbr.ipsec.udp_adapter import IkeUdpAdapter
from afbr.ipsec.xfrm_adapter import PeerBinding, XfrmChildInstaller
from afbr.lab.ipsec_agent_lab import call_on_loop
from afbr.lab.netns import Host, Lab

T = TypeVar("T")
A4, B4 = "192.0.2.1", "192.0.2.2"
A6, B6 = "2001:db8::1", "2001:db8::2"
A_IN4, B_IN4 = "198.51.100.1", "203.0.113.1"
A_IN6, B_IN6 = "fd00:a::1", "fd00:b::1"
AFBR_IF_ID = IF_ID_MIN + 7
AFBR_REQID = REQID_MIN + 7
CHARON_IF_ID = 42
PSK_HEX = "0123456789abcdef0123456789abcdef"


def topology(lab: Lab) -> tuple[Host, Host]:
    a, b = lab.host("a", forwarding=True), lab.host("b", forwarding=True)
    lab.link(a, "eth0", b, "eth0")
    for host, v4, v6, in4, in6 in ((a, A4, A6, A_IN4, A_IN6), (b, B4, B6, B_IN4, B_IN6)):
        host.ip_batch(
            [
                f"addr add {v4}/24 dev eth0",
                f"addr add {v6}/64 dev eth0 nodad",
                f"addr add {in4}/32 dev lo",
                f"addr add {in6}/128 dev lo",
            ]
        )
    b.ip_batch(
        [
            f"link add xsw type xfrm dev eth0 if_id {CHARON_IF_ID}",
            "link set xsw mtu 1400 up",
            f"route add {A_IN4}/32 dev xsw",
            f"route add {A_IN6}/128 dev xsw",
        ]
    )
    return a, b


class AfbrNode:
    """afbr's IKE agent in namespace `host`, on a loop in a background thread."""

    def __init__(
        self,
        host: Host,
        local_ip: str,
        remote_ip: str,
        config: IkeConfig,
        *,
        soft_packets: int | None = None,
    ) -> None:
        self.host, self.local_ip, self.remote_ip, self.config = host, local_ip, remote_ip, config
        self.events: queue.Queue[IkeEvent] = queue.Queue()
        self.seen: list[IkeEvent] = []
        self.kernel_events: list[XfrmEvent] = []
        self.xfrm = XfrmSocket(host.name)
        binding = PeerBinding(AFBR_IF_ID, AFBR_REQID)
        self.installer = XfrmChildInstaller(
            self.xfrm, lambda ip: binding if ip == remote_ip else None, soft_packets=soft_packets
        )
        self.installer.prepare_peer(local_ip, remote_ip, underlying="eth0")
        iface = f"afx{AFBR_IF_ID & 0xFFFF:04x}"
        host.ip_batch([f"route add {B_IN4}/32 dev {iface}", f"route add {B_IN6}/128 dev {iface}"])
        self.dispatcher = IkeDispatcher(
            lambda addr: config if addr[0] == remote_ip else None, os.urandom
        )
        self.adapter = IkeUdpAdapter(
            self.dispatcher,
            [local_ip],
            on_event=[self.installer.apply, self.events.put],
            netns=host.name,
            on_xfrm_event=self._on_kernel_event,
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.adapter.start)

    def _on_kernel_event(self, event: XfrmEvent) -> None:
        """The daemon's wiring: a soft EXPIRE of a CHILD SA starts its rekey."""
        self.kernel_events.append(event)
        due = self.installer.rekey_due(event)
        if due is not None:
            self.adapter.rekey_child_of(*due)

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run `fn` on the agent's loop thread and return its result."""
        return call_on_loop(self.loop, fn, timeout)

    def connect(self) -> IkeSa:
        return self.call(
            lambda: self.adapter.connect(self.config, (self.local_ip, 500), (self.remote_ip, 500))
        )

    def drive(self, action: Callable[[IkeSa, float], None], sa: IkeSa) -> None:
        self.call(lambda: self.adapter.drive(action, sa))

    def wait_for(self, kind: type | tuple[type, ...], timeout: float = 20.0) -> Any:
        """The first event of `kind` seen so far or arriving within `timeout`."""
        for event in self.seen:
            if isinstance(event, kind):
                self.seen.remove(event)
                return event
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            if isinstance(event, kind):
                return event
            self.seen.append(event)
        seen = [type(e).__name__ for e in self.seen]
        raise AssertionError(f"no {kind} within {timeout}s (saw {seen})")

    def sas(self) -> list[SaState]:
        return list_sas(self.xfrm)

    def close(self) -> None:
        try:
            self.call(self.adapter.close)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()
            self.xfrm.close()


STRONGSWAN_CONF = """charon-systemd {{
    load = random nonce openssl pem pkcs1 pkcs8 pubkey kdf kernel-netlink socket-default vici
    install_routes = no
    retransmit_tries = 3
    retransmit_timeout = 1.0
    plugins {{
        vici {{
            socket = unix://{d}/charon.vici
        }}
    }}
    filelog {{
        log {{
            path = {d}/charon.log
            time_format = %T
            default = 1
            ike = 2
            cfg = 2
            knl = 2
            flush_line = yes
        }}
    }}
}}
"""


@dataclass
class CharonSide:
    """What strongSwan's swanctl.conf says (the afbr side must match, or must not)."""

    local_ip: str = B4
    remote_ip: str = A4
    local_auth: str = "auth = psk\n            id = b.example"
    remote_auth: str = "auth = psk\n            id = a.example"
    proposals: str = "aes128gcm16-prfsha256-ecp256"
    esp_proposals: str = "aes128gcm16"
    rekey_time: str = "0"
    over_time: str = "1h"  # hard IKE lifetime = rekey_time + over_time (default 10%: too short)
    child_rekey_time: str = "0"
    child_life_time: str = "1h"  # the kernel counts whole seconds: keep it well past rekey
    dpd_delay: str = "0"
    psk_hex: str = PSK_HEX
    encap: str = "no"
    mobike: str = "no"  # yes: charon floats to 4500 after IKE_SA_INIT even without a NAT

    def swanctl_conf(self) -> str:
        return f"""connections {{
    afbr {{
        version = 2
        local_addrs = {self.local_ip}
        remote_addrs = {self.remote_ip}
        proposals = {self.proposals}
        rekey_time = {self.rekey_time}
        over_time = {self.over_time}
        dpd_delay = {self.dpd_delay}
        encap = {self.encap}
        mobike = {self.mobike}
        local {{
            {self.local_auth}
        }}
        remote {{
            {self.remote_auth}
        }}
        children {{
            net {{
                mode = tunnel
                local_ts = 0.0.0.0/0,::/0
                remote_ts = 0.0.0.0/0,::/0
                esp_proposals = {self.esp_proposals}
                if_id_in = {CHARON_IF_ID}
                if_id_out = {CHARON_IF_ID}
                rekey_time = {self.child_rekey_time}
                life_time = {self.child_life_time}
                rand_time = 0
                start_action = none
                dpd_action = clear
            }}
        }}
    }}
}}
secrets {{
    ike-ab {{
        id-a = a.example
        id-b = b.example
        secret = 0x{self.psk_hex}
    }}
}}
"""


class Charon:
    """strongSwan's charon in namespace `host` with its own /run and configuration."""

    def __init__(self, host: Host, side: CharonSide, pem_files: dict[str, bytes]) -> None:
        self.host = host
        # not under /run: charon gets a fresh tmpfs there (TMPDIR is /run/tmp in the guest)
        self.dir = Path("/tmp") / f"afbr-charon-{host.name}"
        (self.dir / "swanctl").mkdir(parents=True, exist_ok=True)
        (self.dir / "strongswan.conf").write_text(STRONGSWAN_CONF.format(d=self.dir))
        (self.dir / "swanctl" / "swanctl.conf").write_text(side.swanctl_conf())
        for rel, data in pem_files.items():
            path = self.dir / "swanctl" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        self.env = {"STRONGSWAN_CONF": str(self.dir / "strongswan.conf")}
        (self.dir / "charon.vici").unlink(missing_ok=True)  # a previous charon's, if restarted
        script = (
            "mount --make-rprivate / && mount -t tmpfs tmpfs /run && exec /usr/sbin/charon-systemd"
        )
        self.proc = host.popen(
            "unshare", "-m", "sh", "-c", script, env=self.env, log=self.dir / "stdout.log"
        )
        deadline = time.monotonic() + 30
        while not (self.dir / "charon.vici").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out = (self.dir / "stdout.log").read_text(errors="replace")
                raise AssertionError(f"charon did not start: {out} {self.log()}")
            time.sleep(0.1)
        self.swanctl("--load-all", "--file", str(self.dir / "swanctl" / "swanctl.conf"))

    def swanctl(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        argv = ["swanctl", *args, "--uri", f"unix://{self.dir}/charon.vici"]
        proc = subprocess.run(
            self.host.argv(*argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env},
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"swanctl {args} failed: {proc.stdout}{proc.stderr}")
        return proc.stdout + proc.stderr

    def initiate(self) -> str:
        return self.swanctl("--initiate", "--child", "net", "--timeout", "20", check=False)

    def kill(self) -> None:
        self.host.stop(self.proc, 9)

    def log(self) -> str:
        path = self.dir / "charon.log"
        return path.read_text()[-6000:] if path.exists() else "(no log)"


def kernel_sas(host: Host) -> list[SaState]:
    """Every ESP SA in the namespace (strongSwan's side)."""
    with XfrmSocket(host.name) as sock:
        return list_sas(sock, only_afbr=False)


def ping(host: Host, src: str, dst: str, count: int = 3, interval: str = "0.2") -> tuple[int, int]:
    out = host.run(
        "ping", "-n", "-c", str(count), "-i", interval, "-W", "2", "-I", src, dst, check=False
    )
    match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)
