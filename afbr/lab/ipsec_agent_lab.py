"""A lab for tests and benchmarks: the daemon's IPsec agent (afbr.daemon.ipsec_agent.IpsecAgent)
in network namespaces of the UML kernel, each on an event loop in a thread of its own, with a
real ESP softwire (xfrm interface) to its peer and a client address behind it.

`agent_topology` wires two AFBRs, A (lower core address) and B, over an IPv6 core; `AgentNode`
runs one agent, is told its needs as the daemon's reconcile would, and can be stopped and
started again (a restart of afbr).  `Pinger` pings across the softwire until stopped and says
when replies stopped and came back; `CoreCapture` counts clear-text client packets on the core.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import re
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from afbr.config import AfbrConfig, parse_config
from afbr.daemon.ipsec_agent import IpsecAgent
from afbr.dataplane.kernel_plan import xfrm_if_id
from afbr.dataplane.xfrm_iface import create_xfrm_interface, interface_name
from afbr.encap.model import IpsecMode, IpsecNeed
from afbr.ipsec import public_key_authenticator
from afbr.lab.netns import Host, Lab

T = TypeVar("T")
CORE = {"a": "2001:db8::1", "b": "2001:db8::2", "c": "2001:db8::3"}
ISLAND = {"a": "198.51.100.1", "b": "203.0.113.1", "c": "192.0.2.129"}
PSK = "pairwise key of the test mesh, 32"
TUNNEL = "afbr-esp-{peer}"  # the softwire's name on each side (the if_id follows from it)


def agent_topology(lab: Lab, names: tuple[str, ...] = ("a", "b")) -> dict[str, Host]:
    """Hosts on one core link (a bridge-less chain through a veth pair per pair of hosts is
    enough for two; three share a bridge host)."""
    hosts = {name: lab.host(name, forwarding=True) for name in names}
    if len(names) == 2:
        lab.link(hosts[names[0]], "eth0", hosts[names[1]], "eth0")
    else:
        core = lab.host("core")
        core.ip_batch(["link add br0 type bridge", "link set br0 up"])
        for name in names:
            lab.link(hosts[name], "eth0", core, f"p{name}")
            core.ip_batch([f"link set p{name} master br0"])
    for name, host in hosts.items():
        host.ip_batch(
            [f"addr add {CORE[name]}/64 dev eth0 nodad", f"addr add {ISLAND[name]}/32 dev lo"]
        )
    return hosts


def config_for(
    name: str,
    peers: tuple[str, ...],
    workdir: Path,
    psk: str = PSK,
    private_key: Path | None = None,
) -> AfbrConfig:
    workdir.mkdir(parents=True, exist_ok=True)
    keys = workdir / "ike-keys.yaml"
    keys.write_text(yaml.safe_dump({CORE[peer]: psk for peer in peers}))
    keys.chmod(0o600)
    bgp_keys = workdir / "bgp-keys.yaml"
    bgp_keys.write_text(yaml.safe_dump({"rr": "secret"}))
    bgp_keys.chmod(0o600)
    text = yaml.safe_dump(
        {
            "router_id": "192.0.2.1",
            "asn": 65000,
            "core": {"family": "ipv6", "address": CORE[name]},
            "clients": {"prefixes": [f"{ISLAND[name]}/32"]},
            "bgp": {
                "keys_file": str(bgp_keys),
                "neighbors": [{"address": "2001:db8::ff", "asn": 65000, "md5_key": "rr"}],
            },
            "ipsec": {"keys_file": str(keys), "dpd_seconds": 5}
            if private_key is None
            else {"auth": "pubkey", "private_key": str(private_key), "dpd_seconds": 5},
            "state_dir": str(workdir / "state"),
        }
    )
    return parse_config(text)


class AgentNode:
    """One AFBR's IPsec agent in `host`, keyed towards `peers`, on its own loop thread."""

    def __init__(
        self,
        host: Host,
        name: str,
        peers: tuple[str, ...],
        workdir: Path,
        *,
        private_key: Path | None = None,
        authenticators: dict[str, bytes] | None = None,
    ) -> None:
        self.host, self.name, self.peers, self.workdir = host, name, peers, workdir
        self.private_key = private_key  # auth: pubkey with this key, else the PSK
        self.authenticators = dict(authenticators or {})  # what BGP told: peer -> RFC 5566 §4
        self.needs = tuple(
            IpsecNeed(
                TUNNEL.format(peer=peer),
                ipaddress.ip_address(CORE[name]),
                ipaddress.ip_address(CORE[peer]),
                IpsecMode.TUNNEL,
            )
            for peer in peers
        )
        for need in self.needs:  # what the dataplane reconcile does for an ESP softwire
            if_id = xfrm_if_id(need.tunnel)
            create_xfrm_interface(if_id, underlying="eth0", netns=host.name)
            peer = next(p for p in peers if CORE[p] == str(need.remote))
            host.ip_batch([f"route replace {ISLAND[peer]}/32 dev {interface_name(if_id)}"])
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.agent: IpsecAgent | None = None
        self.start()

    def start(self) -> None:
        """Start the agent (as the daemon does at start-up) and give it its needs."""
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        def begin() -> None:
            config = config_for(self.name, self.peers, self.workdir, PSK, self.private_key)
            self.agent = IpsecAgent(config, netns=self.host.name)
            self.agent.start()
            self.agent.sync(self.needs, dict(self.authenticators))

        self.call(begin)

    def stop(self) -> None:
        """Stop the agent (afbr stopping): IKE state is gone, the kernel keeps the SAs."""
        if self.loop is None or self.thread is None:
            return
        try:
            if self.agent is not None:
                self.call(self.agent.close)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()
            self.loop = None
            self.agent = None

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        assert self.loop is not None
        return call_on_loop(self.loop, fn, timeout)

    def reload_with_psk(self, psk: str) -> None:
        """An operator's key rotation: new keys file, then a reload (IpsecAgent.reconfigure)."""
        assert self.agent is not None
        agent = self.agent
        config = config_for(self.name, self.peers, self.workdir, psk)
        self.call(lambda: agent.reconfigure(config))

    def reload_with_key(self, private_key: Path) -> None:
        """An operator's key rotation with public keys: new private key file, reload."""
        assert self.agent is not None
        agent = self.agent
        self.private_key = private_key
        config = config_for(self.name, self.peers, self.workdir, PSK, private_key)
        self.call(lambda: agent.reconfigure(config))

    def learn(self, authenticators: dict[str, bytes]) -> None:
        """What BGP brings: the peers' authenticators (a reconcile syncs the agent)."""
        assert self.agent is not None
        agent = self.agent
        self.authenticators.update(authenticators)
        known = dict(self.authenticators)
        self.call(lambda: agent.sync(self.needs, known))

    def summary(self) -> dict[str, Any]:
        assert self.agent is not None
        agent = self.agent
        return self.call(agent.summary)

    def sas(self) -> list[dict[str, Any]]:
        assert self.agent is not None
        agent = self.agent
        return self.call(agent.sas)


