"""Kernel smoke tests: TCP-MD5 (RFC 2385), which guards every BGP session afbr opens.

A listener in namespace `b` requires a key for `a`'s address; a client in `a` connects with the
right key (connects, data flows), a wrong key or no key (the SYN is dropped: the connect times
out, and `b`'s TcpExt counters say why).  The sockets are opened inside the namespaces by
switching this process's network namespace with setns(2) around `socket()` (afbr.lab.tcp_md5),
so no interpreter has to start per case (slow under UML).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import closing

import pytest
from smoke_topology import OUTER, Pair, veth_pair

from afbr.lab.netns import Host
from afbr.lab.tcp_md5 import TCP_MD5SIG, inside, tcp_md5sig

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

KEY = b"afbr-smoke-secret"
PORT = 17900
REFUSED_WAIT_S = 0.5  # the SYN is dropped at once (the counter proves it); no retry needed

# client key -> the TcpExt counter on the listener that must grow (None: it must connect)
CASES = {
    "right-key": (KEY, None),
    "wrong-key": (b"afbr-wrong-secret", "TCPMD5Failure"),
    "no-key": (None, "TCPMD5NotFound"),
}


def tcp_ext_counters(host: Host) -> dict[str, int]:
    with inside(host), open("/proc/thread-self/net/netstat", encoding="ascii") as netstat:
        lines = [line.split() for line in netstat if line.startswith("TcpExt:")]
    return dict(zip(lines[0][1:], map(int, lines[1][1:]), strict=True))


def tcp_socket(host: Host, family: int, peer: str, key: bytes | None) -> socket.socket:
    with inside(host):
        sock = socket.socket(family, socket.SOCK_STREAM)
    if key is not None:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, tcp_md5sig(peer, key))
    return sock


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with veth_pair("md5") as built:
        yield built


@pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])
@pytest.mark.parametrize(("client_key", "drop_counter"), CASES.values(), ids=CASES.keys())
def test_tcp_md5_session(
    pair: Pair, family: int, client_key: bytes | None, drop_counter: str | None
) -> None:
    a_address, b_address, _ = OUTER[family]
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    with (
        closing(tcp_socket(pair.b, af, a_address, KEY)) as listener,
        closing(tcp_socket(pair.a, af, b_address, client_key)) as client,
    ):
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((b_address, PORT))
        listener.listen(1)
        listener.settimeout(10)
        before = tcp_ext_counters(pair.b)
        if drop_counter is None:
            client.settimeout(10)
            client.connect((b_address, PORT))
            server, _ = listener.accept()
            with closing(server):
                client.sendall(b"afbr")
                assert server.recv(16) == b"afbr"
        else:
            client.settimeout(REFUSED_WAIT_S)
            with pytest.raises(TimeoutError):
                client.connect((b_address, PORT))
            after = tcp_ext_counters(pair.b)
            assert after[drop_counter] > before[drop_counter], (drop_counter, before, after)
