"""Test support: a tiny pcap reader and the keys strongSwan logged for the captures.

The captures and logs are in tests/vectors/ (strongSwan 5.9.8 charon at log level 4 on the
initiator, PSK 0x0123456789abcdef0123456789abcdef); tests/vectors/README.md says where they
came from.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass
from pathlib import Path

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
PSK = bytes.fromhex("0123456789abcdef0123456789abcdef")


@dataclass(frozen=True)
class UdpDatagram:
    source: tuple[str, int]
    destination: tuple[str, int]
    payload: bytes


def read_pcap_udp(path: Path) -> list[UdpDatagram]:
    """UDP datagrams of an Ethernet pcap (classic format, little-endian, IPv4/IPv6)."""
    data = path.read_bytes()
    magic, _, _, _, _, _, linktype = struct.unpack("<IHHiIII", data[:24])
    assert magic == 0xA1B2C3D4 and linktype == 1
    offset = 24
    datagrams = []
    while offset + 16 <= len(data):
        _, _, caplen, _ = struct.unpack("<IIII", data[offset : offset + 16])
        frame = data[offset + 16 : offset + 16 + caplen]
        offset += 16 + caplen
        ethertype = struct.unpack("!H", frame[12:14])[0]
        packet = frame[14:]
        if ethertype == 0x0800:
            header_length = (packet[0] & 0x0F) * 4
            proto = packet[9]
            src, dst = ipaddress.ip_address(packet[12:16]), ipaddress.ip_address(packet[16:20])
            segment = packet[header_length:]
        elif ethertype == 0x86DD:
            proto = packet[6]
            src, dst = ipaddress.ip_address(packet[8:24]), ipaddress.ip_address(packet[24:40])
            segment = packet[40:]
        else:
            continue
        if proto != 17:
            continue
        sport, dport, length = struct.unpack("!HHH", segment[:6])
        datagrams.append(UdpDatagram((str(src), sport), (str(dst), dport), segment[8:length]))
    return datagrams


def logged_values(path: Path) -> dict[str, list[bytes]]:
    """The hex dumps charon printed at level 4 (`name => N bytes @ addr` and the lines after),
    each name with its values in log order."""
    values: dict[str, list[bytes]] = {}
    current: str | None = None
    dump = bytearray()
    for line in path.read_text().splitlines():
        head = re.search(r"\] (.+?) => (\d+) bytes @", line)
        row = re.search(r"\]\s+\d+: ((?:[0-9A-F]{2} )+)", line)
        if head:
            if current is not None:
                values.setdefault(current, []).append(bytes(dump))
            current, dump = head.group(1), bytearray()
        elif row and current is not None:
            dump += bytes.fromhex(row.group(1).replace(" ", ""))
        elif current is not None:
            values.setdefault(current, []).append(bytes(dump))
            current = None
    return values


def ike_datagrams(path: Path) -> list[UdpDatagram]:
    """IKE messages only: port 500, or port 4500 with the non-ESP marker (stripped)."""
    result = []
    for d in read_pcap_udp(path):
        if 500 in (d.source[1], d.destination[1]):
            result.append(d)
        elif d.payload[:4] == b"\0\0\0\0":
            result.append(UdpDatagram(d.source, d.destination, d.payload[4:]))
    return result
