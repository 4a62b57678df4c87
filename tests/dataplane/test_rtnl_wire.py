"""rtnetlink route messages: what afbr packs it parses back; kernel-shaped dumps; junk."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given
from hypothesis import strategies as st

from afbr.dataplane.kernel_plan import route_key
from afbr.dataplane.rtnl_wire import (
    NLM_F_CREATE,
    NLM_F_REPLACE,
    RTM_NEWROUTE,
    RTPROT_AFBR,
    attr,
    parse_link,
    parse_routes,
    route_message,
)

_prefix4 = st.builds(
    lambda a, n: ipaddress.IPv4Network((a, n), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
_prefix6 = st.builds(
    lambda a, n: ipaddress.IPv6Network((a, n), strict=False),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)


@given(st.lists(st.tuples(st.one_of(_prefix4, _prefix6), st.integers(1, 2**31 - 1)), max_size=40))
def test_route_messages_parse_back(routes: list[tuple[ipaddress.IPv4Network, int]]) -> None:
    data = b"".join(
        route_message(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, i, route_key(p), oif, table=254)
        for i, (p, oif) in enumerate(routes)
    )
    found: dict[tuple[int, int, int], int] = {}
    parse_routes(data, found, 254)
    assert found == {route_key(p): oif for p, oif in routes}
    other: dict[tuple[int, int, int], int] = {}
    parse_routes(data, other, 100)  # another table: none of them
    assert other == {}


def kernel_route6(dst: bytes, plen: int, oif: int, proto: int = RTPROT_AFBR) -> bytes:
    """An RTM_NEWROUTE as the kernel dumps an IPv6 route (attribute order of rt6_fill_node)."""
    attrs = (
        attr(15, struct.pack("=I", 254))  # RTA_TABLE
        + attr(1, dst)  # RTA_DST
        + attr(6, struct.pack("=I", 1024))  # RTA_PRIORITY
        + attr(4, struct.pack("=I", oif))  # RTA_OIF
        + attr(12, bytes(16))  # RTA_CACHEINFO
        + attr(20, b"\x00")  # RTA_PREF
    )
    rtm = struct.pack("=BBBBBBBBI", 10, plen, 0, 0, 254, proto, 0, 1, 0)
    body = rtm + attrs
    return struct.pack("=IHHII", 16 + len(body), RTM_NEWROUTE, 2, 1, 0) + body


def test_kernel_shaped_dump_with_foreign_routes_mixed_in() -> None:
    dst = ipaddress.IPv6Address("2001:db8:1::").packed
    data = (
        kernel_route6(dst, 48, 7)
        + kernel_route6(dst, 64, 8, proto=3)  # RTPROT_BOOT: not afbr's
        + kernel_route6(dst, 56, 9)
    )
    found: dict[tuple[int, int, int], int] = {}
    parse_routes(data, found, 254)
    address = int.from_bytes(dst, "big")
    assert found == {(6, address, 48): 7, (6, address, 56): 9}


@given(st.binary(max_size=400))
def test_random_bytes_never_raise(data: bytes) -> None:
    parse_routes(data, {}, 254)


def test_link_attributes() -> None:
    payload = struct.pack("=BxHiII", 0, 778, 12, 0x1041, 0) + (
        attr(3, b"afbr0123456789a\0")
        + attr(4, struct.pack("=I", 1452))
        + attr(20, b"afbr:abc")
        + attr(18, attr(1, b"ip6gre"))
    )
    link = parse_link(payload)
    assert (link.index, link.name, link.kind, link.alias, link.mtu) == (
        12,
        "afbr0123456789a",
        "ip6gre",
        "afbr:abc",
        1452,
    )


def test_same_length_but_another_attribute_order_is_read_right() -> None:
    """Messages are read column-wise by shape: one whose attributes sit elsewhere is not."""
    dst = ipaddress.IPv6Address("2001:db8:2::").packed
    usual = kernel_route6(dst, 48, 7)
    swapped_attrs = (
        attr(15, struct.pack("=I", 254))
        + attr(1, dst)
        + attr(4, struct.pack("=I", 9))  # RTA_OIF before RTA_PRIORITY
        + attr(6, struct.pack("=I", 1024))
        + attr(12, bytes(16))
        + attr(20, b"\x00")
    )
    body = struct.pack("=BBBBBBBBI", 10, 56, 0, 0, 254, RTPROT_AFBR, 0, 1, 0) + swapped_attrs
    swapped = struct.pack("=IHHII", 16 + len(body), RTM_NEWROUTE, 2, 1, 0) + body
    assert len(swapped) == len(usual)
    found: dict[tuple[int, int, int], int] = {}
    parse_routes(
        usual + swapped + usual.replace(b"\x07\x00\x00\x00", b"\x08\x00\x00\x00"), found, 254
    )
    address = int.from_bytes(dst, "big")
    assert found == {(6, address, 48): 8, (6, address, 56): 9}
