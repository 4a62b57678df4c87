"""Why a neighbor stays down: the kernel's TCP-MD5 drop counters, parsed, watched, shown.

netstat_linux_6.18_md5_drops.txt is /proc/self/net/netstat of a namespace on Linux 6.18 (the
host of these tests) after three connection attempts to a listener there: a wrong key, no
key, and a key where the listener had none — captured with afbr.lab.tcp_md5 as in the
namespace test at the end, which makes the same drops happen and reads them again live.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from afbr.commands.show import render_text
from afbr.daemon.tcp_md5_watch import (
    Md5Counters,
    NetstatFormatError,
    TcpMd5Watch,
    md5_counters,
    parse_netstat,
    read_md5_counters,
)
from afbr.lab.netns import Host, Lab
from afbr.lab.tcp_md5 import inside, md5_socket

CAPTURED = (Path(__file__).parent / "netstat_linux_6.18_md5_drops.txt").read_text()
A, B = "2001:db8::a", "2001:db8::b"


def test_the_captured_text_parses_into_its_sections() -> None:
    sections = parse_netstat(CAPTURED)
    assert list(sections) == ["TcpExt", "IpExt", "MPTcpExt"]
    assert len(sections["TcpExt"]) == 135
    assert sections["TcpExt"]["TCPMD5Failure"] == 1
    assert sections["TcpExt"]["TCPMD5NotFound"] == 1
    assert sections["TcpExt"]["TCPMD5Unexpected"] == 1
    assert sections["IpExt"]["InOctets"] > 0


def test_md5_counters_and_their_text() -> None:
    counters = md5_counters(CAPTURED)
    assert counters == Md5Counters(failure=1, not_found=1, unexpected=1)
    assert counters.text() == "TCPMD5Failure=1 TCPMD5NotFound=1 TCPMD5Unexpected=1"


def test_a_kernel_without_the_counters_reads_as_zero() -> None:
    text = "TcpExt: SyncookiesSent TW\nTcpExt: 0 7\n"
    assert md5_counters(text) == Md5Counters()


@pytest.mark.parametrize(
    "text",
    [
        "TcpExt: A B\n",  # names without values
        "TcpExt: A B\nTcpExt: 1\n",  # a value missing
        "TcpExt: A B\nIpExt: 1 2\n",  # values of another section
        "TcpExt: A B\nTcpExt: 1 x\n",  # not a number
        "garbage\n1\n",
    ],
)
def test_malformed_text_raises_our_error(text: str) -> None:
    with pytest.raises(NetstatFormatError):
        parse_netstat(text)


def test_a_rise_while_a_neighbor_stays_down_is_logged_once_and_diagnosed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = TcpMd5Watch()
    assert watch.observe(Md5Counters(failure=4), [A, B]) is None  # the baseline
    assert watch.observe(Md5Counters(failure=4), [A, B]) is None  # no rise
    with caplog.at_level(logging.WARNING, logger="afbr.activity"):
        message = watch.observe(Md5Counters(failure=6, not_found=1), [A, B])
    assert message == (
        f"BGP neighbors {A}, {B} down while the kernel dropped TCP segments for their MD5 "
        "signature (TCPMD5Failure+2 TCPMD5NotFound+1): a mismatching or missing TCP-MD5 key "
        "on one side?"
    )
    assert [r.getMessage() for r in caplog.records] == [message]
    diagnosis = (
        "TCP-MD5 mismatch or missing key? (TCPMD5Failure=6 TCPMD5NotFound=1 TCPMD5Unexpected=0)"
    )
    assert watch.diagnosis(A) == diagnosis
    assert watch.observe(Md5Counters(failure=6, not_found=1), [A, B]) is None  # once per rise
    assert watch.diagnosis(B) == diagnosis  # kept while it stays down
    # B comes up: its diagnosis goes; A's stays.
    assert watch.observe(Md5Counters(failure=6, not_found=1), [A]) is None
    assert watch.diagnosis(B) is None
    assert watch.diagnosis(A) == diagnosis


def test_only_neighbors_down_at_two_readings_are_suspects() -> None:
    watch = TcpMd5Watch()
    watch.observe(Md5Counters(), [A])
    message = watch.observe(Md5Counters(unexpected=1), [A, B])  # B just went down
    assert message is not None and B not in message
    assert watch.diagnosis(B) is None
    assert watch.observe(Md5Counters(unexpected=2), [A, B]) is not None
    assert watch.diagnosis(B) is not None


def test_no_warning_when_every_neighbor_is_up_or_counters_went_down() -> None:
    watch = TcpMd5Watch()
    watch.observe(Md5Counters(failure=3), [])
    assert watch.observe(Md5Counters(failure=9), []) is None  # someone else's key problem
    watch.observe(Md5Counters(failure=9), [A])
    assert watch.observe(Md5Counters(failure=1), [A]) is None  # a new baseline
    assert watch.observe(Md5Counters(failure=2), [A]) is not None


def test_status_rows_and_their_text() -> None:
    watch = TcpMd5Watch()
    watch.observe(Md5Counters(), [A, B])
    watch.observe(Md5Counters(failure=2), [A, B])
    rows = watch.annotate(
        [
            {"address": A, "state": "down", "md5": True},
            {"address": B, "state": "up", "md5": True},  # came up since the last reading
        ]
    )
    diagnosis = (
        "TCP-MD5 mismatch or missing key? (TCPMD5Failure=2 TCPMD5NotFound=0 TCPMD5Unexpected=0)"
    )
    assert rows == [
        {"address": A, "state": "down", "md5": True, "diagnosis": diagnosis},
        {"address": B, "state": "up", "md5": True},
    ]
    text = render_text("status", {"neighbors": rows}).splitlines()
    assert text[0] == "neighbors:"
    assert text[1].split() == ["ADDRESS", "MD5", "STATE"]
    assert text[2].split(maxsplit=2) == [A, "yes", f"down: {diagnosis}"]
    assert text[3].split() == [B, "yes", "up"]


# -- in a network namespace: real segments with a wrong, missing or unexpected signature ----

KEY = b"afbr-md5-secret"
ADDRESSES = {4: ("192.0.2.1", "192.0.2.2"), 6: ("2001:db8::1", "2001:db8::2")}
# listener's key for the client, client's key -> the listener's counter that must rise
CASES = {
    "wrong-key": (KEY, b"afbr-wrong-secret", "failure"),
    "no-key": (KEY, None, "not_found"),
    "unexpected-key": (None, KEY, "unexpected"),
}


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Host, Host]]:
    """Namespaces `a` (the BGP neighbor) and `b` (the afbr), one veth, both families."""
    with Lab("md5") as lab:
        a, b = lab.host("a"), lab.host("b")
        lab.link(a, "eth0", b, "eth0")
        for index, host in enumerate((a, b)):
            host.ip_batch(
                [
                    f"addr add {ADDRESSES[4][index]}/24 dev eth0",
                    f"addr add {ADDRESSES[6][index]}/64 dev eth0 nodad",
                ]
            )
        yield a, b


def counters_in(host: Host) -> Md5Counters:
    with inside(host):  # the adapter reads /proc/self/net: this (main) thread's namespace
        return read_md5_counters()


def nstat(host: Host) -> Md5Counters:
    """The same counters as iproute2's nstat reads them: a second opinion."""
    names = ("TcpExtTCPMD5Failure", "TcpExtTCPMD5NotFound", "TcpExtTCPMD5Unexpected")
    values = dict(line.split()[:2] for line in host.run("nstat", "-asz", *names).splitlines()[1:])
    return Md5Counters(*(int(values[name]) for name in names))


