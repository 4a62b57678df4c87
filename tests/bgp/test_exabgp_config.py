"""ExaBGP's config rendered from afbr's: neighbors, families, RFC 8950 capability, TCP-MD5,
RFC 5565 §13.3 refusal of unauthenticated neighbors, private files, no keys in logs/argv.

Every rendered text here is also accepted by ExaBGP 5.0.15 itself (`exabgp validate`), and
tests/bgp/test_exabgp_interop.py runs such configs with real sessions.
"""

from __future__ import annotations

import base64
import logging
import stat
import subprocess
import sys
from ipaddress import IPv4Address, ip_address, ip_network
from pathlib import Path

import pytest

from afbr.bgp.exabgp_config import (
    check_authentication,
    exabgp_argv,
    exabgp_environment,
    find_exabgp,
    render_exabgp_config,
    write_exabgp_config,
)
from afbr.bgp.keyfile import KeyRing
from afbr.bgp.session_config import (
    BgpSessionConfig,
    NeighborConfig,
    NeighborRole,
    SessionConfigError,
    SwEncap,
    SwEncapKind,
)
from afbr.config import parse_config

SECRET = "s0ftw1re md5;{key}"  # spaces, ';' and braces: must survive ExaBGP's tokeniser
KEYS = KeyRing.from_values({"rr1": SECRET, "rr2": "abcdef0123", "peer": "x"})
PLUGIN = [sys.executable, "-m", "afbr.bgp.exabgp_plugin", "--config", "/etc/afbr/afbr.yaml"]
PLUGIN += ["--rib-dump", "/run/afbr/rib.json"]


def _config(core: str = "2001:db8::a", **neighbor: object) -> BgpSessionConfig:
    rr1 = NeighborConfig(ip_address("2001:db8::1"), 65000, md5_key="rr1")
    rr2 = NeighborConfig(ip_address("2001:db8::2"), 65000, md5_key="rr2", hold_time=30)
    neighbors = (rr1, rr2)
    if neighbor:
        neighbors = (NeighborConfig(**neighbor),)  # type: ignore[arg-type]
    return BgpSessionConfig(
        local_as=65000,
        router_id=IPv4Address("192.0.2.1"),
        core_address=ip_address(core),
        neighbors=neighbors,
        client_prefixes=(ip_network("198.51.100.0/24"),),
        sw_encap=(SwEncap(SwEncapKind.GRE, gre_key=7),),
    )


def _block(text: str, neighbor: str) -> str:
    start = text.index(f"neighbor {neighbor} {{")
    return text[start : text.index("\n}\n", start)]


def test_ipv6_core_neighbors_families_and_extended_next_hop() -> None:
    text = render_exabgp_config(_config(), KEYS, PLUGIN)
    block = _block(text, "2001:db8::1")
    for line in (
        "router-id 192.0.2.1;",
        "local-address 2001:db8::a;",
        "local-as 65000;",
        "peer-as 65000;",
        "hold-time 90;",
        "nexthop true;",  # RFC 8950 capability
        "ipv4 unicast;",
        "ipv6 unicast;",  # always: ExaBGP 5.0.15 drops the nexthop capability without it
        "ipv4 unicast ipv6;",
        "processes [ afbr ];",
        "neighbor-changes;",
        "parsed;",
        "refresh;",
    ):
        assert line in block, line
    assert "hold-time 30;" in _block(text, "2001:db8::2")
    assert f"run {' '.join(PLUGIN)};" in text and "encoder json;" in text


def test_md5_keys_are_written_base64_so_any_key_reads_back_exactly() -> None:
    text = render_exabgp_config(_config(), KEYS, PLUGIN)
    encoded = base64.b64encode(SECRET.encode()).decode()
    assert f'md5-password "{encoded}";' in _block(text, "2001:db8::1")
    assert "md5-base64 true;" in _block(text, "2001:db8::1")
    assert SECRET not in text
    # A hex-looking key would be read as unpadded base64 by ExaBGP's default: not ours.
    encoded2 = base64.b64encode(b"abcdef0123").decode()
    assert f'md5-password "{encoded2}";' in _block(text, "2001:db8::2")


def test_ipv4_core_has_no_extended_next_hop() -> None:
    config = _config("192.0.2.10", address=ip_address("192.0.2.1"), peer_as=65000, md5_key="peer")
    text = render_exabgp_config(config, KEYS, PLUGIN)
    assert "nexthop" not in text
    assert "ipv4 unicast;" in text and "ipv6 unicast;" in text
    assert "local-address 192.0.2.10;" in text


def test_neighbor_without_key_is_refused() -> None:
    config = _config(address=ip_address("2001:db8::1"), peer_as=65000)
    with pytest.raises(SessionConfigError, match=r"RFC 5565 §13\.3"):
        render_exabgp_config(config, KEYS, PLUGIN)


def test_explicitly_unauthenticated_neighbor_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = _config(
        address=ip_address("2001:db8::1"),
        peer_as=65000,
        allow_unauthenticated=True,
        role=NeighborRole.PEER,
    )
    with caplog.at_level(logging.WARNING):
        text = render_exabgp_config(config, KEYS, PLUGIN)
    assert "md5" not in text
    assert "without TCP-MD5" in caplog.text and "2001:db8::1" in caplog.text


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        (None, "no key file"),
        (KeyRing.from_values({"other": "x"}), "no key named 'rr1'"),
        (KeyRing.from_values({"rr1": "k" * 81, "rr2": "x"}), "longer than 80"),
    ],
)
def test_missing_or_unusable_keys_are_refused(keys: KeyRing | None, problem: str) -> None:
    with pytest.raises(SessionConfigError, match=problem):
        check_authentication(_config(), keys)


