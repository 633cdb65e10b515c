"""Small stream adapters shared by the readers of untrusted archives and tarballs."""

from __future__ import annotations

import io
from typing import Any, BinaryIO


class Prefixed(io.RawIOBase):
    """A stream with its already-read first bytes put back in front (compression is sniffed on a pipe,
    which cannot seek back)."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(b))
        b[: len(data)] = data
        return len(data)