@pytest.mark.netns
@pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])
@pytest.mark.parametrize(("listener_key", "client_key", "counter"), CASES.values(), ids=CASES)
def test_a_key_mismatch_in_a_namespace_gives_the_diagnosis(
    pair: tuple[Host, Host],
    family: int,
    listener_key: bytes | None,
    client_key: bytes | None,
    counter: str,
) -> None:
    a, b = pair
    neighbor, local = ADDRESSES[family]
    watch = TcpMd5Watch()
    before = counters_in(b)
    assert watch.observe(before, [neighbor]) is None
    with (
        closing(md5_socket(b, neighbor, listener_key)) as listener,
        closing(md5_socket(a, local, client_key)) as client,
    ):
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((local, 179))
        listener.listen(1)
        client.settimeout(0.5)
        with pytest.raises(TimeoutError):  # the SYN is dropped without an answer
            client.connect((local, 179))
    after = counters_in(b)
    assert after == nstat(b)
    assert getattr(after, counter) > getattr(before, counter), (before, after)
    message = watch.observe(after, [neighbor])
    assert message is not None and f"BGP neighbor {neighbor} down" in message
    diagnosis = f"TCP-MD5 mismatch or missing key? ({after.text()})"
    rows = watch.annotate([{"address": neighbor, "state": "down", "md5": True}])
    assert rows[0]["diagnosis"] == diagnosis
    assert f"down: {diagnosis}" in render_text("status", {"neighbors": rows})
