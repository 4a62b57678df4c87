"""`afbr config check` is a dry run of `afbr run`'s start-up, and `afbr run` refuses the same
things with a message (file, key, why) and exit status 2, never a traceback.

Each case here was accepted by `config check` before and then crashed `afbr run`, or (duplicate
YAML keys, duplicate neighbors) was silently accepted with the last one winning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from afbr.bgp.exabgp_config import find_exabgp
from afbr.cli import main
from afbr.ipsec import public_key_authenticator

CONFIG = """\
router_id: 192.0.2.1
asn: 65000
core: {{family: ipv6, address: "2001:db8::a"}}
clients: {{prefixes: [198.51.100.0/24]}}
bgp:
  keys_file: {dir}/bgp-keys.yaml
  neighbors:
    - {{address: "2001:db8::1", asn: 65000, md5_key: rr1}}
encap: {{preference: [gre, ip-in-ip]}}
ipsec: {{keys_file: {dir}/ike-keys.yaml}}
state_dir: {dir}/state
control_socket: {dir}/afbr.sock
"""


class Site:
    """A config and its key files in a temporary directory, valid until a test breaks one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "afbr.yaml"
        self.bgp_keys = root / "bgp-keys.yaml"
        self.ike_keys = root / "ike-keys.yaml"
        self.text = CONFIG.format(dir=root)
        self.write()
        self.bgp_keys.write_text('rr1: "md5-secret-rr1"\n')
        self.bgp_keys.chmod(0o600)
        self.ike_keys.write_text('"2001:db8::b": "psk-a-b"\n')
        self.ike_keys.chmod(0o600)

    def write(self) -> None:
        self.config.write_text(self.text)

    def replace(self, old: str, new: str) -> None:
        assert old in self.text, old
        self.text = self.text.replace(old, new, 1)
        self.write()

    def use_private_key(self) -> Path:
        key = ec.generate_private_key(ec.SECP256R1())
        path = self.root / "ike.key"
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
        self.replace(
            f"ipsec: {{keys_file: {self.root}/ike-keys.yaml}}",
            f"ipsec: {{auth: pubkey, private_key: {path}}}",
        )
        return path


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def check(site: Site, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    # ExaBGP is found beside this Python (pip installed it with afbr) or on PATH.
    status = main(["config", "check", str(site.config)])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def problems(site: Site, capsys: pytest.CaptureFixture[str]) -> list[str]:
    status, output = check(site, capsys)
    assert status == 2, output
    assert output.startswith(f"afbr: {site.config}: "), output
    return [line.strip() for line in output.splitlines()[1:]]


def test_a_complete_site_is_valid(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    status, output = check(site, capsys)
    assert status == 0, output
    assert f"{site.config}: valid" in output
    assert f"exabgp: {find_exabgp()}" in output


def test_keys_file_readable_by_others(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.bgp_keys.chmod(0o644)
    assert problems(site, capsys) == [
        f"bgp.keys_file: '{site.bgp_keys}': mode 0644 lets group/others access it; keys must be "
        f"readable by their owner only (chmod 600 {site.bgp_keys})"
    ]


def test_keys_file_missing(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.bgp_keys.unlink()
    assert problems(site, capsys) == [
        f"bgp.keys_file: '{site.bgp_keys}': cannot open: No such file or directory"
    ]


def test_keys_file_symlink(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    real = site.root / "real-keys.yaml"
    site.bgp_keys.rename(real)
    site.bgp_keys.symlink_to(real)
    [problem] = problems(site, capsys)
    assert problem.startswith(f"bgp.keys_file: '{site.bgp_keys}': is a symbolic link")


@pytest.mark.netns  # needs root: giving a file away
def test_keys_file_owned_by_someone_else(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    os.chown(site.ike_keys, 65534, 65534)
    [problem] = problems(site, capsys)
    assert problem.startswith(f"ipsec.keys_file: '{site.ike_keys}': owned by uid 65534")


def test_md5_key_not_in_the_keys_file(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.replace("md5_key: rr1", "md5_key: rr9")
    assert problems(site, capsys) == [
        f"bgp.neighbors[0].md5_key: 'rr9': no key of that name in {site.bgp_keys} (it has rr1)"
    ]


def test_duplicate_key_in_a_keys_file(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.bgp_keys.write_text('rr1: "one"\nrr1: "two"\n')
    assert problems(site, capsys) == [
        f"bgp.keys_file: '{site.bgp_keys}': key 'rr1' given twice (lines 1 and 2); remove one"
    ]


def test_l2tpv3_without_a_session_id(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.replace("preference: [gre, ip-in-ip]", "preference: [l2tpv3, gre]")
    [problem] = problems(site, capsys)
    assert problem.startswith("encap.l2tpv3_session_id: missing: encap.preference has l2tpv3")


def test_duplicate_yaml_key(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.replace("asn: 65000\n", "asn: 65000\nasn: 65001\n")
    assert problems(site, capsys) == [
        "asn: given twice (lines 2 and 3); remove one (YAML would silently keep only the last)"
    ]


def test_duplicate_nested_yaml_key(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.replace("bgp:\n", "bgp:\n  keys_file: /elsewhere/keys.yaml\n")
    [problem] = problems(site, capsys)
    assert problem.startswith("bgp.keys_file: given twice (lines 6 and 7)")


def test_duplicate_neighbor(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    neighbor = '    - {address: "2001:db8::1", asn: 65000, md5_key: rr1}\n'
    site.replace(neighbor, neighbor + neighbor.replace("::1", "::0:1"))
    assert problems(site, capsys) == [
        "bgp.neighbors[1].address: '2001:db8::1': listed twice (also bgp.neighbors[0])"
    ]


def test_psk_named_in_a_form_the_agent_never_looks_up(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    site.ike_keys.write_text('"2001:DB8:0::B": "psk"\nmesh: "group"\n')
    assert problems(site, capsys) == [
        f"ipsec.keys_file: '{site.ike_keys}: 2001:DB8:0::B': the IPsec agent looks this peer's "
        "key up as '2001:db8::b': rename it",
        f"ipsec.keys_file: '{site.ike_keys}: mesh': key name is not a remote AFBR's core "
        "address, so it is never used ('mesh' is used only with group_psk: true)",
    ]


def test_group_psk_needs_the_mesh_key(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.replace("ipsec: {", "ipsec: {group_psk: true, ")
    assert problems(site, capsys) == [
        f"ipsec.keys_file: '{site.ike_keys}': group_psk is set but it has no key named 'mesh'"
    ]


def test_private_key_is_checked_and_its_authenticator_printed(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    path = site.use_private_key()
    status, output = check(site, capsys)
    assert status == 0, output
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    expected = public_key_authenticator(key.public_key()).hex()
    assert f"ipsec authenticator (RFC 5566, SHA-1 of the public key): {expected}" in output
    main(["config", "check", "--json", str(site.config)])
    assert json.loads(capsys.readouterr().out)["authenticator"] == expected


def test_private_key_missing(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    path = site.use_private_key()
    path.unlink()
    assert problems(site, capsys) == [
        f"ipsec.private_key: '{path}': cannot open: No such file or directory"
    ]


def test_private_key_readable_by_others(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    path = site.use_private_key()
    path.chmod(0o640)
    [problem] = problems(site, capsys)
    assert problem.startswith(f"ipsec.private_key: '{path}': mode 0640 lets group/others")


def test_private_key_symlink(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    path = site.use_private_key()
    real = path.with_name("real.key")
    path.rename(real)
    path.symlink_to(real)
    [problem] = problems(site, capsys)
    assert problem.startswith(f"ipsec.private_key: '{path}': is a symbolic link")


def test_private_key_not_a_key(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    path = site.use_private_key()
    path.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    [problem] = problems(site, capsys)
    assert problem.startswith(f"ipsec.private_key: '{path}': not a PEM private key")


def test_private_key_of_a_kind_ike_cannot_sign_with(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    path = site.use_private_key()
    path.write_bytes(
        x25519.X25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    [problem] = problems(site, capsys)
    assert problem.startswith(f"ipsec.private_key: '{path}': a ")
    assert "IKE signs with ECDSA, Ed25519 or RSA keys" in problem


def test_exabgp_not_found(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    missing = site.root / "nowhere" / "exabgp"
    status = main(["config", "check", "--exabgp", str(missing), str(site.config)])
    output = capsys.readouterr().err
    assert status == 2
    assert f"exabgp: '{missing}': not an executable file" in output


def test_every_problem_at_once(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.bgp_keys.chmod(0o644)
    site.ike_keys.unlink()
    found = problems(site, capsys)
    assert [p.split(":")[0] for p in found] == ["bgp.keys_file", "ipsec.keys_file"]


BREAKAGES = {
    "keys file 0644": lambda s: s.bgp_keys.chmod(0o644),
    "keys file missing": lambda s: s.bgp_keys.unlink(),
    "md5_key not in keys file": lambda s: s.replace("md5_key: rr1", "md5_key: rr9"),
    "l2tpv3 without session id": lambda s: s.replace("[gre, ip-in-ip]", "[l2tpv3]"),
    "private key missing": lambda s: s.use_private_key().unlink(),
    "private key 0644": lambda s: s.use_private_key().chmod(0o644),
    "private key garbage": lambda s: s.use_private_key().write_text("garbage\n"),
    "yaml key twice": lambda s: s.replace("asn: 65000\n", "asn: 65000\nasn: 65001\n"),
    "neighbor twice": lambda s: s.replace(
        "neighbors:\n", 'neighbors:\n    - {address: "2001:db8::1", asn: 65000, md5_key: rr1}\n'
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_afbr_run_refuses_with_a_message_not_a_traceback(site: Site, breakage: str) -> None:
    BREAKAGES[breakage](site)
    proc = subprocess.run(
        [sys.executable, "-m", "afbr", "run", "-c", str(site.config), "--no-dataplane"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"afbr: {site.config}: 1 problem(s)\n  "), proc.stderr
    assert not (site.root / "state").exists()  # nothing was started
