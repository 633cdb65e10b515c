"""In-process runtimes fork the container's first process from the engine itself, and that process
inherits fds 0-2: point ours at the container's stdio for the duration of the fork."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence


@contextlib.contextmanager
def inherited_stdio(stdio: Sequence[int] | None) -> Iterator[None]:
    """Within the block fds 0-2 are `stdio` (or /dev/null); ours are restored afterwards."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for fd, target in enumerate(stdio or (devnull, devnull, devnull)):
            os.dup2(target, fd)
        yield
    finally:
        for fd, original in enumerate(saved):
            os.dup2(original, fd)
            os.close(original)
        os.close(devnull)
