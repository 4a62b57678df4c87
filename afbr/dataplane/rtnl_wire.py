"""rtnetlink and generic-netlink messages packed with `struct` (links, routes, dumps).

Route messages are built and parsed on the hot path of a 100k-route reconcile, so they use
one precompiled `Struct` each; link messages are few and use the attribute helpers.
Kernel references: include/uapi/linux/{netlink,rtnetlink,if_link,if_tunnel,genetlink}.h.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

NLMSG_HDR = struct.Struct("=IHHII")
NLA_HDR = struct.Struct("=HH")
IFINFOMSG = struct.Struct("=BxHiII")
RTMSG = struct.Struct("=BBBBBBBBI")
GENLMSG = struct.Struct("=BBH")

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300
NLA_F_NESTED = 0x8000

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO, IFLA_IFALIAS = 1, 3, 4, 18, 20
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_AF_SPEC, IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE = 26, 8, 1
IFF_UP, IFF_NOARP = 0x1, 0x80

RTA_DST, RTA_OIF, RTA_TABLE = 1, 4, 15
RT_TABLE_MAIN = 254
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTN_UNICAST = 1
# afbr's route protocol number: free in the kernel's list (rtnetlink.h) and iproute2's
# rt_protos; 0xAF for "AF" (address family border router).
RTPROT_AFBR = 175

GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 1, 2


def attr(kind: int, data: bytes) -> bytes:
    """One netlink attribute, padded to four bytes."""
    length = NLA_HDR.size + len(data)
    return NLA_HDR.pack(length, kind) + data + bytes((4 - length % 4) % 4)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def message(msg_type: int, flags: int, seq: int, payload: bytes) -> bytes:
    """A whole netlink message (header + payload, padded)."""
    body = payload + bytes((4 - len(payload) % 4) % 4)
    return (
        NLMSG_HDR.pack(NLMSG_HDR.size + len(body), msg_type, flags | NLM_F_REQUEST, seq, 0) + body
    )


def parse_attrs(raw: bytes | memoryview) -> dict[int, bytes]:
    """Attributes of a payload by type (the nested flag stripped); a short tail is ignored."""
    found: dict[int, bytes] = {}
    offset, end = 0, len(raw)
    while offset + 4 <= end:
        length, kind = NLA_HDR.unpack_from(raw, offset)
        if length < 4 or offset + length > end:
            break
        found[kind & 0x3FFF] = bytes(raw[offset + 4 : offset + length])
        offset += (length + 3) & ~3
    return found


def cstring(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode(errors="replace")


# --- links ---------------------------------------------------------------------------------


def new_link(seq: int, name: str, kind: str, info_data: bytes, mtu: int) -> bytes:
    """RTM_NEWLINK creating a tunnel device (fails with EEXIST if the name is taken)."""
    payload = (
        IFINFOMSG.pack(0, 0, 0, 0, 0)
        + attr(IFLA_IFNAME, name.encode() + b"\0")
        + attr(IFLA_MTU, struct.pack("=I", mtu))
        + nested(
            IFLA_LINKINFO, attr(IFLA_INFO_KIND, kind.encode()), attr(IFLA_INFO_DATA, info_data)
        )
    )
    return message(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, seq, payload)


def change_link(
    seq: int, index: int, kind: str, info_data: bytes, *, mtu: int, alias: str
) -> bytes:
    """RTM_NEWLINK changing a tunnel device in place (same kind, same ifindex), up."""
    payload = (
        IFINFOMSG.pack(0, 0, index, IFF_UP, IFF_UP)
        + attr(IFLA_MTU, struct.pack("=I", mtu))
        + attr(IFLA_IFALIAS, alias.encode())
        + nested(
            IFLA_LINKINFO, attr(IFLA_INFO_KIND, kind.encode()), attr(IFLA_INFO_DATA, info_data)
        )
    )
    return message(RTM_NEWLINK, NLM_F_ACK, seq, payload)


def set_link(
    seq: int, name: str, *, alias: str, mtu: int, noarp: bool, address: bytes | None
) -> bytes:
    """RTM_NEWLINK on an existing device by name: alias, MTU, up, ARP flag, MAC address."""
    # Only set NOARP (L2TP's Ethernet), never clear it: tunnel and xfrm devices are NOARP by
    # nature, and an xfrm device without it tries ARP and drops every packet.
    flags = IFF_UP | (IFF_NOARP if noarp else 0)
    change = IFF_UP | (IFF_NOARP if noarp else 0)
    attrs = (
        attr(IFLA_IFNAME, name.encode() + b"\0")
        + attr(IFLA_IFALIAS, alias.encode())
        + attr(IFLA_MTU, struct.pack("=I", mtu))
    )
    if address is not None:
        attrs += attr(IFLA_ADDRESS, address)
    payload = IFINFOMSG.pack(0, 0, 0, flags, change) + attrs
    return message(RTM_NEWLINK, NLM_F_ACK, seq, payload)


def set_link_no_ipv6_addresses(seq: int, name: str) -> bytes:
    """RTM_NEWLINK: no IPv6 link-local address (so no router solicitations) on a softwire."""
    mode = attr(IFLA_INET6_ADDR_GEN_MODE, bytes([IN6_ADDR_GEN_MODE_NONE]))
    payload = (
        IFINFOMSG.pack(0, 0, 0, 0, 0)
        + attr(IFLA_IFNAME, name.encode() + b"\0")
        + nested(IFLA_AF_SPEC, nested(socket.AF_INET6, mode))
    )
    return message(RTM_NEWLINK, NLM_F_ACK, seq, payload)


def del_link(seq: int, index: int) -> bytes:
    return message(RTM_DELLINK, NLM_F_ACK, seq, IFINFOMSG.pack(0, 0, index, 0, 0))


def dump_links(seq: int) -> bytes:
    return message(RTM_GETLINK, NLM_F_DUMP, seq, IFINFOMSG.pack(0, 0, 0, 0, 0))


@dataclass(frozen=True)
class LinkInfo:
    """One link as the kernel reports it."""

    index: int
    name: str
    kind: str
    alias: str
    mtu: int
    flags: int
    address: bytes


def parse_link(payload: bytes | memoryview) -> LinkInfo:
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(payload, 0)
    attrs = parse_attrs(memoryview(payload)[IFINFOMSG.size :])
    info = parse_attrs(attrs.get(IFLA_LINKINFO, b""))
    return LinkInfo(
        index=index,
        name=cstring(attrs.get(IFLA_IFNAME, b"")),
        kind=cstring(info.get(IFLA_INFO_KIND, b"")),
        alias=cstring(attrs.get(IFLA_IFALIAS, b"")),
        mtu=struct.unpack("=I", attrs[IFLA_MTU])[0] if IFLA_MTU in attrs else 0,
        flags=flags,
        address=attrs.get(IFLA_ADDRESS, b""),
    )


# --- routes --------------------------------------------------------------------------------

RouteKey = tuple[int, int, int]  # (4 or 6, destination address as an int, prefix length)
_ROUTE4 = struct.Struct("=IHHII BBBBBBBBI HH4s HHI HHI")
_ROUTE6 = struct.Struct("=IHHII BBBBBBBBI HH16s HHI HHI")
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}


def route_message(
    msg_type: int, flags: int, seq: int, key: RouteKey, oif: int, *, table: int
) -> bytes:
    """RTM_NEWROUTE / RTM_DELROUTE for a device route with afbr's protocol (one pack call)."""
    version, address, plen = key
    dst = address.to_bytes(4 if version == 4 else 16, "big")
    layout = _ROUTE4 if version == 4 else _ROUTE6
    scope = RT_SCOPE_LINK if version == 4 and msg_type == RTM_NEWROUTE else RT_SCOPE_UNIVERSE
    if msg_type == RTM_DELROUTE:
        scope = 255  # RT_SCOPE_NOWHERE: match any scope on delete
    return layout.pack(
        layout.size,
        msg_type,
        flags | NLM_F_REQUEST,
        seq,
        0,
        _FAMILY[version],
        plen,
        0,
        0,
        table if table < 256 else 252,  # RT_TABLE_COMPAT: the real id is in RTA_TABLE
        RTPROT_AFBR,
        scope,
        RTN_UNICAST,
        0,
        4 + len(dst),
        RTA_DST,
        dst,
        8,
        RTA_OIF,
        oif,
        8,
        RTA_TABLE,
        table,
    )


