"""A bounds-checked octet buffer for wire codecs: `pull_*` reads, `push_*` writes.

Every read checks the length first and raises :class:`WireBufferError` (never IndexError or
struct.error).  Offsets in errors are absolute: a block pulled out of a buffer keeps counting
from where it sits in the outermost data, so a codec can report the offset of a bad field
within the whole attribute.
"""

from __future__ import annotations


class WireBufferError(Exception):
    """A read past the end of the buffer (or a write of a value that does not fit)."""

    def __init__(self, offset: int, reason: str) -> None:
        self.offset = offset
        self.reason = reason
        super().__init__(f"offset {offset}: {reason}")


class WireBuffer:
    """Octets read from the front (`pull_*`) and appended at the back (`push_*`)."""

    __slots__ = ("_base", "_data", "_pos")

    def __init__(self, data: bytes = b"", *, base_offset: int = 0) -> None:
        self._data = bytearray(data)
        self._pos = 0
        self._base = base_offset

    @property
    def offset(self) -> int:
        """The absolute offset of the next octet to read."""
        return self._base + self._pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def eof(self) -> bool:
        return self._pos >= len(self._data)

    def to_bytes(self) -> bytes:
        """Everything in the buffer, read or not."""
        return bytes(self._data)

    def _need(self, size: int, what: str) -> None:
        if size < 0 or size > self.remaining:
            raise WireBufferError(self.offset, f"{what} needs {size} octets, {self.remaining} left")

    def pull_bytes(self, size: int, what: str = "field") -> bytes:
        self._need(size, what)
        start = self._pos
        self._pos += size
        return bytes(self._data[start : self._pos])

    def pull_uint(self, size: int, what: str = "field") -> int:
        return int.from_bytes(self.pull_bytes(size, what), "big")

    def pull_u8(self, what: str = "field") -> int:
        return self.pull_uint(1, what)

    def pull_u16(self, what: str = "field") -> int:
        return self.pull_uint(2, what)

    def pull_u32(self, what: str = "field") -> int:
        return self.pull_uint(4, what)

    def pull_rest(self) -> bytes:
        return self.pull_bytes(self.remaining)

    def pull_block(self, size: int, what: str = "block") -> WireBuffer:
        """The next `size` octets as a buffer of their own, keeping absolute offsets."""
        start = self.offset
        return WireBuffer(self.pull_bytes(size, what), base_offset=start)

    def push_bytes(self, value: bytes) -> None:
        self._data += value

    def push_uint(self, size: int, value: int) -> None:
        if not 0 <= value < 1 << (8 * size):
            raise WireBufferError(
                self._base + len(self._data), f"{value} does not fit in {size} octets"
            )
        self._data += value.to_bytes(size, "big")

    def push_u8(self, value: int) -> None:
        self.push_uint(1, value)

    def push_u16(self, value: int) -> None:
        self.push_uint(2, value)

    def push_u32(self, value: int) -> None:
        self.push_uint(4, value)
