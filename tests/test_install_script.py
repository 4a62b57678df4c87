"""scripts/install.sh, the production install: run for real into a scratch root (a real
virtualenv, afbr and its dependencies installed by pip from the configured index), then the
files, their modes, and that nothing outside the root was touched; and what the script text
never does (stop or disable services, install packages, compile)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "install.sh"
# Where a real install would write: none of these may appear because of a scratch install.
SYSTEM_PATHS = (
    "/opt/afbr",
    "/etc/afbr",
    "/etc/systemd/system/afbr.service",
    "/usr/share/man/man8/afbr.8",
    "/usr/share/bash-completion/completions/afbr",
    "/usr/share/doc/afbr",
    "/usr/local/bin/afbr",
)
FORBIDDEN = {
    "stops or disables a service": r"systemctl\s+(--\S+\s+)*(stop|disable|mask|kill|restart)",
    "installs distribution packages": r"\b(apt-get|apt|dpkg|yum|dnf|apk)\s+(-\S+\s+)*install",
    "dpkg -i": r"\bdpkg\s+-i",
    "runs a compiler or build tool": r"(^|[\s;&|(`])(gcc|g\+\+|clang|cc|c\+\+|make|cmake|ninja)\s",
    "builds a kernel": r"linux-source|build-kernel|lab/uml",
    "installs test peers": r"\b(gobgpd?|bird2?|strongswan|charon|swanctl|frr)\b",
}


@pytest.mark.parametrize("what", sorted(FORBIDDEN))
def test_the_script_never(what: str) -> None:
    text = SCRIPT.read_text()
    assert not re.search(FORBIDDEN[what], text, re.MULTILINE), what


def test_the_patterns_catch_what_they_mean() -> None:
    bad = "systemctl disable --now bird\napt-get install -y gcc\nmake -C linux\n"
    bad += "dpkg -i afbr.deb\nlab/uml/build-kernel.sh\n"
    for what, pattern in FORBIDDEN.items():
        assert re.search(pattern, bad, re.MULTILINE), what


def test_the_script_passes_sh_n() -> None:
    subprocess.run(["sh", "-n", str(SCRIPT)], check=True)


def test_unknown_arguments_are_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["sh", str(SCRIPT), "--root", str(tmp_path), "--frobnicate"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown argument: --frobnicate" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def run_install(root: Path, home: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    # The user's own tool directories (rustup proxies and the like) stay out of PATH, so
    # that the only writer to HOME would be the script itself.
    path = ":".join(p for p in os.environ["PATH"].split(":") if not p.startswith(str(Path.home())))
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "PATH": path}
    env.pop("DESTDIR", None)
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    return subprocess.run(
        ["sh", str(SCRIPT), "--root", str(root), "--python", str(base_python)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
        cwd=tmp,
    )


def test_install_into_a_scratch_root(tmp_path: Path) -> None:
    root, home, tmp = tmp_path / "root", tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    existed = {p for p in SYSTEM_PATHS if os.path.lexists(p)}

    proc = run_install(root, home, tmp)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    venv = root / "opt" / "afbr"
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "afbr", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.startswith("afbr ")
    assert (venv / "bin" / "exabgp").is_file()  # ExaBGP came as a dependency
    for script in ("afbr", "exabgp"):  # relocated to where the tree will live
        assert (venv / "bin" / script).read_text().startswith("#!/opt/afbr/bin/python")

    unit = root / "etc" / "systemd" / "system" / "afbr.service"
    assert mode(unit) == 0o644
    assert "ExecStart=/opt/afbr/bin/afbr run -c /etc/afbr/afbr.yaml" in unit.read_text()

    etc = root / "etc" / "afbr"
    assert mode(etc) == 0o750
    assert mode(etc / "afbr.yaml") == 0o640
    assert mode(etc / "bgp-keys.yaml") == 0o600
    assert mode(etc / "ike-keys.yaml") == 0o600
    assert (etc / "afbr.yaml").read_text() == (REPO / "examples" / "afbr.yaml").read_text()
    share = root / "usr" / "share"
    assert (share / "man" / "man8" / "afbr.8").read_text() == (
        REPO / "contrib" / "afbr.8"
    ).read_text()
    assert (share / "bash-completion" / "completions" / "afbr").is_file()
    assert (share / "doc" / "afbr" / "operator-guide.md").is_file()
    assert (share / "doc" / "afbr" / "LICENSE").is_file()
    link = root / "usr" / "local" / "bin" / "afbr"
    assert os.readlink(link) == "/opt/afbr/bin/afbr"

    # Nothing outside the root: no system path appeared, HOME (pip's cache) and TMPDIR are
    # as they were, and the checkout has no build leftovers.
    assert {p for p in SYSTEM_PATHS if os.path.lexists(p)} == existed
    assert list(home.iterdir()) == []
    assert list(tmp.iterdir()) == []
    assert not (REPO / "build").exists()

    # Again, over an edited configuration: upgraded in place, the operator's files kept.
    (etc / "bgp-keys.yaml").write_text('rr1: "the-real-secret"\n')
    proc = run_install(root, home, tmp)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (etc / "bgp-keys.yaml").read_text() == 'rr1: "the-real-secret"\n'
    assert mode(etc / "bgp-keys.yaml.example") == 0o600
    assert f"kept {etc / 'bgp-keys.yaml'}" in proc.stdout
