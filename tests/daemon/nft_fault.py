"""A fault injector for nft, for the tests of failure isolation and retry.

`nft_failing_once(directory)` writes DIRECTORY/nft, a wrapper to put first on PATH (for the
test process, whose `ip netns exec` finds nft by PATH, or for a daemon it starts): its first
run prints an error and exits 1, as a refusing nft would; every later run execs the real nft.
Each run's arguments are appended to DIRECTORY/nft-calls, so a test can tell which step failed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

REAL_NFT = shutil.which("nft", path="/usr/sbin:/sbin:/usr/bin:/bin") or "/usr/sbin/nft"
INJECTED = "Error: injected fault (afbr test: the first nft run fails)"


def nft_failing_once(directory: Path) -> Path:
    """Write the fault injector DIRECTORY/nft; returns DIRECTORY (to put first on PATH)."""
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / "nft-failed-once"  # mkdir is atomic: exactly one run fails
    script = directory / "nft"
    script.write_text(
        f"""#!/bin/sh
# Fault injector (afbr tests): the first run fails, every later one is the real nft.
echo "$*" >> '{directory / "nft-calls"}'
if mkdir '{marker}' 2>/dev/null; then
    echo '{INJECTED}' >&2
    exit 1
fi
exec '{REAL_NFT}' "$@"
"""
    )
    script.chmod(0o755)
    return directory


def calls(directory: Path) -> list[str]:
    """The argument lists the wrapper ran with, first to last."""
    path = directory / "nft-calls"
    return path.read_text().splitlines() if path.exists() else []
