"""The build cache: one entry per executed step, keyed by everything the step's result depends on.

A key is ``sha256(parent key, step material)``, so a change anywhere invalidates that step and every step
after it, and nothing else. Entries live in ``$ROOT/buildcache/entries/<key>.json`` (written atomically,
only after the step succeeded) and name at most one layer blob. The blob stays in the image content store,
protected from image GC by a store *pin* written under the same lease as the blob; an entry whose blob has
gone anyway (a repaired store) is a miss, never a wrong answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from intermodal.fsutil import atomic_write_json, file_lock, read_json
from intermodal.image.digest import Digest
from intermodal.image.layer import LayerInfo
from intermodal.image.store import ImageStore

_PIN_PREFIX = "build-"


def step_key(parent: str, *material: str) -> str:
    """Length-prefixed, so ("ab", "c") and ("a", "bc") never collide."""
    h = hashlib.sha256(parent.encode())
    for part in material:
        data = part.encode()
        h.update(b"%d:" % len(data))
        h.update(data)
    return h.hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    layer: LayerInfo | None  # None: the step changed no file (metadata, or a RUN without changes)
    media_type: str
    created: str  # when the step first ran; reused so a cached build reproduces the same image ID


class BuildCache:
    def __init__(self, root: Path, store: ImageStore):
        self.dir = root / "buildcache"
        self.entries = self.dir / "entries"
        self.mounts = self.dir / "mounts"  # RUN --mount=type=cache directories
        self.context = self.dir / "context"  # per-context metadata caches (context.FileIndex)
        self.store = store

    def get(self, key: str) -> CacheEntry | None:
        data = read_json(self.entries / f"{key}.json")
        if not data:
            return None
        layer = None
        if data.get("layer"):
            raw = data["layer"]
            layer = LayerInfo(
                Digest.parse(raw["digest"]), Digest.parse(raw["diff_id"]), raw["size"], raw["unpacked_size"]
            )
            if not self.store.content.has(layer.digest):
                return None
        return CacheEntry(layer, data.get("media_type", ""), data["created"])

    def put(self, key: str, entry: CacheEntry) -> None:
        """Record a successful step. Call under the store lease that covered writing its blob."""
        layer = entry.layer
        if layer is not None:
            self.store.pin(_PIN_PREFIX + key, [layer.digest])
        # Not fsynced: a lost entry is a cache miss, and the blob it names was made durable on its own.
        atomic_write_json(
            self.entries / f"{key}.json",
            {
                "created": entry.created,
                "media_type": entry.media_type,
                "layer": None
                if layer is None
                else {
                    "digest": str(layer.digest),
                    "diff_id": str(layer.diff_id),
                    "size": layer.size,
                    "unpacked_size": layer.unpacked_size,
                },
            },
            durable=False,
        )

    def mount_dir(self, mount_id: str) -> Path:
        """A RUN cache mount's persistent directory (the id hashed: ids are free text such as a path)."""
        path = self.mounts / hashlib.sha256(mount_id.encode()).hexdigest()[:32]
        path.mkdir(parents=True, exist_ok=True)
        return path

    def mount_lock(self, mount_id: str) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.mounts / f"{hashlib.sha256(mount_id.encode()).hexdigest()[:32]}.lock")

    def prune(self, *, all_entries: bool) -> tuple[int, int]:
        """`builder prune`: drop entries whose layer no image uses (with `all_entries`: every entry, the
        cache mounts and the context metadata). Returns (entries removed, bytes reclaimed)."""
        used: set[Digest] = set()
        if not all_entries:
            for record in self.store.records():
                with contextlib.suppress(Exception):
                    used.update(layer.digest for layer in self.store.manifest(record).layers)
        before = _tree_bytes(self.store.content.blobs) + _tree_bytes(self.mounts)
        removed = 0
        for path in sorted(self.entries.glob("*.json")) if self.entries.is_dir() else []:
            key = path.stem
            entry = self.get(key)
            if (
                not all_entries
                and entry is not None
                and entry.layer is not None
                and entry.layer.digest in used
            ):
                continue
            path.unlink(missing_ok=True)
            self.store.unpin(_PIN_PREFIX + key)
            removed += 1
        if all_entries:
            shutil.rmtree(self.mounts, ignore_errors=True)
            shutil.rmtree(self.context, ignore_errors=True)
        self.store.garbage_collect()
        after = _tree_bytes(self.store.content.blobs) + _tree_bytes(self.mounts)
        return removed, max(0, before - after)


def _tree_bytes(top: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total
