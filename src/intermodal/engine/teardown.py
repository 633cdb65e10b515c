"""Deleting a directory the engine mounted things under (a build's work dir, a whole state root): every mount
below it goes first, deepest first, so the delete can never walk into a bind-mounted host directory."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from intermodal.runtime import sys as linux


def mounts_under(top: Path) -> list[str]:
    """Mount points strictly below `top`, deepest first."""
    prefix = str(top) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def remove_tree(top: Path) -> bool:
    """Unmount everything under `top`, then delete it; False (and nothing deleted) if a mount stayed."""
    for point in mounts_under(top):
        with contextlib.suppress(OSError):
            linux.umount2(point, linux.MNT_DETACH)
    if mounts_under(top):
        return False
    shutil.rmtree(top, ignore_errors=True)
    return True
