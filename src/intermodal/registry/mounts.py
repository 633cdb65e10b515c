"""Which repositories of which registry are known to hold a blob, so a push can ask for a cross-repository
mount instead of uploading (Docker keeps the same hints in its "v2 metadata" service).

Stored as one small JSON file, rewritten atomically under a lock; hints are only hints (the registry may
have deleted the blob since), so a failed mount simply falls back to an upload.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from intermodal.fsutil import atomic_write_json, file_lock, read_json
from intermodal.image.digest import Digest

_VERSION = 1
_PER_BLOB = 5  # remember the most recent few repositories per blob


class MountSources:
    def __init__(self, path: Path):
        self._path = path
        self._lock = path.parent / "locks" / f"{path.stem}.lock"

    def _load(self) -> dict[str, dict[str, list[str]]]:
        try:
            db = read_json(self._path, {})
        except ValueError:
            return {}  # a damaged hint file costs uploads, never correctness
        registries = db.get("registries") if isinstance(db, dict) else None
        return registries if isinstance(registries, dict) else {}

    def sources(self, registry: str, digest: Digest) -> list[str]:
        return list(self._load().get(registry, {}).get(str(digest), []))

    def record(
        self, registry: str, repository: str, digests: Iterable[Digest], keep: Callable[[Digest], bool]
    ) -> None:
        """Note that `repository` holds `digests`; entries for blobs `keep` rejects (no longer stored
        locally, so never pushed from here again) are dropped on the way."""
        with file_lock(self._lock):
            registries = self._load()
            blobs = registries.setdefault(registry, {})
            for digest in digests:
                repos = [r for r in blobs.get(str(digest), []) if r != repository]
                blobs[str(digest)] = [repository, *repos][:_PER_BLOB]
            for reg in registries.values():
                for key in [k for k in reg if not keep(Digest.parse(k))]:
                    del reg[key]
            atomic_write_json(self._path, {"version": _VERSION, "registries": registries})