def call_on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], T], timeout: float) -> T:
    """Run `fn` on `loop` (running in another thread) and return its result here."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except Exception as exc:  # handed to the caller's thread
            future.set_exception(exc)

    loop.call_soon_threadsafe(run)
    return future.result(timeout)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `check()` held; AssertionError after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s")


def ping_once(host: Host, src: str, dst: str) -> bool:
    return host.ok("ping", "-n", "-c", "1", "-W", "1", "-I", src, dst, timeout=5)


class Pinger:
    """ping -D every `interval` from `src` to `dst` in `host` until `stop()`; then the replies
    (time, icmp_seq), from which `outage` and `lost` are read."""

    def __init__(self, host: Host, src: str, dst: str, interval: float = 0.1) -> None:
        self.interval = interval
        self.proc = subprocess.Popen(
            host.argv("ping", "-n", "-D", "-i", str(interval), "-W", "1", "-I", src, dst),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def stop(self) -> list[tuple[float, int]]:
        """(time, icmp_seq) of every reply, in order."""
        time.sleep(1.5)  # the last requests' replies
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        replies = []
        for line in out.splitlines():
            match = re.match(r"\[(\d+\.\d+)\].*icmp_seq=(\d+)", line)
            if match is not None and "bytes from" in line:
                replies.append((float(match.group(1)), int(match.group(2))))
        return replies


def lost(replies: list[tuple[float, int]]) -> list[int]:
    """Requests with no reply, among those sent before the last one answered."""
    seqs = {seq for _t, seq in replies}
    return [seq for seq in range(1, max(seqs, default=0) + 1) if seq not in seqs]


def outage(replies: list[tuple[float, int]], after: float, interval: float = 0.1) -> float:
    """Seconds from `after` until the replies came back after their longest gap since then
    (0 when no request went unanswered)."""
    assert replies, "no ping was answered at all"
    times = [t for t, _seq in replies]
    assert times[-1] > after, "the replies never came back"
    gaps = [(b - a, b) for a, b in itertools.pairwise(times) if b > after]
    worst = max(gaps, default=(0.0, after))
    return 0.0 if worst[0] <= 1.5 * interval else worst[1] - after


class CoreCapture:
    """tcpdump on a core interface: client addresses seen in an outer header are clear text."""

    def __init__(self, host: Host, interface: str, workdir: Path) -> None:
        self.file = workdir / f"core-{host.name}.pcap"
        self.proc = subprocess.Popen(
            host.argv("tcpdump", "-i", interface, "-U", "-n", "-w", str(self.file)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # tcpdump needs a moment before it captures

    def clear_text(self, host: Host) -> int:
        """Stop; the count of packets whose outer header carries a client island address."""
        time.sleep(0.5)
        self.proc.terminate()
        self.proc.wait(10)
        islands = " or ".join(f"host {address}" for address in ISLAND.values())
        out = host.run("tcpdump", "-n", "-r", str(self.file), islands, check=False)
        return len([line for line in out.splitlines() if line.strip() and "reading" not in line])


def write_key(path: Path) -> bytes:
    """A new ECDSA P-256 private key at `path` (0600); returns its RFC 5566 authenticator."""
    key = ec.generate_private_key(ec.SECP256R1())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return public_key_authenticator(key.public_key())
