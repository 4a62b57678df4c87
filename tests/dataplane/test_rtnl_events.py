"""Link and route deletions reach the daemon: a real NETLINK_ROUTE listener in a namespace."""

from __future__ import annotations

import time

import pytest

from afbr.dataplane.rtnl_events import RtnlDeletionListener
from afbr.lab.netns import Lab

pytestmark = pytest.mark.netns


def _drain(listener: RtnlDeletionListener, seconds: float = 1.0) -> bool:
    deadline = time.monotonic() + seconds
    seen = False
    while time.monotonic() < deadline:
        seen = listener.read_pending() or seen
        time.sleep(0.05)
    return seen


def test_only_afbr_links_and_routes_count_as_deletions(lab: Lab) -> None:
    host = lab.host("rt")
    listener = RtnlDeletionListener(host.name)
    try:
        host.ip_batch(["link add other0 type veth peer name other1", "link set other0 up"])
        host.ip_batch(["addr add 192.0.2.1/24 dev other0", "route add 198.51.100.0/24 dev other0"])
        host.run("ip", "route", "del", "198.51.100.0/24")
        host.run("ip", "link", "del", "other0")
        assert not _drain(listener)  # nobody else's objects
        host.ip_batch(
            [
                "link add afbrtest0 type veth peer name afbrtest1",
                "link set afbrtest0 up",
                "addr add 192.0.2.1/24 dev afbrtest0",
                "route add 203.0.113.0/24 dev afbrtest0 proto 175",
            ]
        )
        assert not _drain(listener)  # additions are not deletions
        host.run("ip", "route", "del", "203.0.113.0/24", "proto", "175")
        assert _drain(listener)  # afbr's route (protocol 175, RTPROT_AFBR)
        host.run("ip", "link", "del", "afbrtest0")
        assert _drain(listener)  # afbr's link
    finally:
        listener.close()
