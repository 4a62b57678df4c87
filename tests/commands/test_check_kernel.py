"""`afbr check-kernel` says what this kernel can do by trying it in a scratch namespace; what it
says must agree with the options the kernel was built with (/proc/config.gz), where that file
exists.  On the host kernel of the test machines (no GRE, no ESP) those are reported missing,
veth and TUN ok; inside the UML test kernel everything is there."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from afbr.cli import main
from afbr.commands.kernel_probe import all_probes, needed_probes
from afbr.config import parse_config

pytestmark = pytest.mark.netns  # creating a network namespace needs root

# What each probe needs the kernel to have been built with (independent of the probe module's
# own hints): all of them built in => the probe must pass; one of them absent => it must fail.
# A module (=m) may or may not load in this environment, so it decides nothing.
_ESP_CRYPTO = {
    "aes-gcm-16-128": ("CONFIG_CRYPTO_GCM", "CONFIG_CRYPTO_AES"),
    "aes-gcm-16-256": ("CONFIG_CRYPTO_GCM", "CONFIG_CRYPTO_AES"),
    "aes-cbc-256-sha256": ("CONFIG_CRYPTO_CBC", "CONFIG_CRYPTO_AES", "CONFIG_CRYPTO_HMAC"),
    "null-sha256": ("CONFIG_CRYPTO_NULL", "CONFIG_CRYPTO_HMAC"),
}
OPTIONS: dict[str, tuple[str, ...]] = {
    "veth": ("CONFIG_VETH",),
    "tun": ("CONFIG_TUN",),
    "gre": ("CONFIG_NET_IPGRE",),
    "ip6gre": ("CONFIG_IPV6_GRE",),
    "sit": ("CONFIG_IPV6_SIT",),
    "ip6tnl": ("CONFIG_IPV6_TUNNEL",),
    "l2tpv3-ipv4": ("CONFIG_L2TP", "CONFIG_L2TP_V3", "CONFIG_L2TP_IP", "CONFIG_L2TP_ETH"),
    "l2tpv3-ipv6": ("CONFIG_L2TP", "CONFIG_L2TP_V3", "CONFIG_L2TP_IP6", "CONFIG_L2TP_ETH"),
    "xfrm-interface": ("CONFIG_XFRM_INTERFACE",),
    "nftables": ("CONFIG_NF_TABLES", "CONFIG_NF_TABLES_INET"),
}
for _name, _crypto in _ESP_CRYPTO.items():
    OPTIONS[f"esp-{_name}-ipv4"] = ("CONFIG_XFRM_USER", "CONFIG_INET_ESP", *_crypto)
    OPTIONS[f"esp-{_name}-ipv6"] = ("CONFIG_XFRM_USER", "CONFIG_INET6_ESP", *_crypto)


def kernel_config() -> dict[str, str] | None:
    path = Path("/proc/config.gz")
    if not path.exists():
        return None
    values: dict[str, str] = {}
    for line in gzip.decompress(path.read_bytes()).decode().splitlines():
        name, sep, value = line.partition("=")
        if sep and name.startswith("CONFIG_"):
            values[name] = value
    return values


def expected(name: str, config: dict[str, str]) -> bool | None:
    values = [config.get(option) for option in OPTIONS[name]]
    if all(value == "y" for value in values):
        return True
    if any(value is None for value in values):
        return False
    return None


def probe_json(*args: str) -> tuple[int, dict[str, object]]:
    proc = subprocess.run(
        [sys.executable, "-m", "afbr", "check-kernel", "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def test_every_probe_has_an_expectation() -> None:
    assert {p.name for p in all_probes()} == set(OPTIONS)


def test_the_probes_agree_with_the_kernel_config() -> None:
    before = netns_names()
    status, report = probe_json()
    probes = {p["name"]: p for p in report["probes"]}  # type: ignore[attr-defined]
    assert set(probes) == set(OPTIONS)
    assert probes["veth"]["ok"] and probes["tun"]["ok"], probes  # probing works at all
    config = kernel_config()
    if config is not None:
        for name, probe in probes.items():
            want = expected(name, config)
            if want is not None:
                assert probe["ok"] is want, (name, probe)
            if not probe["ok"]:
                assert probe["error"], probe  # the kernel's own words
    missing = [name for name, probe in probes.items() if probe["needed"] and not probe["ok"]]
    assert report["missing"] == missing
    assert status == (1 if missing else 0)
    assert str(report["netns"]).startswith("afbr-probe-")
    assert netns_names() == before  # its scratch namespace is gone


def test_a_config_counts_only_what_it_needs(tmp_path: Path) -> None:
    text = """\
router_id: 192.0.2.1
asn: 65000
core: {family: ipv6, address: "2001:db8::a"}
clients: {prefixes: [198.51.100.0/24]}
bgp: {neighbors: [{address: "2001:db8::1", asn: 65000, allow_unauthenticated: true}]}
encap: {preference: [gre]}
ipsec: {enabled: false}
"""
    config = tmp_path / "afbr.yaml"
    config.write_text(text)
    assert needed_probes(parse_config(text)) == {"ip6gre", "nftables"}
    status, report = probe_json("-c", str(config))
    probes = {p["name"]: p for p in report["probes"]}  # type: ignore[attr-defined]
    assert set(probes) == {"veth", "tun", "ip6gre", "nftables"}
    assert [n for n, p in probes.items() if p["needed"]] == ["ip6gre", "nftables"]
    ok = probes["ip6gre"]["ok"] and probes["nftables"]["ok"]
    assert status == (0 if ok else 1)


def test_needs_follow_the_config() -> None:
    base = """\
router_id: 192.0.2.1
asn: 65000
core: {family: ipv4, address: "192.0.2.10"}
clients: {prefixes: ["2001:db8:1::/48"]}
bgp: {neighbors: [{address: "192.0.2.1", asn: 65000, allow_unauthenticated: true}]}
encap: {preference: [ip-in-ip, l2tpv3], l2tpv3_session_id: 7}
ipsec: {keys_file: /k, esp: [null-sha256]}
"""
    assert needed_probes(parse_config(base)) == {
        "sit",
        "l2tpv3-ipv4",
        "nftables",
        "xfrm-interface",
        "esp-null-sha256-ipv4",
    }
    assert needed_probes(parse_config(base.replace("router_id", "role: sidecar\nrouter_id"))) == (
        set()
    )


def test_a_bad_config_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("asn: 0\n")
    assert main(["check-kernel", "-c", str(bad)]) == 2
    assert "asn: 0: must be from 1 to 4294967295" in capsys.readouterr().err


@pytest.mark.kernel
def test_the_tunnel_kernel_has_everything_afbr_can_use() -> None:
    """Inside the UML test kernel (or on a host with every option) nothing is missing."""
    status, report = probe_json()
    assert status == 0, [p for p in report["probes"] if not p["ok"]]  # type: ignore[attr-defined]
