"""Mutation operators for structure-aware fuzzing, usable from Hypothesis and from atheris.

An operation is a triple of integers ``(kind, a, b)``; :func:`apply_ops` applies a list of
them to a valid encoding. Hypothesis draws the triples (so failures shrink to few, small
operations); the atheris custom mutator draws them from a seeded ``random.Random``.
Kinds cover bytes (bit flips, interesting values, insert/delete/duplicate), lengths (small
arithmetic on one byte, truncation) and text (replace a token with a dictionary entry,
duplicate/delete/swap lines, change line endings).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from hypothesis import strategies as st

INTERESTING = (
    b"\x00", b"\xff", b"\x7f", b"\x80", b"\x01", b"\x00\x00", b"\xff\xff", b"\x80\x00",
    b"\x7f\xff", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x80\x00\x00\x00",
)
GENERIC_TOKENS = (
    b"", b"0", b"-1", b"99999999999999999999", b"\xc2\xb2", b"\xff", b"\x00", b"\r", b"\n",
    b"\r\n", b" ", b"\t", b"=", b",", b'"', b":", b"[", b"]", b"\xe2\x80\xa8", b"1e400", b"nan",
)
N_KINDS = 13
_SPLIT = re.compile(rb"([\s,=:;\"\[\]]+)")


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True) or [b""]


def apply_op(data: bytes, kind: int, a: int, b: int, tokens: Sequence[bytes]) -> bytes:
    n = len(data)
    kind %= N_KINDS
    if kind == 0 and n:  # flip one bit
        i = a % n
        return data[:i] + bytes([data[i] ^ (1 << (b % 8))]) + data[i + 1 :]
    if kind == 1 and n:  # set one byte
        i = a % n
        return data[:i] + bytes([b & 0xFF]) + data[i + 1 :]
    if kind == 2:  # insert one byte
        i = a % (n + 1)
        return data[:i] + bytes([b & 0xFF]) + data[i:]
    if kind == 3 and n:  # delete a short range
        i = a % n
        return data[:i] + data[i + 1 + b % 8 :]
    if kind == 4:  # truncate
        return data[: a % (n + 1)]
    if kind == 5 and n:  # duplicate a chunk
        i = a % n
        chunk = data[i : i + 1 + b % 16]
        return data[: i + len(chunk)] + chunk + data[i + len(chunk) :]
    if kind == 6 and n:  # overwrite with an interesting value (length fields, flags)
        i = a % n
        value = INTERESTING[b % len(INTERESTING)]
        return data[:i] + value + data[i + len(value) :]
    if kind == 7 and n:  # small arithmetic on one byte: lengths off by one or two
        i = a % n
        return data[:i] + bytes([(data[i] + (b % 5) - 2) & 0xFF]) + data[i + 1 :]
    if kind == 8:  # insert a dictionary token
        i = a % (n + 1)
        token = tokens[b % len(tokens)]
        return data[:i] + token + data[i:]
    if kind == 9:  # replace one token (between separators) with a dictionary token
        parts = _SPLIT.split(data)
        words = [j for j in range(0, len(parts), 2)]
        j = words[a % len(words)]
        parts[j] = tokens[b % len(tokens)]
        return b"".join(parts)
    if kind == 10:  # duplicate, delete or swap whole lines
        lines = _lines(data)
        i, j = a % len(lines), b % len(lines)
        if b % 3 == 0:
            lines.insert(i, lines[i])
        elif b % 3 == 1 and len(lines) > 1:
            del lines[i]
        else:
            lines[i], lines[j] = lines[j], lines[i]
        return b"".join(lines)
    if kind == 11:  # change one line ending
        lines = _lines(data)
        i = a % len(lines)
        body = lines[i].rstrip(b"\r\n")
        lines[i] = body + (b"\r\n", b"\n", b"\r", b"", b"\n\r", b"\r\r\n")[b % 6]
        return b"".join(lines)
    if kind == 12 and n:  # overwrite a 16-bit big-endian length-like field with a nearby value
        i = a % n
        old = int.from_bytes(data[i : i + 2].ljust(2, b"\x00"), "big")
        new = (old + (b % 9) - 4) & 0xFFFF
        return data[:i] + new.to_bytes(2, "big") + data[i + 2 :]
    return data


def apply_ops(data: bytes, ops: Sequence[tuple[int, int, int]], tokens: Sequence[bytes]) -> bytes:
    tokens = tuple(tokens) or GENERIC_TOKENS
    for kind, a, b in ops:
        data = apply_op(data, kind, a, b, tokens)
    return data


def random_ops(rnd: random.Random, count: int) -> list[tuple[int, int, int]]:
    return [(rnd.randrange(N_KINDS), rnd.getrandbits(16), rnd.getrandbits(16)) for _ in range(count)]


ops_strategy = st.lists(
    st.tuples(st.integers(0, N_KINDS - 1), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    max_size=4,
)


def mutated(seeds: st.SearchStrategy[bytes], tokens: Sequence[bytes]) -> st.SearchStrategy[bytes]:
    """Valid encodings from ``seeds`` with a few mutation operations applied."""
    merged = tuple(tokens) + GENERIC_TOKENS
    return st.builds(lambda seed, ops: apply_ops(seed, ops, merged), seeds, ops_strategy)
