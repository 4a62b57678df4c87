"""Config validation: the example is valid; each broken key is named with its value and why."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from afbr.cli import main
from afbr.config import ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).parent.parent / "examples" / "afbr.yaml"

MINIMAL = """\
router_id: 192.0.2.1
asn: 65000
core: {family: ipv6, address: "2001:db8::a"}
clients: {prefixes: [198.51.100.0/24]}
bgp:
  keys_file: /etc/afbr/bgp-keys.yaml
  neighbors:
    - {address: "2001:db8::1", asn: 65000, md5_key: rr1}
ipsec: {keys_file: /etc/afbr/ike-keys.yaml}
"""


def test_the_annotated_example_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert config.core.family == 6
    assert config.client_family == 4
    assert [str(p) for p in config.client_prefixes] == ["198.51.100.0/24"]
    assert [n.md5_key for n in config.bgp.neighbors] == ["rr1", "rr2"]
    assert "null-sha256" in config.ipsec.esp


def test_a_minimal_config_fills_in_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config.role == "afbr"
    assert config.bgp.hold_time == 90
    assert config.bgp.neighbors[0].role == "route-reflector"
    assert config.encap.preference == ("gre", "ip-in-ip")
    assert config.ipsec.enabled
    assert config.control_socket == Path("/run/afbr/afbr.sock")


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("asn: 65000", "asn: -1", "asn: -1: must be from 1 to 4294967295"),
        ("router_id: 192.0.2.1", "router_id: 2001:db8::1", "router_id: '2001:db8::1': a BGP"),
        (
            'address: "2001:db8::a"',
            "address: 192.0.2.9",
            "core.address: '192.0.2.9': is not an IPv6",
        ),
        ("198.51.100.0/24", "198.51.100.1/24", "clients.prefixes[0]: '198.51.100.1/24': is not a"),
        ("198.51.100.0/24", "2001:db8:1::/48", "clients.prefixes[0]: '2001:db8:1::/48': client"),
        (", md5_key: rr1", "", "bgp.neighbors[0].md5_key: missing: every BGP session needs"),
        ('address: "2001:db8::1"', "address: 192.0.2.7", "bgp.neighbors[0].address: '192.0.2.7'"),
        (
            "asn: 65000\ncore",
            "asn: 65000\ncoer: 1\ncore",
            "coer: unknown key (did you mean 'core'?)",
        ),
        (
            "ipsec: {",
            "ipsec: {esp: [aes-gcm-16-128], ",
            "ipsec.esp: ['aes-gcm-16-128']: must include",
        ),
        ("ipsec: {", "encap: {preference: [gre, vxlan]}\nipsec: {", "encap.preference[1]: 'vxlan'"),
        ("ipsec: {keys_file: /etc/afbr/ike-keys.yaml}", "", "ipsec.keys_file: auth: psk needs"),
        (
            "ipsec: {",
            "encap: {preference: [gre, l2tpv3]}\nipsec: {",
            "encap.l2tpv3_session_id: missing: encap.preference has l2tpv3",
        ),
        ("asn: 65000\n", "asn: 65000\nasn: 65001\n", "asn: given twice (lines 2 and 3)"),
        (
            "md5_key: rr1}\n",
            'md5_key: rr1}\n    - {address: "2001:db8:0::1", asn: 65000, md5_key: rr1}\n',
            "bgp.neighbors[1].address: '2001:db8::1': listed twice (also bgp.neighbors[0])",
        ),
    ],
)
def test_each_problem_names_key_value_and_why(old: str, new: str, expected: str) -> None:
    assert old in MINIMAL
    problems = problems_of(MINIMAL.replace(old, new, 1))
    assert any(p.startswith(expected) for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    text = MINIMAL.replace("asn: 65000\n", "asn: x\n", 1).replace("ipv6", "ipv5")
    problems = problems_of(text)
    assert any(p.startswith("asn: 'x'") for p in problems)
    assert any(p.startswith("core.family: 'ipv5'") for p in problems)


def test_unauthenticated_neighbor_only_when_explicit_and_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = MINIMAL.replace(", md5_key: rr1", ", allow_unauthenticated: true")
    with caplog.at_level(logging.WARNING):
        config = parse_config(text)
    assert config.bgp.neighbors[0].md5_key is None
    assert "no TCP-MD5 key" in caplog.text


def test_broken_yaml_names_the_line() -> None:
    problems = problems_of("asn: [1,\nrouter_id: x\n")
    assert problems[0].startswith("line ")


def example_site(tmp_path: Path) -> Path:
    """The example config and its example key files, with /etc/afbr moved to tmp_path."""
    for name in ("bgp-keys.yaml", "ike-keys.yaml"):
        key_file = tmp_path / name
        key_file.write_text((EXAMPLE.parent / name).read_text())
        key_file.chmod(0o600)
    config = tmp_path / "afbr.yaml"
    config.write_text(EXAMPLE.read_text().replace("/etc/afbr/", f"{tmp_path}/"))
    return config


def test_config_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(example_site(tmp_path))]) == 0
    assert "valid" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL.replace("asn: 65000\n", "asn: 0\n", 1))
    assert main(["config", "check", str(bad)]) == 2
    assert "asn: 0: must be from 1 to 4294967295" in capsys.readouterr().err
    assert main(["config", "check", "--json", str(bad)]) == 2
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] is False
    assert result["problems"][0] == {
        "key": "asn",
        "value": 0,
        "why": "must be from 1 to 4294967295",
    }
    assert main(["config", "check", str(tmp_path / "absent.yaml")]) == 2
    assert "No such file" in capsys.readouterr().err
