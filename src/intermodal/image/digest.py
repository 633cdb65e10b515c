"""Content digests as the OCI image spec defines them (descriptor.md#digests): `algorithm:encoded`."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from intermodal.errors import InvalidArgument

_SHA256_HEX = re.compile(r"^[a-f0-9]{64}$")


@dataclass(frozen=True, order=True)
class Digest:
    """A sha256 digest. Only sha256 is accepted: it is the one algorithm every registry and runtime supports."""

    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        algorithm, sep, encoded = text.partition(":")
        if not sep or algorithm != "sha256" or not _SHA256_HEX.match(encoded):
            raise InvalidArgument(f"invalid digest {text!r}: expected sha256:<64 lowercase hex digits>")
        return cls(encoded)

    @classmethod
    def of_bytes(cls, data: bytes) -> Digest:
        return cls(hashlib.sha256(data).hexdigest())

    @property
    def short(self) -> str:
        """The 12-character form Docker prints in tables."""
        return self.hex[:12]

    def __str__(self) -> str:
        return f"sha256:{self.hex}"


def is_hex_prefix(text: str) -> bool:
    return 1 <= len(text) <= 64 and all(c in "0123456789abcdef" for c in text)
