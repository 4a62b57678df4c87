"""Does this kernel have what afbr's encapsulations need?  Found out by trying.

Each `Probe` creates one kernel object of the kind the data plane would (a gre / ip6gre / sit /
ip6tnl link, an L2TPv3 tunnel with an Ethernet session, an xfrm interface, an ESP SA with one
of the config's ESP proposals, an nftables table) and deletes it again, inside a network
namespace made for the purpose and deleted afterwards even when a probe fails, so nothing of
the host's own network is touched.  `/proc/config.gz` says what the kernel was built with, not
whether a module loads; asking the kernel answers both.  Everything goes through the `ip`
command (pyroute2 is kept to afbr.dataplane), whose error text is reported as the kernel's.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import FrameType

from afbr.config import ESP_PROPOSALS, AfbrConfig

# Documentation addresses only (RFC 5737, RFC 3849): nothing here ever carries a packet.
V4 = ("192.0.2.1", "192.0.2.2")
V6 = ("2001:db8::1", "2001:db8::2")
STEP_TIMEOUT = 15.0

# ESP proposal (config name) -> `ip xfrm state` algorithm arguments (RFC 4106, RFC 4868).
ESP_ALGORITHMS: dict[str, tuple[str, ...]] = {
    "aes-gcm-16-128": ("aead", "rfc4106(gcm(aes))", "0x" + "01" * 20, "128"),
    "aes-gcm-16-256": ("aead", "rfc4106(gcm(aes))", "0x" + "01" * 36, "128"),
    "aes-cbc-256-sha256": (
        *("enc", "cbc(aes)", "0x" + "01" * 32),
        *("auth-trunc", "hmac(sha256)", "0x" + "02" * 32, "128"),
    ),
    # RFC 5619 §4.4.2: integrity only
    "null-sha256": (
        *("enc", "cipher_null", ""),
        *("auth-trunc", "hmac(sha256)", "0x" + "02" * 32, "128"),
    ),
}

Step = tuple[str, ...]  # arguments of `ip -n NETNS`; ("nft", ...) runs nft in the namespace


@dataclass(frozen=True)
class Probe:
    name: str
    what: str
    steps: tuple[Step, ...]  # run in order; the first failure is the answer
    undo: tuple[Step, ...]  # run afterwards whatever happened (errors ignored)
    options: tuple[str, ...]  # the kernel config options it exercises (a hint for operators)
    basic: bool = False  # not needed by afbr: shows that probing itself works


@dataclass(frozen=True)
class ProbeResult:
    name: str
    what: str
    needed: bool
    ok: bool
    error: str  # the kernel's (or the tool's) answer when not ok
    options: tuple[str, ...]
    basic: bool = False


class ProbeError(Exception):
    """Probing is impossible here (no `ip`, no permission to make a namespace)."""


def _link(name: str, what: str, kind: str, args: Step, options: tuple[str, ...]) -> Probe:
    device = f"afbrp-{name}"[:15]
    return Probe(
        name,
        what,
        (("link", "add", device, "type", kind, *args),),
        (("link", "del", device),),
        options,
    )


def _l2tp(family: int) -> Probe:
    """An L2TPv3-over-IP socket binds and connects: both ends are put on the namespace's
    loopback first (a scratch namespace has no addresses)."""
    local, remote = V4 if family == 4 else V6
    plen = "32" if family == 4 else "128"
    module = "CONFIG_L2TP_IP" if family == 4 else "CONFIG_L2TP_IP6"
    tunnel = ("tunnel_id", "4242", "peer_tunnel_id", "4242")
    session = ("session_id", "4243", "peer_session_id", "4243")
    addresses: list[Step] = [("addr", "add", f"{a}/{plen}", "dev", "lo") for a in (local, remote)]
    if family == 6:
        addresses = [(*a, "nodad") for a in addresses]
    return Probe(
        f"l2tpv3-ipv{family}",
        f"L2TPv3 over IPv{family} with an Ethernet session (RFC 3931, RFC 4719)",
        (
            ("link", "set", "lo", "up"),
            *addresses,
            ("l2tp", "add", "tunnel", *tunnel, "encap", "ip", "local", local, "remote", remote),
            ("l2tp", "add", "session", "name", "afbrp-l2tp", "tunnel_id", "4242", *session),
        ),
        (
            ("l2tp", "del", "tunnel", "tunnel_id", "4242"),
            *(("addr", "del", f"{a}/{plen}", "dev", "lo") for a in (local, remote)),
        ),
        ("CONFIG_L2TP", "CONFIG_L2TP_V3", module, "CONFIG_L2TP_ETH"),
    )


def _esp(proposal: str, family: int) -> Probe:
    src, dst = V4 if family == 4 else V6
    esp_option = "CONFIG_INET_ESP" if family == 4 else "CONFIG_INET6_ESP"
    crypto = {
        "aes-gcm-16-128": ("CONFIG_CRYPTO_GCM", "CONFIG_CRYPTO_AES"),
        "aes-gcm-16-256": ("CONFIG_CRYPTO_GCM", "CONFIG_CRYPTO_AES"),
        "aes-cbc-256-sha256": ("CONFIG_CRYPTO_CBC", "CONFIG_CRYPTO_AES", "CONFIG_CRYPTO_SHA256"),
        "null-sha256": ("CONFIG_CRYPTO_NULL", "CONFIG_CRYPTO_SHA256"),
    }[proposal]
    state = ("src", src, "dst", dst, "proto", "esp", "spi", "0x4242")
    return Probe(
        f"esp-{proposal}-ipv{family}",
        f"an ESP SA ({proposal}, tunnel mode) over IPv{family} (RFC 4303)",
        (("xfrm", "state", "add", *state, "mode", "tunnel", *ESP_ALGORITHMS[proposal]),),
        (("xfrm", "state", "del", *state),),
        ("CONFIG_XFRM_USER", esp_option, *crypto),
    )


def all_probes() -> tuple[Probe, ...]:
    """Every probe afbr knows, basics first."""
    return (
        Probe(
            "veth",
            "a veth pair (basic: shows probing works)",
            (("link", "add", "afbrp-veth0", "type", "veth", "peer", "name", "afbrp-veth1"),),
            (("link", "del", "afbrp-veth0"),),
            ("CONFIG_VETH",),
            basic=True,
        ),
        Probe(
            "tun",
            "a TUN device (basic: shows probing works)",
            (("tuntap", "add", "mode", "tun", "name", "afbrp-tun"),),
            (("tuntap", "del", "mode", "tun", "name", "afbrp-tun"),),
            ("CONFIG_TUN",),
            basic=True,
        ),
        _link("gre", "GRE over IPv4 (RFC 2784)", "gre", _ends(4), ("CONFIG_NET_IPGRE",)),
        _link("ip6gre", "GRE over IPv6 (RFC 7676)", "ip6gre", _ends(6), ("CONFIG_IPV6_GRE",)),
        _link("sit", "IPv6 in IPv4 (RFC 4213)", "sit", _ends(4), ("CONFIG_IPV6_SIT",)),
        _link(
            "ip6tnl",
            "IPv4/IPv6 in IPv6 (RFC 2473)",
            "ip6tnl",
            ("mode", "any", *_ends(6)),
            ("CONFIG_IPV6_TUNNEL",),
        ),
        _l2tp(4),
        _l2tp(6),
        _link(
            "xfrm-interface",
            "an xfrm interface (route-based IPsec)",
            "xfrm",
            ("if_id", "4242"),
            ("CONFIG_XFRM_INTERFACE",),
        ),
        *(_esp(proposal, family) for family in (4, 6) for proposal in ESP_PROPOSALS),
        Probe(
            "nftables",
            "an nftables table (the decapsulation filter)",
            (("nft", "add", "table", "inet", "afbr_probe"),),
            (("nft", "delete", "table", "inet", "afbr_probe"),),
            ("CONFIG_NF_TABLES", "CONFIG_NF_TABLES_INET"),
        ),
    )


def _ends(family: int) -> Step:
    local, remote = V4 if family == 4 else V6
    return ("local", local, "remote", remote)


def needed_probes(config: AfbrConfig | None) -> set[str]:
    """The probes `config` needs to pass (None: everything afbr can use)."""
    probes = all_probes()
    if config is None:
        return {p.name for p in probes if not p.basic}
    if config.role != "afbr":
        return set()  # a side-car builds nothing in the kernel
    family = config.core.family
    needed = {"nftables"}
    for encap in config.encap.preference:
        if encap == "gre":
            needed.add("gre" if family == 4 else "ip6gre")
        elif encap == "ip-in-ip":
            needed.add("sit" if family == 4 else "ip6tnl")  # the clients are the other family
        elif encap == "l2tpv3":
            needed.add(f"l2tpv3-ipv{family}")
    if config.ipsec.enabled:
        needed.add("xfrm-interface")
        needed.update(f"esp-{proposal}-ipv{family}" for proposal in config.ipsec.esp)
    return needed


def run_probes(probes: Iterable[Probe], needed: set[str]) -> tuple[str, list[ProbeResult]]:
    """Run `probes` in a new network namespace, deleted afterwards whatever happens; the
    namespace's name and one result per probe.  ProbeError if no namespace can be made."""
    ip = shutil.which("ip")
    if ip is None:
        raise ProbeError("the ip command (iproute2) is not installed")
    netns = f"afbr-probe-{os.getpid()}-{secrets.token_hex(3)}"
    created = _run([ip, "netns", "add", netns])
    if created:
        raise ProbeError(f"cannot create network namespace {netns}: {created}")
    try:
        with _terminate_by_exception():
            results = [_probe(ip, netns, probe, probe.name in needed) for probe in probes]
    finally:
        _run([ip, "netns", "del", netns])
    return netns, results


@contextlib.contextmanager
def _terminate_by_exception() -> Iterator[None]:
    """SIGTERM/SIGHUP raise SystemExit meanwhile, so the namespace is deleted on the way out
    (Ctrl-C already raises KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _probe(ip: str, netns: str, probe: Probe, needed: bool) -> ProbeResult:
    error = ""
    try:
        for step in probe.steps:
            error = _run(_argv(ip, netns, step))
            if error:
                break
    finally:
        for step in probe.undo:
            _run(_argv(ip, netns, step))
    return ProbeResult(probe.name, probe.what, needed, not error, error, probe.options, probe.basic)


def _argv(ip: str, netns: str, step: Step) -> list[str]:
    if step[0] == "nft":
        return [ip, "netns", "exec", netns, *step]
    return [ip, "-n", netns, *step]


def _run(argv: list[str]) -> str:
    """'' on success, else what the command said (or why it could not run)."""
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False
        )
    except FileNotFoundError:
        return f"{argv[0]}: not installed"
    except subprocess.TimeoutExpired:
        return f"no answer in {STEP_TIMEOUT:.0f} s"
    if proc.returncode == 0:
        return ""
    said = " ".join((proc.stderr or proc.stdout).split())
    return said or f"exit status {proc.returncode}"
