"""A minimal BGP speaker that replays pre-encoded UPDATE messages as fast as TCP takes them.

It exists to keep the sender out of the measurement: every UPDATE of the feed is encoded once,
before any clock starts, and the speaker's only work during a run is `sendall` of one buffer.

    python bench/bgp_speaker.py --listen ADDR --peer ADDR --feed FEED.bin [--md5 KEY]

It listens on ADDR port 179 (the peer, ExaBGP, connects actively), checks the peer's address,
sets the TCP-MD5 key (RFC 2385) on the listening socket first, answers the OPEN, and once the
session is Established writes the feed and an End-of-RIB for IPv4 unicast (and IPv6 unicast
with --eor-ipv6: a receiver that waits for every family's End-of-RIB needs it).  It prints one line
per event on stdout (`established T`, `sent T0 T1 BYTES`; T = time.time()) and then keeps the
session up, answering KEEPALIVEs, until stdin closes or the peer goes away.

The message builders below are pure functions; bench/bgp_feed.py uses them to build the feed.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

MARKER = b"\xff" * 16
OPEN, UPDATE, NOTIFICATION, KEEPALIVE = 1, 2, 3, 4  # RFC 4271 §4.1
MAX_MESSAGE = 4096  # RFC 4271 §4.1 (no RFC 8654 extended messages)
AS_TRANS = 23456  # RFC 6793 §9
TCP_MD5SIG = 14  # linux/tcp.h
TCP_MD5SIG_MAXKEYLEN = 80

# Path attribute flags (RFC 4271 §4.3)
OPTIONAL, TRANSITIVE, EXTENDED_LENGTH = 0x80, 0x40, 0x10
ATTR_ORIGIN, ATTR_AS_PATH, ATTR_NEXT_HOP, ATTR_LOCAL_PREF = 1, 2, 3, 5
ATTR_MP_REACH, ATTR_MP_UNREACH, ATTR_TUNNEL_ENCAP = 14, 15, 23  # RFC 4760 §3-4, RFC 9012 §2


def message(kind: int, body: bytes) -> bytes:
    """One BGP message: marker, length, type, body (RFC 4271 §4.1)."""
    return MARKER + struct.pack("!HB", 19 + len(body), kind) + body


def attribute(flags: int, code: int, value: bytes) -> bytes:
    if len(value) > 255:
        flags |= EXTENDED_LENGTH
    if flags & EXTENDED_LENGTH:
        return struct.pack("!BBH", flags, code, len(value)) + value
    return struct.pack("!BBB", flags, code, len(value)) + value


def capability(code: int, value: bytes) -> bytes:
    return struct.pack("!BB", code, len(value)) + value


def open_message(asn: int, router_id: str, hold_time: int, core: int) -> bytes:
    """OPEN with multiprotocol IPv4/IPv6 unicast, 4-octet AS, route refresh, and, for an IPv6
    core, the extended next hop capability for IPv4 unicast (RFC 8950 §4)."""
    caps = [
        capability(1, struct.pack("!HBB", 1, 0, 1)),  # RFC 4760 §8: IPv4 unicast
        capability(1, struct.pack("!HBB", 2, 0, 1)),  # IPv6 unicast
        capability(2, b""),  # RFC 2918 route refresh
        capability(65, struct.pack("!I", asn)),  # RFC 6793 4-octet AS
    ]
    if core == 6:
        caps.append(capability(5, struct.pack("!HHH", 1, 1, 2)))  # RFC 8950 §4
    params = b"".join(struct.pack("!BB", 2, len(c)) + c for c in caps)  # RFC 5492 §4
    my_as = asn if asn < 65536 else AS_TRANS
    rid = ipaddress.IPv4Address(router_id).packed
    body = struct.pack("!BHH4sB", 4, my_as, hold_time, rid, len(params)) + params
    return message(OPEN, body)


def keepalive() -> bytes:
    return message(KEEPALIVE, b"")


def end_of_rib_ipv4() -> bytes:
    """An UPDATE with nothing in it: End-of-RIB for IPv4 unicast (RFC 4724 §2)."""
    return message(UPDATE, struct.pack("!HH", 0, 0))


def end_of_rib_ipv6() -> bytes:
    """End-of-RIB for IPv6 unicast: an empty MP_UNREACH_NLRI, AFI 2 SAFI 1 (RFC 4724 §2)."""
    attrs = attribute(OPTIONAL, ATTR_MP_UNREACH, struct.pack("!HB", 2, 1))
    return message(UPDATE, struct.pack("!H", 0) + struct.pack("!H", len(attrs)) + attrs)


def encode_prefix(network: ipaddress.IPv4Network) -> bytes:
    """NLRI encoding: length in bits, then the significant octets (RFC 4271 §4.3)."""
    octets = (network.prefixlen + 7) // 8
    return bytes([network.prefixlen]) + network.network_address.packed[:octets]


def update_messages(
    prefixes: Sequence[ipaddress.IPv4Network],
    next_hop: str,
    tunnel_encap: bytes,
    per_update: int,
) -> Iterator[bytes]:
    """UPDATEs announcing `prefixes` with one next hop and Tunnel Encapsulation attribute.

    An IPv6 next hop goes in MP_REACH_NLRI (RFC 8950 §3, RFC 4760 §3); an IPv4 one in NEXT_HOP
    with the prefixes in the UPDATE's own NLRI field.  `per_update` prefixes per message at
    most, fewer when 4096 octets would not hold them.
    """
    hop = ipaddress.ip_address(next_hop)
    common = (
        attribute(TRANSITIVE, ATTR_ORIGIN, b"\x00")  # IGP
        + attribute(TRANSITIVE, ATTR_AS_PATH, b"")  # iBGP: empty AS_PATH
        + attribute(TRANSITIVE, ATTR_LOCAL_PREF, struct.pack("!I", 100))
        + attribute(OPTIONAL | TRANSITIVE, ATTR_TUNNEL_ENCAP, tunnel_encap)
    )
    for chunk in _chunks(prefixes, per_update, len(common)):
        nlri = b"".join(encode_prefix(p) for p in chunk)
        if hop.version == 6:
            mp = struct.pack("!HBB", 1, 1, 16) + hop.packed + b"\x00" + nlri
            attrs = common + attribute(OPTIONAL | EXTENDED_LENGTH, ATTR_MP_REACH, mp)
            body = struct.pack("!HH", 0, len(attrs)) + attrs
        else:
            attrs = common + attribute(TRANSITIVE, ATTR_NEXT_HOP, hop.packed)
            body = struct.pack("!HH", 0, len(attrs)) + attrs + nlri
        yield message(UPDATE, body)


def _chunks(
    prefixes: Sequence[ipaddress.IPv4Network], per_update: int, common_size: int
) -> Iterable[Sequence[ipaddress.IPv4Network]]:
    room = (MAX_MESSAGE - 19 - 4 - common_size - 4 - 22) // 5  # 5 octets per prefix at most
    step = max(1, min(per_update, room))
    for start in range(0, len(prefixes), step):
        yield prefixes[start : start + step]


def set_md5(sock: socket.socket, peer: str, key: bytes) -> None:
    """Set the RFC 2385 key for `peer` on `sock` (struct tcp_md5sig, linux/tcp.h)."""
    address = ipaddress.ip_address(peer)
    if address.version == 4:
        sockaddr = struct.pack("=H2s4s8x", socket.AF_INET, b"\x00\x00", address.packed)
    else:
        sockaddr = struct.pack("=H2s4x16s4x", socket.AF_INET6, b"\x00\x00", address.packed)
    sockaddr = sockaddr.ljust(128, b"\x00")  # sockaddr_storage
    value = (
        sockaddr + struct.pack("=BBHI", 0, 0, len(key), 0) + key.ljust(TCP_MD5SIG_MAXKEYLEN, b"\0")
    )
    sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, value)


def read_message(sock: socket.socket) -> tuple[int, bytes]:
    header = _read_exact(sock, 19)
    length, kind = struct.unpack("!HB", header[16:19])
    return kind, _read_exact(sock, length - 19)


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the peer closed the session")
        data += chunk
    return data


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def serve(args: argparse.Namespace) -> int:
    feed = Path(args.feed).read_bytes()  # read once, before any clock starts
    family = socket.AF_INET6 if ":" in args.listen else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if args.md5:
        set_md5(listener, args.peer, args.md5.encode())
    listener.bind((args.listen, 179))
    listener.listen(1)
    say("listening")
    conn, addr = listener.accept()
    if ipaddress.ip_address(addr[0]) != ipaddress.ip_address(args.peer):
        raise SystemExit(f"unexpected peer {addr[0]}")
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    kind, _ = read_message(conn)
    if kind != OPEN:
        raise SystemExit(f"expected OPEN, got type {kind}")
    conn.sendall(open_message(args.asn, args.router_id, 180, args.core) + keepalive())
    while read_message(conn)[0] != KEEPALIVE:
        pass
    say(f"established {time.time():.6f}")
    start = time.time()
    eor = end_of_rib_ipv4() + (end_of_rib_ipv6() if args.eor_ipv6 else b"")
    conn.sendall(feed + eor)
    say(f"sent {start:.6f} {time.time():.6f} {len(feed)}")
    return _hold(conn)


def _hold(conn: socket.socket) -> int:
    """Keep the session: drain what the peer sends, KEEPALIVE every 30 s, stop on stdin EOF."""
    last = time.monotonic()
    while True:
        ready, _, _ = select.select([conn, sys.stdin], [], [], 5.0)
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 4096):
            return 0
        if conn in ready:
            try:
                kind, _ = read_message(conn)
            except ConnectionError:
                return 0
            if kind == NOTIFICATION:
                say("notification")
                return 1
        if time.monotonic() - last > 30:
            conn.sendall(keepalive())
            last = time.monotonic()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--feed", required=True)
    parser.add_argument("--md5", default="")
    parser.add_argument("--asn", type=int, default=65000)
    parser.add_argument("--router-id", default="192.0.2.200")
    parser.add_argument("--core", type=int, choices=(4, 6), default=6)
    parser.add_argument(
        "--eor-ipv6",
        action="store_true",
        help="after the feed, End-of-RIB for IPv6 unicast too (the session negotiates both)",
    )
    return serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
