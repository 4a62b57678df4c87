"""Test-suite policy for the markers `kernel`, `interop`, `netns` and `tool(NAME)`.

A test marked with one of them needs something this host may lack: the tunnel/IPsec kernel,
third-party daemons, root, or a program such as promtool or groff.  Run by hand on a host
without it, such a test is skipped with the reason.  Run by `make test` (AFBR_STRICT=1)
nothing is skipped: the test command installs the daemons and programs and runs the `kernel`
tests inside the UML kernel, so a missing part fails loudly.
"""

from __future__ import annotations

import gzip
import os
import shutil
from functools import cache
from pathlib import Path

import pytest
from hypothesis import settings

# In the UML guest the tree is read-only: no example database.
settings.register_profile("readonly", database=None)
if os.environ.get("AFBR_IN_UML") == "1":
    settings.load_profile("readonly")

KERNEL_OPTIONS = (
    "CONFIG_NET_IPGRE",
    "CONFIG_IPV6_GRE",
    "CONFIG_NET_IPIP",
    "CONFIG_IPV6_SIT",
    "CONFIG_IPV6_TUNNEL",
    "CONFIG_L2TP_V3",
    "CONFIG_L2TP_ETH",
    "CONFIG_INET_ESP",
    "CONFIG_INET6_ESP",
    "CONFIG_XFRM_INTERFACE",
    "CONFIG_CRYPTO_GCM",
)
DAEMONS = ("gobgpd", "bird", "swanctl")


@cache
def missing_kernel_features() -> tuple[str, ...]:
    if os.environ.get("AFBR_IN_UML") == "1":
        return ()  # the guest kernel is built with every one of them (lab/uml/kernel.config)
    path = Path("/proc/config.gz")
    if not path.exists():
        return ("/proc/config.gz (cannot tell)",)
    text = gzip.decompress(path.read_bytes()).decode()
    have = {line.split("=")[0] for line in text.splitlines() if line.endswith(("=y", "=m"))}
    return tuple(opt for opt in KERNEL_OPTIONS if opt not in have)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("AFBR_STRICT") == "1":
        return
    for item in items:
        reasons: list[str] = []
        if item.get_closest_marker("kernel") and missing_kernel_features():
            reasons.append(
                f"kernel lacks {', '.join(missing_kernel_features())} (make test runs it in UML)"
            )
        if (item.get_closest_marker("netns") or item.get_closest_marker("kernel")) and (
            os.geteuid() != 0
        ):
            reasons.append("needs root for network namespaces")
        if item.get_closest_marker("interop"):
            absent = [d for d in DAEMONS if shutil.which(d) is None]
            if absent:
                reasons.append("daemons not installed: " + ", ".join(absent))
        for marker in item.iter_markers("tool"):
            if shutil.which(marker.args[0]) is None:
                reasons.append(f"{marker.args[0]} is not installed (make setup installs it)")
        if reasons:
            item.add_marker(pytest.mark.skip(reason="; ".join(reasons)))


@pytest.fixture
def lab() -> object:
    """A namespace lab that is torn down after the test, pass or fail."""
    from afbr.lab.netns import Lab

    with Lab() as the_lab:
        yield the_lab