@pytest.mark.parametrize(
    "argv",
    [["python", "-m", "x"], ["/usr/bin/python3", "a b"], ["/usr/bin/python3", "x;y"], []],
)
def test_process_argv_must_be_safe_for_exabgp(argv: list[str]) -> None:
    with pytest.raises(SessionConfigError):
        render_exabgp_config(_config(), KEYS, argv)


def test_written_private_and_keys_not_logged_nor_on_argv(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "exabgp"
    with caplog.at_level(logging.DEBUG):
        path = write_exabgp_config(directory, _config(), KEYS, PLUGIN)
        path = write_exabgp_config(directory, _config(), KEYS, PLUGIN)  # rewrite in place
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert sorted(p.name for p in directory.iterdir()) == ["exabgp.conf"]
    encoded = base64.b64encode(SECRET.encode()).decode()
    assert encoded in path.read_text()
    assert SECRET not in caplog.text and encoded not in caplog.text
    argv = exabgp_argv("/usr/bin/exabgp", path)
    assert argv == ["/usr/bin/exabgp", "server", str(path)]
    env = exabgp_environment(_config())
    assert not any(SECRET in v or encoded in v for v in [*argv, *env.values()])


def test_environment_names_are_exabgp_5_names() -> None:
    env = exabgp_environment(_config())
    assert env["exabgp_api_cli"] == "false"
    assert env["exabgp_daemon_user"] == "root" and env["exabgp_daemon_drop"] == "false"
    assert env["exabgp_tcp_bind"] == "2001:db8::a"
    assert "exabgp_daemon_user" not in exabgp_environment(_config(), as_root=False)


def test_from_afbr_config() -> None:
    afbr = parse_config(
        """\
router_id: 192.0.2.1
asn: 65000
core: {family: ipv6, address: "2001:db8::a"}
clients: {prefixes: [198.51.100.0/24, 203.0.113.0/24]}
bgp:
  keys_file: /etc/afbr/bgp-keys.yaml
  neighbors:
    - {address: "2001:db8::1", asn: 65000, md5_key: rr1}
    - {address: "2001:db8::2", asn: 65001, role: peer, md5_key: rr2, hold_time: 30}
encap: {preference: [l2tpv3, gre], gre_key: 9, l2tpv3_session_id: 5, l2tpv3_cookie: "0x01020304"}
ipsec: {enabled: true, keys_file: /etc/afbr/ike-keys.yaml}
"""
    )
    session = BgpSessionConfig.from_afbr_config(afbr, ipsec_authenticator=bytes(range(20)))
    assert session.core_family == 6 and session.local_as == 65000
    assert [n.role for n in session.neighbors] == [NeighborRole.ROUTE_REFLECTOR, NeighborRole.PEER]
    assert session.neighbors[1].hold_time == 30 and session.neighbors[1].peer_as == 65001
    assert [e.kind for e in session.sw_encap] == [
        SwEncapKind.IPSEC_TUNNEL,  # IPsec on: ESP tunnel mode leads (DESIGN.md)
        SwEncapKind.L2TPV3,
        SwEncapKind.GRE,
    ]
    assert session.sw_encap[1].l2tpv3_cookie == bytes.fromhex("01020304")
    assert session.sw_encap[2].gre_key == 9
    assert session.ipsec_authenticator == bytes(range(20))
    assert session.key_file == Path("/etc/afbr/bgp-keys.yaml")


@pytest.mark.parametrize("core", ["2001:db8::a", "192.0.2.10"])
def test_exabgp_itself_accepts_the_rendered_config(tmp_path: Path, core: str) -> None:
    peer = "2001:db8::1" if ":" in core else "192.0.2.1"
    config = _config(core, address=ip_address(peer), peer_as=65000, md5_key="rr1")
    path = write_exabgp_config(tmp_path / "x", config, KEYS, ["/bin/cat"])
    exabgp = Path(sys.executable).with_name("exabgp")
    proc = subprocess.run(
        [str(exabgp), "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"exabgp_api_cli": "false", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_exabgp_is_looked_up_beside_the_interpreter_then_on_path(tmp_path: Path) -> None:
    venv, elsewhere = tmp_path / "venv" / "bin", tmp_path / "elsewhere"
    venv.mkdir(parents=True)
    elsewhere.mkdir()
    python = venv / "python"
    on_path = elsewhere / "exabgp"
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    assert find_exabgp(str(python), path=str(elsewhere)) == str(on_path)
    beside = venv / "exabgp"
    beside.write_text("#!/bin/sh\n")
    assert find_exabgp(str(python), path=str(elsewhere)) == str(on_path)  # not executable
    beside.chmod(0o755)
    assert find_exabgp(str(python), path=str(elsewhere)) == str(beside)
    # found nowhere: the place beside the interpreter, which the supervisor names failing
    assert find_exabgp(str(tmp_path / "python"), path=str(venv.parent)) == str(tmp_path / "exabgp")