def dump_routes(seq: int, *, version: int, table: int) -> bytes:
    """A route dump filtered by the kernel to afbr's protocol and one table (strict check)."""
    payload = RTMSG.pack(_FAMILY[version], 0, 0, 0, 0, RTPROT_AFBR, 0, 0, 0) + attr(
        RTA_TABLE, struct.pack("=I", table)
    )
    return message(RTM_GETROUTE, NLM_F_DUMP, seq, payload)


@dataclass(frozen=True)
class _RouteShape:
    """One shape of route message: its length and where its attributes sit.

    A dump repeats a few shapes (one per family, mostly).  The first message of each length
    is walked attribute by attribute; a run of later messages of that length is then read
    column by column with strided slices (no per-message Python work but the address), and
    only the messages whose header and attribute headers equal the first one's are taken.
    """

    size: int
    header_words: tuple[int, ...]  # word index of each attribute header, and of nlmsg type
    header_values: tuple[int, ...]  # what those words hold in this shape
    dst: int  # byte offset of the RTA_DST value, -1 when absent
    dst_len: int
    oif: int  # byte offset of the RTA_OIF value
    table: int  # byte offset of the RTA_TABLE value, -1 when absent


def _route_shape(view: memoryview, offset: int, length: int) -> _RouteShape | None:
    if length % 4:
        return None
    words = [1]  # nlmsg type + flags
    values = {RTA_DST: (-1, 0), RTA_OIF: (-1, 0), RTA_TABLE: (-1, 0)}
    pos, stop = offset + 28, offset + length
    while pos + 4 <= stop:
        alen, kind = NLA_HDR.unpack_from(view, pos)
        padded = (alen + 3) & ~3
        if alen < 4 or pos + padded > stop:
            return None
        words.append((pos - offset) // 4)
        if kind in values and (kind == RTA_DST or alen == 8):
            values[kind] = (pos - offset + 4, alen - 4)
        pos += padded
    if values[RTA_OIF][0] < 0 or pos != stop:
        return None
    first = view[offset : offset + length].cast("I")
    return _RouteShape(
        length,
        tuple(words),
        tuple(first[word] for word in words),
        values[RTA_DST][0],
        values[RTA_DST][1],
        values[RTA_OIF][0],
        values[RTA_TABLE][0],
    )


def parse_routes(buffer: bytes | memoryview, found: dict[RouteKey, int], table: int) -> None:
    """Add afbr's routes of `table` in a buffer of RTM_NEWROUTE messages to `found` (key->oif)."""
    view = memoryview(buffer)
    unpack_hdr = NLMSG_HDR.unpack_from
    shapes: dict[int, _RouteShape | None] = {}
    offset, end = 0, len(view)
    while offset + 16 <= end:
        length, msg_type = unpack_hdr(view, offset)[:2]
        if length < 16 or offset + length > end:
            break
        if msg_type == RTM_NEWROUTE and length >= 28:
            if length not in shapes:
                shapes[length] = _route_shape(view, offset, length)
            shape = shapes[length]
            if shape is not None and offset % 4 == 0:
                done = _add_run(found, table, view, offset, shape)
                if done:
                    offset += done * length
                    continue
            _add_route_slowly(found, table, view, offset, length)
        offset += (length + 3) & ~3


def _same_prefix(column: list[int], expected: int) -> int:
    """How many leading entries of `column` equal `expected`."""
    if column.count(expected) == len(column):
        return len(column)
    return next(i for i, value in enumerate(column) if value != expected)


def _add_run(
    found: dict[RouteKey, int], table: int, view: memoryview, offset: int, shape: _RouteShape
) -> int:
    """Add the run of same-shape messages starting at `offset`; return how many it used."""
    size = shape.size
    count = (len(view) - offset) // size
    run = view[offset : offset + count * size]
    words = run.cast("I")
    stride = size // 4
    count = _same_prefix(words[0::stride].tolist(), size)  # nlmsg_len
    # nlmsg type+flags, then every attribute's length+type: as in the shape's first message
    for word, value in zip(shape.header_words, shape.header_values, strict=True):
        count = min(count, _same_prefix(words[word::stride].tolist(), value))
    if count == 0:
        return 0
    run = run[: count * size]
    words = words[: count * stride]
    families = run[16::size].tolist()
    plens = run[17::size].tolist()
    protos = run[21::size].tolist()
    tables = words[shape.table // 4 :: stride].tolist() if shape.table >= 0 else run[20::size]
    oifs = words[shape.oif // 4 :: stride].tolist()
    addresses = _addresses(run, shape, count)
    version = 4 if families[0] == socket.AF_INET else 6
    if (
        families.count(families[0]) == count
        and protos.count(RTPROT_AFBR) == count
        and list(tables).count(table) == count
    ):  # the usual case: the kernel filtered the dump by protocol and table
        keys = zip([version] * count, addresses, plens, strict=True)
        found.update(zip(keys, oifs, strict=True))
        return count
    for i in range(count):
        if protos[i] == RTPROT_AFBR and tables[i] == table:
            family = 4 if families[i] == socket.AF_INET else 6
            found[(family, addresses[i], plens[i])] = oifs[i]
    return count


def _addresses(run: memoryview, shape: _RouteShape, count: int) -> list[int]:
    """The RTA_DST value of each message of a run, as an int (network byte order)."""
    dst, dst_len, size = shape.dst, shape.dst_len, shape.size
    if dst < 0:
        return [0] * count
    after = size - dst - dst_len
    if dst_len == 4:
        return [a for (a,) in struct.iter_unpack(f">{dst}xI{after}x", run)]
    if dst_len == 16:
        return [(hi << 64) | lo for hi, lo in struct.iter_unpack(f">{dst}xQQ{after}x", run)]
    return [
        int.from_bytes(run[i + dst : i + dst + dst_len], "big")
        for i in range(0, count * size, size)
    ]


def _add_route_slowly(
    found: dict[RouteKey, int], table: int, view: memoryview, offset: int, length: int
) -> None:
    family, plen, _s, _t, rt_table, proto = RTMSG.unpack_from(view, offset + 16)[:6]
    if proto != RTPROT_AFBR:
        return
    attrs = parse_attrs(view[offset + 28 : offset + length])
    tab = int.from_bytes(attrs[RTA_TABLE], "little") if RTA_TABLE in attrs else rt_table
    if tab == table:
        oif = int.from_bytes(attrs.get(RTA_OIF, b"\0\0\0\0"), "little")
        address = int.from_bytes(attrs.get(RTA_DST, b""), "big")
        found[(4 if family == socket.AF_INET else 6, address, plen)] = oif


def iter_messages(buffer: bytes | memoryview) -> Iterator[tuple[int, int, int, memoryview]]:
    """(type, flags, seq, payload) of each message in a receive buffer."""
    view = memoryview(buffer)
    offset, end = 0, len(view)
    while offset + 16 <= end:
        length, msg_type, flags, seq, _pid = NLMSG_HDR.unpack_from(view, offset)
        if length < 16 or offset + length > end:
            break
        yield msg_type, flags, seq, view[offset + 16 : offset + length]
        offset += (length + 3) & ~3


# --- generic netlink -----------------------------------------------------------------------


def genl_message(family_id: int, cmd: int, flags: int, seq: int, attrs: bytes) -> bytes:
    return message(family_id, flags, seq, GENLMSG.pack(cmd, 1, 0) + attrs)


def get_family(seq: int, name: str) -> bytes:
    return genl_message(
        GENL_ID_CTRL, CTRL_CMD_GETFAMILY, NLM_F_ACK, seq,
        attr(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0"),
    )  # fmt: skip
