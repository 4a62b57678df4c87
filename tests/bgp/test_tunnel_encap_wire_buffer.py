"""The bounds-checked buffer under the Tunnel Encapsulation codec."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from afbr.bgp.wire_buffer import WireBuffer, WireBufferError


def test_pull_reads_big_endian_fields_in_order() -> None:
    buf = WireBuffer(bytes.fromhex("01 0203 04050607 0809"))
    assert buf.pull_u8() == 0x01
    assert buf.pull_u16() == 0x0203
    assert buf.pull_u32() == 0x04050607
    assert buf.offset == 7
    assert buf.remaining == 2
    assert buf.pull_rest() == b"\x08\x09"
    assert buf.eof()


def test_read_past_the_end_names_the_offset() -> None:
    buf = WireBuffer(b"\x00\x01\x02")
    buf.pull_u16()
    with pytest.raises(WireBufferError) as caught:
        buf.pull_u16("length")
    assert caught.value.offset == 2
    assert caught.value.reason == "length needs 2 octets, 1 left"
    assert buf.offset == 2  # a failed read consumes nothing


def test_block_keeps_absolute_offsets() -> None:
    buf = WireBuffer(bytes(10), base_offset=100)
    buf.pull_bytes(3)
    block = buf.pull_block(4)
    assert (block.offset, block.remaining, buf.offset) == (103, 4, 107)
    block.pull_u32()
    with pytest.raises(WireBufferError) as caught:
        block.pull_u8()
    assert caught.value.offset == 107


def test_block_longer_than_what_is_left_is_refused() -> None:
    with pytest.raises(WireBufferError):
        WireBuffer(b"abc").pull_block(4)


def test_push_refuses_values_that_do_not_fit() -> None:
    buf = WireBuffer()
    with pytest.raises(WireBufferError):
        buf.push_u8(256)
    with pytest.raises(WireBufferError):
        buf.push_u16(-1)
    assert buf.to_bytes() == b""


@given(st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.binary())
def test_push_then_pull_gives_the_same_values(u8: int, u16: int, u32: int, blob: bytes) -> None:
    out = WireBuffer()
    out.push_u8(u8)
    out.push_u16(u16)
    out.push_u32(u32)
    out.push_bytes(blob)
    back = WireBuffer(out.to_bytes())
    assert (back.pull_u8(), back.pull_u16(), back.pull_u32(), back.pull_rest()) == (
        u8,
        u16,
        u32,
        blob,
    )
    assert back.eof()
