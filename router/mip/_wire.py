"""Pull/push primitives shared by the Mobile IP codecs (private).

The shape follows aioquic's ``Buffer``: a :class:`Reader` pulls fixed-size
fields from a window of the input and raises :class:`DecodeError` naming the
offset and the field when the window is too short, so no ``IndexError`` or
``struct.error`` can escape a decoder. A :class:`Writer` pushes fields and
raises :class:`LocalProtocolError` when a value does not fit its field: that
is our misuse of the API, never the peer's fault.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from router.mip.errors import DecodeError, LocalProtocolError

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_I32 = struct.Struct("!i")
_U64 = struct.Struct("!Q")


def _plural(n: int) -> str:
    return "byte" if n == 1 else "bytes"


class Reader:
    """Reads big-endian fields from ``data[pos:end]``; offsets are absolute in ``data``."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def eof(self) -> bool:
        return self.pos >= self.end

    def need(self, n: int, what: str) -> None:
        """Raise unless ``n`` more bytes of ``what`` are available."""
        have = self.end - self.pos
        if have < n:
            raise DecodeError(self.pos, f"{n} {_plural(n)} of {what}", f"got {have}")

    def pull_bytes(self, n: int, what: str) -> bytes:
        self.need(n, what)
        start = self.pos
        self.pos = start + n
        return self.data[start : self.pos]

    def pull_rest(self) -> bytes:
        start = self.pos
        self.pos = self.end
        return self.data[start : self.end]

    def pull_uint8(self, what: str) -> int:
        self.need(1, what)
        value = self.data[self.pos]
        self.pos += 1
        return value

    def pull_uint16(self, what: str) -> int:
        self.need(2, what)
        (value,) = _U16.unpack_from(self.data, self.pos)
        self.pos += 2
        return int(value)

    def pull_uint32(self, what: str) -> int:
        self.need(4, what)
        (value,) = _U32.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(value)

    def pull_int32(self, what: str) -> int:
        self.need(4, what)
        (value,) = _I32.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(value)

    def pull_uint64(self, what: str) -> int:
        self.need(8, what)
        (value,) = _U64.unpack_from(self.data, self.pos)
        self.pos += 8
        return int(value)

    def pull_ipv4(self, what: str) -> IPv4Address:
        return IPv4Address(self.pull_bytes(4, what))

    def sub_reader(self, n: int, what: str) -> Reader:
        """A reader over the next ``n`` bytes (e.g. one extension's data); skips them here."""
        self.need(n, what)
        sub = Reader(self.data, self.pos, self.pos + n)
        self.pos += n
        return sub


class Writer:
    """Appends big-endian fields; range-checks every value against its field width."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def __len__(self) -> int:
        return len(self.buf)

    def getvalue(self) -> bytes:
        return bytes(self.buf)

    @staticmethod
    def _check(value: int, bits: int, what: str, signed: bool = False) -> None:
        if signed:
            low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        else:
            low, high = 0, (1 << bits) - 1
        # bool is an int subclass; refuse other types so a str or float never reaches struct.
        if not isinstance(value, int) or not low <= value <= high:
            raise LocalProtocolError(f"{what} must be an integer in [{low}, {high}], got {value!r}")

    def push_bytes(self, value: bytes) -> None:
        self.buf += value

    def push_uint8(self, value: int, what: str) -> None:
        self._check(value, 8, what)
        self.buf.append(value)

    def push_uint16(self, value: int, what: str) -> None:
        self._check(value, 16, what)
        self.buf += _U16.pack(value)

    def push_uint32(self, value: int, what: str) -> None:
        self._check(value, 32, what)
        self.buf += _U32.pack(value)

    def push_int32(self, value: int, what: str) -> None:
        self._check(value, 32, what, signed=True)
        self.buf += _I32.pack(value)

    def push_uint64(self, value: int, what: str) -> None:
        self._check(value, 64, what)
        self.buf += _U64.pack(value)

    def push_ipv4(self, value: IPv4Address, what: str) -> None:
        if not isinstance(value, IPv4Address):
            raise LocalProtocolError(f"{what} must be an IPv4Address, got {value!r}")
        self.buf += value.packed

    def patch_uint8(self, at: int, value: int, what: str) -> None:
        self._check(value, 8, what)
        self.buf[at] = value

    def patch_uint16(self, at: int, value: int, what: str) -> None:
        self._check(value, 16, what)
        _U16.pack_into(self.buf, at, value)


def internet_checksum(data: bytes) -> int:
    """The 16-bit one's complement of the one's complement sum (RFC 1071; RFC 1256 section 3)."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
