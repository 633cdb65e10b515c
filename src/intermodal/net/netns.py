"""Network namespaces that outlive their creator: a namespace is made in a helper thread (unshare(2) of
CLONE_NEWNET affects only the calling thread) and kept alive by bind-mounting its nsfs file onto a path, as
`ip netns add` does. The OCI runtime then joins it by path. Threads avoid a fork per namespace."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from intermodal.runtime import sys as linux

T = TypeVar("T")


def _in_thread(fn: Callable[[], T]) -> T:
    """Run `fn` in a fresh OS thread (its namespace changes die with it) and return its result."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


def create(path: Path) -> None:
    """A new network namespace with `lo` up, pinned at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()

    def make() -> None:
        linux.unshare(linux.CLONE_NEWNET)
        linux.loopback_up()
        linux.mount("/proc/thread-self/ns/net", str(path), None, linux.MS_BIND)

    try:
        _in_thread(make)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def run_in(path: Path, fn: Callable[[], T]) -> T:
    """Call `fn` inside the namespace at `path` (sockets it opens stay bound to that namespace)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def enter() -> T:
        linux.setns(fd, linux.CLONE_NEWNET)
        return fn()

    try:
        return _in_thread(enter)
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    """Unpin and delete; the namespace itself dies with its last process (idempotent)."""
    if path.exists():
        with contextlib.suppress(OSError):  # EINVAL: not a mount point (creation died before the bind)
            linux.umount2(str(path), linux.MNT_DETACH)
    path.unlink(missing_ok=True)
