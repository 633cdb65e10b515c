"""The image store: image records (manifest + config + names) over the content store, guarded by file locks.

Records live in one JSON file (`images.json`) replaced atomically under an exclusive lock, so two commands
never lose each other's tags and a reader never sees a half-written record. An image becomes visible only
when its record is committed, after every blob it needs is in the content store.

Garbage collection is mark-and-sweep over the records. Writers of new blobs hold a shared *lease* lock for
their whole transfer and the collector takes it exclusively, so GC never deletes blobs of an image that is
still being imported (containerd's lease idea, here as an flock).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from intermodal.errors import InvalidArgument, NotFound
from intermodal.fsutil import atomic_write_bytes, atomic_write_json, file_lock, read_json
from intermodal.image import reference
from intermodal.image.content import ContentStore
from intermodal.image.digest import Digest, is_hex_prefix
from intermodal.image.models import ImageConfig, Manifest

_DB_VERSION = 1


@dataclass
class ImageRecord:
    manifest: str  # manifest digest: what registries and RepoDigests name
    config: str  # config digest: the image ID, as Docker prints it
    size: int  # unpacked size of all layers, in bytes
    created: str  # the config's `created`
    layer_sizes: list[int] = field(default_factory=list)  # unpacked size per layer, for `history`
    names: list[str] = field(default_factory=list)  # fully qualified tagged references
    repo_digests: list[str] = field(default_factory=list)  # `name@sha256:...` from pulls/pushes
    added: float = 0.0

    @property
    def id(self) -> Digest:
        return Digest.parse(self.config)

    @property
    def manifest_digest(self) -> Digest:
        return Digest.parse(self.manifest)


class ImageStore:
    def __init__(self, root: Path):
        self.root = root
        self.content = ContentStore(root)
        self._db_path = root / "images.json"
        self._lock_path = root / "locks" / "images.lock"
        self._lease_path = root / "locks" / "gc.lock"
        self._pins = root / "pins"

    # -- records --------------------------------------------------------------------------------------------

    def _load(self) -> dict[str, ImageRecord]:
        db = read_json(self._db_path, {"version": _DB_VERSION, "images": {}})
        return {key: ImageRecord(**value) for key, value in db["images"].items()}

    def _save(self, images: dict[str, ImageRecord]) -> None:
        atomic_write_json(
            self._db_path, {"version": _DB_VERSION, "images": {k: asdict(v) for k, v in images.items()}}
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, ImageRecord]]:
        """Exclusive read-modify-write of the records; saved only if the block succeeds."""
        with file_lock(self._lock_path):
            images = self._load()
            yield images
            self._save(images)

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """Protect blobs being written from garbage collection until the block ends."""
        with file_lock(self._lease_path, shared=True):
            yield

    def records(self) -> list[ImageRecord]:
        with file_lock(self._lock_path, shared=True):
            return sorted(self._load().values(), key=lambda r: r.added, reverse=True)

    # -- resolution -----------------------------------------------------------------------------------------

    def get(self, spec: str) -> ImageRecord:
        """Resolve what a user typed: a name[:tag], name@digest, full or short image ID (Docker's order)."""
        with file_lock(self._lock_path, shared=True):
            images = self._load()
        return _resolve(images, spec)

    def manifest(self, record: ImageRecord) -> Manifest:
        return Manifest.parse(self.content.read_bytes(record.manifest_digest))

    def config(self, record: ImageRecord) -> ImageConfig:
        return ImageConfig.parse(self.content.read_bytes(record.id))

    # -- mutation -------------------------------------------------------------------------------------------

    def commit(
        self,
        manifest_bytes: bytes,
        names: list[str],
        size: int,
        repo_digests: list[str] | None = None,
        layer_sizes: list[int] | None = None,
    ) -> ImageRecord:
        """Store the manifest blob and publish the image under `names` (tags move from older images).

        Every blob the manifest refers to must already be in the content store: an image is never visible
        with missing parts.
        """
        manifest = Manifest.parse(manifest_bytes)
        for desc in (manifest.config, *manifest.layers):
            if not self.content.has(desc.digest):
                raise NotFound(f"cannot commit image: blob {desc.digest} is missing from the store")
        config = ImageConfig.parse(self.content.read_bytes(manifest.config.digest))
        manifest_digest = self.content.write_bytes(manifest_bytes)
        qualified = [str(reference.parse(n)) for n in names]
        with self.transaction() as images:
            record = images.get(str(manifest_digest)) or ImageRecord(
                manifest=str(manifest_digest),
                config=str(manifest.config.digest),
                size=size,
                layer_sizes=list(layer_sizes or []),
                created=config.created,
                added=time.time(),
            )
            _move_names(images, qualified, record)
            for rd in repo_digests or []:
                if rd not in record.repo_digests:
                    record.repo_digests.append(rd)
            images[record.manifest] = record
        return record

    def tag(self, spec: str, target: str) -> ImageRecord:
        ref = reference.parse(target)
        if ref.digest:
            raise InvalidArgument(f"cannot tag with a digest reference {target!r}: give NAME[:TAG]")
        with self.transaction() as images:
            record = _resolve(images, spec)
            _move_names(images, [str(ref)], record)
        return record

    def untag(self, name: str) -> ImageRecord:
        """Remove one name; the image stays (possibly dangling)."""
        qualified = str(reference.parse(name))
        with self.transaction() as images:
            for record in images.values():
                if qualified in record.names:
                    record.names.remove(qualified)
                    return record
        raise NotFound(f"no such image: {name}")

    def remove(self, manifest: str) -> ImageRecord:
        with self.transaction() as images:
            try:
                return images.pop(manifest)
            except KeyError:
                raise NotFound(f"no such image: {manifest}") from None

    def pin(self, name: str, digests: list[Digest]) -> None:
        """Keep blobs without an image record (a build cache entry's layer) safe from GC until `unpin`.

        Write the pin while holding the lease under which the blobs were written, so GC cannot run between.
        """
        # Not fsynced: losing a pin in a crash lets GC take the blob, and its holder then sees a miss.
        atomic_write_bytes(self._pins / name, "".join(f"{d}\n" for d in digests).encode(), durable=False)

    def unpin(self, name: str) -> None:
        (self._pins / name).unlink(missing_ok=True)

    def referenced_blobs(self, images: dict[str, ImageRecord] | None = None) -> set[Digest]:
        """Every blob reachable from a record (manifest, config, layers) or a pin; the GC's mark phase."""
        marked: set[Digest] = set()
        if self._pins.is_dir():
            for pin in self._pins.iterdir():
                with contextlib.suppress(FileNotFoundError, InvalidArgument):
                    marked.update(Digest.parse(line) for line in pin.read_text().split())
        for record in (images if images is not None else self._load()).values():
            marked.add(record.manifest_digest)
            marked.add(record.id)
            with contextlib.suppress(NotFound, InvalidArgument):
                marked.update(layer.digest for layer in self.manifest(record).layers)
        return marked

    def garbage_collect(self) -> list[Digest]:
        """Delete blobs no image refers to. Waits for in-flight imports (leases) to finish first."""
        with file_lock(self._lease_path), file_lock(self._lock_path, shared=True):
            marked = self.referenced_blobs()
            removed = [d for d in self.content if d not in marked]
            for d in removed:
                self.content.delete(d)
            for stale in self.content.ingests():
                stale.unlink(missing_ok=True)
        return removed


def _move_names(images: dict[str, ImageRecord], names: list[str], record: ImageRecord) -> None:
    for other in images.values():
        if other is not record:
            other.names = [n for n in other.names if n not in names]
    for n in names:
        if n not in record.names:
            record.names.append(n)


def _resolve(images: dict[str, ImageRecord], spec: str) -> ImageRecord:
    ref: reference.Reference | None = None
    with contextlib.suppress(InvalidArgument):
        ref = reference.parse(spec)
    if ref is not None:
        if ref.digest:
            for r in images.values():
                if r.manifest == str(ref.digest) or r.config == str(ref.digest):
                    return r
        else:
            for r in images.values():
                if str(ref) in r.names:
                    return r
    text = spec.removeprefix("sha256:")
    if is_hex_prefix(text):
        matches = [r for r in images.values() if r.config.removeprefix("sha256:").startswith(text)]
        if len(matches) > 1 and len({m.config for m in matches}) > 1:
            raise InvalidArgument(f"image ID prefix {spec!r} is ambiguous: give more characters")
        if matches:
            return matches[0]
    raise NotFound(f"no such image: {spec}")
