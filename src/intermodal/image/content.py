"""Content-addressed blob store (containerd's content store): write under an ingest file, commit by digest.

A blob becomes visible only after its bytes are on disk, fsynced, and proven to match the expected digest
and size; commit is a rename, so a crash leaves either nothing or a complete blob. Every read verifies.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from intermodal.errors import CorruptContent, NotFound
from intermodal.fsutil import fsync_dir
from intermodal.image.digest import Digest

_CHUNK = 1 << 20


class IngestWriter:
    """An in-progress blob. Write bytes, then `commit()`; on error or `abort()` the ingest file is removed
    unless it was opened with a `ref` for resuming (then partial bytes are kept for the next attempt)."""

    def __init__(
        self, store: ContentStore, path: Path, expected: Digest | None, size: int | None, keep: bool
    ):
        self._store = store
        self._path = path
        self._expected = expected
        self._size = size
        self._keep_partial = keep
        self._hash = hashlib.sha256()
        self.offset = 0
        if keep and path.exists():
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    self._hash.update(chunk)
                    self.offset += len(chunk)
        self._file: BinaryIO = open(path, "ab")  # noqa: SIM115 - closed in commit/abort
        self.committed: Digest | None = None

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.offset += len(data)

    def commit(self) -> Digest:
        """Verify, fsync and rename into place. Raises CorruptContent (and discards the bytes) on mismatch."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        digest = Digest(self._hash.hexdigest())
        if (self._expected and digest != self._expected) or (
            self._size is not None and self.offset != self._size
        ):
            self._path.unlink(missing_ok=True)
            raise CorruptContent(
                f"content mismatch: expected {self._expected or '?'} ({self._size} bytes), got {digest} "
                f"({self.offset} bytes); the blob was discarded, retry the transfer"
            )
        target = self._store.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self._path, 0o444)
        os.replace(self._path, target)
        fsync_dir(target.parent)
        self.committed = digest
        return digest

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        if not self._keep_partial:
            self._path.unlink(missing_ok=True)


class VerifyingReader:
    """A file-like reader over a blob that raises CorruptContent as soon as all of its bytes have been read
    and they do not match the digest (readers that stop at the exact size never ask for EOF)."""

    def __init__(self, path: Path, digest: Digest):
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()/context manager
        self._size = os.fstat(self._file.fileno()).st_size
        self._digest = digest
        self._hash = hashlib.sha256()
        self._read = 0
        self._checked = False

    def read(self, n: int = -1) -> bytes:
        data = self._file.read(n)
        self._hash.update(data)
        self._read += len(data)
        if not self._checked and (self._read >= self._size or not data):
            self._checked = True
            if self._hash.hexdigest() != self._digest.hex:
                raise CorruptContent(
                    f"blob {self._digest} is corrupt (its bytes do not match its digest); "
                    "run `intermodal system check --repair` and re-pull or re-load the image"
                )
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ContentStore:
    def __init__(self, root: Path):
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.ingest = root / "ingest"

    def path(self, digest: Digest) -> Path:
        return self.blobs / digest.hex

    def has(self, digest: Digest) -> bool:
        return self.path(digest).exists()

    def size(self, digest: Digest) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the store") from None

    @contextlib.contextmanager
    def writer(
        self, expected: Digest | None = None, size: int | None = None, ref: str | None = None
    ) -> Iterator[IngestWriter]:
        """Open an ingest. With `ref`, partial content survives failures so a later writer can resume."""
        self.ingest.mkdir(parents=True, exist_ok=True)
        name = ref.replace("/", "_").replace(":", "-") if ref else f"tmp-{os.urandom(8).hex()}"
        w = IngestWriter(self, self.ingest / name, expected, size, keep=ref is not None)
        try:
            yield w
            if w.committed is None:
                w.commit()
        except BaseException:
            w.abort()
            raise

    def write_bytes(self, data: bytes, expected: Digest | None = None) -> Digest:
        digest = Digest.of_bytes(data)
        if self.has(digest) and (expected is None or expected == digest):
            return digest
        with self.writer(expected, len(data)) as w:
            w.write(data)
        return digest

    def write_stream(
        self, stream: BinaryIO, expected: Digest | None = None, size: int | None = None
    ) -> Digest:
        with self.writer(expected, size) as w:
            while chunk := stream.read(_CHUNK):
                w.write(chunk)
        assert w.committed is not None
        return w.committed

    def read_bytes(self, digest: Digest) -> bytes:
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the store; re-pull or re-load the image") from None
        if Digest.of_bytes(data) != digest:
            raise CorruptContent(
                f"blob {digest} is corrupt (its bytes do not match its digest); "
                "run `intermodal system check --repair` and re-pull or re-load the image"
            )
        return data

    def open(self, digest: Digest) -> VerifyingReader:
        path = self.path(digest)
        if not path.exists():
            raise NotFound(f"blob {digest} is not in the store; re-pull or re-load the image")
        return VerifyingReader(path, digest)

    def verify(self, digest: Digest) -> bool:
        h = hashlib.sha256()
        with open(self.path(digest), "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        return h.hexdigest() == digest.hex

    def delete(self, digest: Digest) -> None:
        self.path(digest).unlink(missing_ok=True)

    def __iter__(self) -> Iterator[Digest]:
        if not self.blobs.is_dir():
            return
        for entry in os.scandir(self.blobs):
            if len(entry.name) == 64:
                yield Digest(entry.name)

    def ingests(self) -> list[Path]:
        return sorted(self.ingest.iterdir()) if self.ingest.is_dir() else []
