"""`diff`: what a container changed in its file system, read from its overlay upper dir (Docker's
overlay2 `Changes`): `A` added, `C` changed, `D` deleted, one line per path, sorted.

As in Docker, a path is "changed" when it also exists in one of the image's layer dirs and "added" when it
does not; a whiteout is a deletion, and an opaque directory deletes what the layers had below it. The
engine's mount points live in the container's init layer, never in the upper dir, so they are not listed.
"""

from __future__ import annotations

import os
from pathlib import Path

from intermodal.engine.containers.record import ContainerRecord
from intermodal.engine.containers.service import ContainerService
from intermodal.image.layer import overlay_changes
from intermodal.image.snapshots import chain_ids

ADDED, CHANGED, DELETED = "A", "C", "D"


def lower_dirs(svc: ContainerService, record: ContainerRecord) -> list[Path]:
    """The image's unpacked layer dirs plus the container's init layer."""
    config = svc.images.config(svc.images.get(record.image))
    return [*(svc.snapshots.layer_dir(c) for c in chain_ids(config.diff_ids)), svc.paths(record.id).init]


def changes(svc: ContainerService, record: ContainerRecord) -> list[tuple[str, str]]:
    """(kind, absolute path) pairs, sorted by path."""
    upper = svc.paths(record.id).upper
    if not upper.is_dir():
        return []
    lowers = lower_dirs(svc, record)

    def in_lower(rel: str) -> bool:
        return any(os.path.lexists(layer / rel) for layer in lowers)

    found: dict[str, str] = {}
    for kind, rel in overlay_changes(upper):
        if kind == "deleted":
            found[rel] = DELETED
        elif kind == "opaque":
            found.setdefault(rel, CHANGED if in_lower(rel) else ADDED)
            kept = set(os.listdir(upper / rel))
            for layer in lowers:
                if (layer / rel).is_dir() and not (layer / rel).is_symlink():
                    for name in set(os.listdir(layer / rel)) - kept:
                        found[f"{rel}/{name}"] = DELETED
        else:
            found[rel] = CHANGED if in_lower(rel) else ADDED
    return sorted(((kind, f"/{rel}") for rel, kind in found.items()), key=lambda c: c[1])
