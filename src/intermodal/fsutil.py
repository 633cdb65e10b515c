"""Crash-safe file writes and cross-process locks: the two primitives that make a daemonless store safe.

POSIX only (fcntl, fsync, rename); nothing Linux-specific, so the pure `image` package may use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    """Persist a rename or unlink in `path` (the directory entry itself must reach the disk)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tree_size(path: Path) -> int:
    """Bytes a directory tree holds on disk (allocated blocks, symlinks not followed); 0 if it is missing."""
    total = 0
    for _dirpath, _dirs, files, dir_fd in os.fwalk(path):
        for f in files:
            total += os.stat(f, dir_fd=dir_fd, follow_symlinks=False).st_blocks * 512
    return total


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Write `data` to `path` so that readers see either the old or the new file, never a partial one.

    `durable=False` skips the fsyncs, for files that are regenerated anyway after a crash (bundles)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def _create_temp(path: Path) -> tuple[int, str]:
    """A new private file beside `path`, as tempfile.mkstemp makes one (O_EXCL, mode 0600, random name),
    without importing tempfile: that module (random, shutil, bz2, lzma) cost every command ~3 ms."""
    while True:
        tmp = f"{path.parent}/.{path.name}.{os.urandom(6).hex()}.tmp"
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue


def atomic_write_json(path: Path, obj: Any, mode: int = 0o644, *, durable: bool = True) -> None:
    atomic_write_bytes(path, json.dumps(obj, separators=(",", ":")).encode() + b"\n", mode, durable=durable)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return default


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False, make_parent: bool = True) -> Iterator[None]:
    """Hold an flock on `path` (created if needed, and its directory unless not `make_parent`: a lock
    inside something another process may delete must not bring it back) for the duration of the block.

    flock locks belong to the open file description, so they are released if the process dies: a killed
    command never leaves the store locked.
    """
    if make_parent:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
