"""TCP-MD5 (RFC 2385) sockets in lab namespaces, opened from this process.

What a BGP speaker with the right key, a wrong key or none sends, without a BGP daemon: the
tests of what the kernel then counts (afbr.daemon.tcp_md5_watch) use it.  A socket is made
inside a namespace by switching the calling thread's network namespace with setns(2) around
`socket()`; the socket stays in that namespace, the thread goes back.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager

from afbr.lab.netns import Host

TCP_MD5SIG = 14  # linux/tcp.h
TCP_MD5SIG_MAXKEYLEN = 80
SOCKADDR_STORAGE_LEN = 128
CLONE_NEWNET = 0x40000000  # linux/sched.h

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


@contextmanager
def inside(host: Host) -> Iterator[None]:
    """Run the block with this thread in `host`'s network namespace (what /proc/self/net
    shows, too, when this is the main thread)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{host.name}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(target)
    finally:
        os.close(own)


def tcp_md5sig(peer: str, key: bytes) -> bytes:
    """struct tcp_md5sig (linux/tcp.h): the peer's sockaddr_storage, flags, prefix length,
    key length, ifindex, key."""
    address = ipaddress.ip_address(peer)
    if address.version == 4:
        sockaddr = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 0) + address.packed
    else:
        sockaddr = (
            struct.pack("=H", socket.AF_INET6)
            + struct.pack("!HI", 0, 0)
            + address.packed
            + struct.pack("=I", 0)
        )
    if len(key) > TCP_MD5SIG_MAXKEYLEN:
        raise ValueError(f"TCP-MD5 key of {len(key)} octets, at most {TCP_MD5SIG_MAXKEYLEN}")
    return (
        sockaddr.ljust(SOCKADDR_STORAGE_LEN, b"\0")
        + struct.pack("=BBHi", 0, 0, len(key), 0)
        + key.ljust(TCP_MD5SIG_MAXKEYLEN, b"\0")
    )


def md5_socket(host: Host, peer: str, key: bytes | None) -> socket.socket:
    """A TCP socket in `host`'s namespace that signs segments to and from `peer` with `key`
    (None: no key, segments unsigned)."""
    family = socket.AF_INET if ipaddress.ip_address(peer).version == 4 else socket.AF_INET6
    with inside(host):
        sock = socket.socket(family, socket.SOCK_STREAM)
    if key is not None:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, tcp_md5sig(peer, key))
    return sock
