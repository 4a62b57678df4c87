"""A bounds-checked byte buffer for the IKEv2 codec (pull_x / push_x pairs read and write it)."""

from __future__ import annotations

import struct

from afbr.ipsec.ike_errors import IkeDecodeError, IkeTruncatedError

_UINT16 = struct.Struct("!H")
_UINT32 = struct.Struct("!I")
_GENERIC_HEADER = struct.Struct("!BBH")


class IkeBuffer:
    """Reads from `data` (or writes to an empty buffer); every read checks the length first."""

    __slots__ = ("_data", "_out", "_pos")

    def __init__(self, data: bytes = b"") -> None:
        self._data = data
        self._pos = 0
        self._out = bytearray()

    # -- reading -----------------------------------------------------------------------------
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def eof(self) -> bool:
        return self._pos >= len(self._data)

    def tell(self) -> int:
        return self._pos

    def pull_bytes(self, length: int) -> bytes:
        if length < 0 or self._pos + length > len(self._data):
            raise IkeTruncatedError(f"truncated: need {length} bytes, have {self.remaining()}")
        chunk = self._data[self._pos : self._pos + length]
        self._pos += length
        return chunk

    def pull_rest(self) -> bytes:
        return self.pull_bytes(self.remaining())

    def pull_uint8(self) -> int:
        pos = self._pos
        if pos >= len(self._data):
            raise IkeTruncatedError("truncated: need 1 byte, have 0")
        self._pos = pos + 1
        return self._data[pos]

    def pull_uint16(self) -> int:
        pos = self._pos
        if pos + 2 > len(self._data):
            raise IkeTruncatedError(f"truncated: need 2 bytes, have {self.remaining()}")
        self._pos = pos + 2
        value: int = _UINT16.unpack_from(self._data, pos)[0]
        return value

    def pull_uint32(self) -> int:
        pos = self._pos
        if pos + 4 > len(self._data):
            raise IkeTruncatedError(f"truncated: need 4 bytes, have {self.remaining()}")
        self._pos = pos + 4
        value: int = _UINT32.unpack_from(self._data, pos)[0]
        return value

    def pull_generic_header(self) -> tuple[int, int, int]:
        """Two octets and a 16-bit length: the shape of payload, proposal and transform
        headers (RFC 7296 §3.2, §3.3.1, §3.3.2)."""
        pos = self._pos
        if pos + 4 > len(self._data):
            raise IkeTruncatedError(f"truncated: need 4 bytes, have {self.remaining()}")
        self._pos = pos + 4
        fields: tuple[int, int, int] = _GENERIC_HEADER.unpack_from(self._data, pos)
        return fields

    def pull_uint64(self) -> int:
        value: int = struct.unpack("!Q", self.pull_bytes(8))[0]
        return value

    def pull_block(self, length: int) -> IkeBuffer:
        """A sub-buffer of exactly `length` bytes; the caller must consume all of it."""
        return IkeBuffer(self.pull_bytes(length))

    def expect_end(self) -> None:
        if not self.eof():
            raise IkeDecodeError(f"{self.remaining()} bytes left over")

    # -- writing -----------------------------------------------------------------------------
    def push_bytes(self, data: bytes) -> None:
        self._out += data

    def push_uint8(self, value: int) -> None:
        self._out.append(value & 0xFF)

    def push_uint16(self, value: int) -> None:
        self._out += _UINT16.pack(value & 0xFFFF)

    def push_uint32(self, value: int) -> None:
        self._out += _UINT32.pack(value & 0xFFFFFFFF)

    def push_uint64(self, value: int) -> None:
        self._out += struct.pack("!Q", value & 0xFFFFFFFFFFFFFFFF)

    def written(self) -> bytes:
        return bytes(self._out)
