"""A NETLINK_XFRM socket: send one request, read its ack or its dump; receive multicast events.

Messages are packed with `struct` (see xfrm_wire).  A socket can be opened inside a named
network namespace: the calling thread enters it for the moment of socket creation only, and
the socket stays bound to that namespace (the same holds for the UDP sockets of the IKE
adapter, which use `netns_scope` too).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import select
import socket
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from afbr.dataplane.netlink import NETLINK_XFRM

NLMSG_HDR = struct.Struct("=IHHII")
NLA_HDR = struct.Struct("=HH")
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
CLONE_NEWNET = 0x4000_0000
RECV_BUFFER = 1 << 16


class XfrmKernelError(OSError):
    """The kernel refused an XFRM request; `errno` is its error number."""


@dataclass(frozen=True)
class NetlinkMessage:
    """One netlink message: its type and its payload (after the 16-byte header)."""

    msg_type: int
    flags: int
    seq: int
    payload: bytes


def attr(kind: int, data: bytes) -> bytes:
    """One netlink attribute (struct nlattr), padded to four bytes."""
    length = NLA_HDR.size + len(data)
    return NLA_HDR.pack(length, kind) + data + bytes((4 - length % 4) % 4)


def parse_attrs(raw: bytes) -> dict[int, bytes]:
    """Attributes after a fixed structure, by type (the last one wins, as in the kernel)."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos + NLA_HDR.size <= len(raw):
        length, kind = NLA_HDR.unpack_from(raw, pos)
        if length < NLA_HDR.size or pos + length > len(raw):
            break  # a short tail: the kernel never sends one; ignore rather than guess
        out[kind & 0x3FFF] = raw[pos + NLA_HDR.size : pos + length]
        pos += (length + 3) & ~3
    return out


def split_messages(data: bytes) -> Iterator[NetlinkMessage]:
    pos = 0
    while pos + NLMSG_HDR.size <= len(data):
        length, msg_type, flags, seq, _pid = NLMSG_HDR.unpack_from(data, pos)
        if length < NLMSG_HDR.size or pos + length > len(data):
            return
        yield NetlinkMessage(msg_type, flags, seq, data[pos + NLMSG_HDR.size : pos + length])
        pos += (length + 3) & ~3


_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def netns_scope(netns: str | None) -> Iterator[None]:
    """Run the block with the calling thread inside /run/netns/NAME (or unchanged for None).

    Sockets created inside keep that namespace for their whole life.
    """
    if netns is None:
        yield
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class XfrmSocket:
    """A NETLINK_XFRM socket for requests (and, with `groups`, for multicast events)."""

    def __init__(self, netns: str | None = None, groups: Sequence[int] = ()) -> None:
        with netns_scope(netns):
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_XFRM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock.bind((0, 0))
        for group in groups:
            self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
        self._seq = itertools.count(1)
        self.netns = netns

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> XfrmSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, msg_type: int, flags: int, payload: bytes) -> int:
        seq = next(self._seq)
        header = NLMSG_HDR.pack(NLMSG_HDR.size + len(payload), msg_type, flags, seq, 0)
        self._sock.send(header + payload)
        return seq

    def request(self, msg_type: int, payload: bytes, flags: int = 0) -> list[NetlinkMessage]:
        """Send a request with an ack asked for; return the replies that came before it.

        Raises XfrmKernelError when the kernel answers with an error.
        """
        seq = self._send(msg_type, NLM_F_REQUEST | NLM_F_ACK | flags, payload)
        replies: list[NetlinkMessage] = []
        while True:
            for msg in split_messages(self._sock.recv(RECV_BUFFER)):
                if msg.seq != seq:
                    continue  # a stale answer of an earlier, interrupted request
                if msg.msg_type == NLMSG_ERROR:
                    _raise_for_error(msg.payload)
                    return replies
                if msg.msg_type == NLMSG_DONE:
                    return replies
                replies.append(msg)

    def dump(self, msg_type: int, payload: bytes = b"") -> list[NetlinkMessage]:
        """A dump request (GETSA/GETPOLICY with NLM_F_DUMP): every object of the namespace."""
        seq = self._send(msg_type, NLM_F_REQUEST | NLM_F_DUMP, payload)
        replies: list[NetlinkMessage] = []
        while True:
            for msg in split_messages(self._sock.recv(RECV_BUFFER)):
                if msg.seq != seq:
                    continue
                if msg.msg_type == NLMSG_DONE:
                    return replies
                if msg.msg_type == NLMSG_ERROR:
                    _raise_for_error(msg.payload)
                    return replies
                replies.append(msg)

    def receive(self, timeout: float | None) -> list[NetlinkMessage]:
        """Messages that are waiting (multicast events); wait up to `timeout` for the first."""
        ready, _, _ = select.select([self._sock], [], [], timeout)
        if not ready:
            return []
        out: list[NetlinkMessage] = []
        while True:
            try:
                data = self._sock.recv(RECV_BUFFER, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return out
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # events were lost; the caller re-reads state
                    continue
                raise
            out.extend(split_messages(data))


def _raise_for_error(payload: bytes) -> None:
    if len(payload) < 4:
        raise XfrmKernelError(errno.EPROTO, "short NLMSG_ERROR")
    (code,) = struct.unpack_from("=i", payload)
    if code:
        raise XfrmKernelError(-code, os.strerror(-code))
