"""The suite stands alone: the vector-based tests pass with nothing outside the checkout
readable.  In a private mount namespace the checkout is bind-mounted elsewhere and an empty
tmpfs is laid over the folder that holds it (hiding its siblings, such as a reference folder
next to it); then the known-answer tests run from the bind mount."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns  # needs root for unshare -m

REPO = Path(__file__).resolve().parents[1]
VECTOR_TESTS = (
    "tests/ipsec/test_ike_known_answers.py",
    "tests/bgp/test_tunnel_encap.py",
    "tests/test_cli_decode.py",
)


def _outside(parent: Path) -> Path:
    for candidate in ("/run", "/var/tmp", "/dev/shm", "/tmp"):
        if not Path(candidate).resolve().is_relative_to(parent):
            return Path(tempfile.mkdtemp(prefix="afbr-alone-", dir=candidate))
    pytest.fail(f"no folder outside {parent} to mount the checkout on")


def test_vector_tests_pass_with_nothing_outside_the_checkout_readable() -> None:
    parent = REPO.parent
    view = _outside(parent)
    python = (
        view / Path(sys.executable).relative_to(REPO)
        if sys.prefix.startswith(str(REPO))
        else Path(sys.executable)
    )
    script = (
        f"mount --bind {REPO} {view} && mount -t tmpfs afbr-hidden {parent} && "
        f'test -z "$(ls -A {parent})" && cd {view} && '
        f"PYTHONPATH={view} {python} -m pytest -q -p no:cacheprovider {' '.join(VECTOR_TESTS)}"
    )
    try:
        result = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        view.rmdir()
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout
