"""The three kinds of failure in the Mobile IPv4 core (DESIGN.md section 4, rule 3).

- :class:`DecodeError`: bytes from the wire are malformed. It names where the
  problem is and what the decoder expected there, so a dropped datagram can be
  logged with a precise reason. Decoders raise nothing else on bad input.
- :class:`LocalProtocolError`: *we* misused the API (an illegal state
  transition, a value that cannot be encoded).
- :class:`RemoteProtocolError`: the peer's message was well formed but breaks
  the protocol (wrong identification, failed authentication, ...).
"""

from __future__ import annotations

__all__ = ["DecodeError", "LocalProtocolError", "RemoteProtocolError"]


class DecodeError(ValueError):
    """Malformed input: ``offset`` is the byte position, ``expected`` says what should be there.

    ``str()`` reads like ``offset 12: expected 4 bytes of SPI, got 2``.
    """

    offset: int
    expected: str
    detail: str

    def __init__(self, offset: int, expected: str, detail: str = "") -> None:
        self.offset = offset
        self.expected = expected
        self.detail = detail
        message = f"offset {offset}: expected {expected}"
        if detail:
            message += f", {detail}"
        super().__init__(message)

    def __reduce__(self) -> tuple[type[DecodeError], tuple[int, str, str]]:
        # Keep pickling (used by multiprocessing and some test runners) faithful.
        return (type(self), (self.offset, self.expected, self.detail))


class LocalProtocolError(Exception):
    """We misused the API: an illegal transition or a value that cannot go on the wire."""


class RemoteProtocolError(Exception):
    """The peer violated the protocol with a well-formed message."""
