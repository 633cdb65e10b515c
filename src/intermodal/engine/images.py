"""Image operations every frontend shares: list, inspect, history, tag, remove, prune, save, load, import,
disk usage and the store check. Frontends format; this module decides."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from intermodal.errors import Conflict, CorruptContent, InvalidArgument, NotFound
from intermodal.image import reference
from intermodal.image.digest import Digest
from intermodal.image.models import ImageConfig, Manifest
from intermodal.image.store import ImageRecord, ImageStore

# Maps an image ID to the containers that use it (rmi and prune must not remove those images).
ContainersUsing = Callable[[str], list[str]]


class ImageService:
    def __init__(self, root: Path, containers_using: ContainersUsing | None = None):
        self.root = root
        self.store = ImageStore(root / "images")
        self._containers_using = containers_using or self._containers_on_disk

    def _containers_on_disk(self, image_id: str) -> list[str]:
        from intermodal.engine.containers.record import ContainerStore

        return [r.id for r in ContainerStore(self.root).all() if r.image == image_id]

    # -- queries --------------------------------------------------------------------------------------------

    def records(self, *, dangling: bool | None = None) -> list[ImageRecord]:
        records = self.store.records()
        if dangling is not None:
            records = [r for r in records if (not r.names) == dangling]
        return records

    def get(self, spec: str) -> ImageRecord:
        return self.store.get(spec)

    def config(self, record: ImageRecord) -> ImageConfig:
        return self.store.config(record)

    def inspect(self, spec: str) -> dict[str, Any]:
        """Docker Engine API `ImageInspect` shape (GET /images/{name}/json)."""
        record = self.store.get(spec)
        config = self.store.config(record)
        raw = config.raw
        return {
            "Id": record.config,
            "RepoTags": [reference.parse(n).familiar for n in record.names],
            "RepoDigests": list(record.repo_digests),
            "Parent": "",
            "Comment": _last_comment(config),
            "Created": config.created,
            "DockerVersion": raw.get("docker_version", ""),
            "Author": raw.get("author", ""),
            "Config": _docker_container_config(config.config),
            "Architecture": config.platform.architecture,
            "Variant": config.platform.variant or None,
            "Os": config.platform.os,
            "Size": record.size,
            "GraphDriver": {"Name": "overlay2", "Data": None},
            "RootFS": {"Type": "layers", "Layers": [str(d) for d in config.diff_ids]},
            "Metadata": {"LastTagTime": _iso(record.added)},
            "Descriptor": {
                "mediaType": self.store.manifest(record).media_type,
                "digest": record.manifest,
                "size": self.store.content.size(record.manifest_digest),
            },
        }

    def history(self, spec: str) -> list[dict[str, Any]]:
        """One row per history entry, newest first; non-empty entries carry their layer's size."""
        record = self.store.get(spec)
        config = self.store.config(record)
        sizes = list(record.layer_sizes) or [0] * len(config.diff_ids)
        rows = []
        layer_index = 0
        for entry in config.history:
            size = 0
            if not entry.get("empty_layer") and layer_index < len(sizes):
                size = sizes[layer_index]
                layer_index += 1
            rows.append(
                {
                    "created": entry.get("created", ""),
                    "created_by": entry.get("created_by", ""),
                    "comment": entry.get("comment", ""),
                    "size": size,
                }
            )
        rows.reverse()
        if rows:
            rows[0]["id"] = record.config
        return rows

    # -- mutation -------------------------------------------------------------------------------------------

    def tag(self, source: str, target: str) -> None:
        self.store.tag(source, target)

    def remove(self, spec: str, *, force: bool = False) -> list[str]:
        """Docker's `rmi`: untag by name; delete the image when no names are left (or by ID with -f).

        Returns Docker's `Untagged:`/`Deleted:` lines.
        """
        record = self.store.get(spec)
        events: list[str] = []
        by_name = _is_name_of(spec, record)
        if by_name and len(record.names) > 1:
            name = str(reference.parse(spec))
            self.store.untag(name)
            return [f"Untagged: {reference.parse(name).familiar}"]
        users = self._containers_using(record.config)
        if users and not force:
            raise Conflict(
                f"unable to remove image {spec}: it is used by container(s) {', '.join(u[:12] for u in users)}; "
                "remove them first or use -f"
            )
        if not by_name and len(record.names) > 1 and not force:
            raise Conflict(
                f"unable to delete {record.id.short} (must be forced): image is referenced in multiple "
                f"repositories ({', '.join(reference.parse(n).familiar for n in record.names)})"
            )
        removed = self.store.remove(record.manifest)
        events += [f"Untagged: {reference.parse(n).familiar}" for n in removed.names]
        events += [f"Untagged: {rd}" for rd in removed.repo_digests]
        events.append(f"Deleted: {removed.config}")
        self.store.garbage_collect()
        return events

    def prune(self, *, all_images: bool = False) -> tuple[list[str], int]:
        """Remove dangling images (or, with `all_images`, every image no container uses).

        Returns the deleted image IDs and the bytes reclaimed from the content store."""
        before = _store_bytes(self.store)
        deleted = []
        for record in self.store.records():
            if record.names and not all_images:
                continue
            if self._containers_using(record.config):
                continue
            with contextlib.suppress(NotFound):
                self.store.remove(record.manifest)
                deleted.append(record.config)
        self.store.garbage_collect()
        return deleted, max(0, before - _store_bytes(self.store))

    def save(self, specs: list[str], out: BinaryIO | Path, *, format: str = "docker") -> None:
        from intermodal.image import archive

        items: list[tuple[ImageRecord, list[str]]] = []
        for spec in specs:
            record = self.store.get(spec)
            names = [str(reference.parse(spec))] if _is_name_of(spec, record) else []
            for existing in items:
                if existing[0].manifest == record.manifest:
                    existing[1].extend(n for n in names if n not in existing[1])
                    break
            else:
                items.append((record, names))
        archive.save(self.store, items, out, format=format)

    def load(self, stream: BinaryIO) -> list[ImageRecord]:
        from intermodal.image import archive

        return archive.load(self.store, stream)

    def import_rootfs(
        self, stream: BinaryIO, name: str | None, changes: list[str], message: str = "", platform: str = ""
    ) -> ImageRecord:
        from intermodal.engine import rootfs_import

        return rootfs_import.import_tarball(self.store, stream, name, changes, message)

    # -- store health ---------------------------------------------------------------------------------------

    def disk_usage(self) -> dict[str, Any]:
        records = self.store.records()
        active = [r for r in records if self._containers_using(r.config)]
        total = _store_bytes(self.store)
        active_bytes = sum(r.size for r in active)
        return {
            "Images": len(records),
            "Active": len(active),
            "Size": sum(r.size for r in records),
            "StoreBytes": total,
            "Reclaimable": max(0, sum(r.size for r in records) - active_bytes),
        }

    def check(self, *, repair: bool = False) -> CheckReport:
        """Verify every blob's digest and every record's references; with `repair`, remove what is bad."""
        report = CheckReport()
        content = self.store.content
        with self.store.lease():
            corrupt = {d for d in content if not content.verify(d)}
        report.errors += [f"blob {d} is corrupt: its bytes do not match its digest" for d in sorted(corrupt)]
        broken: list[ImageRecord] = []
        for record in self.store.records():
            problem = _record_problem(self.store, record, corrupt)
            if problem:
                names = ", ".join(reference.parse(n).familiar for n in record.names) or "<none>"
                report.errors.append(f"image {record.id.short} ({names}): {problem}")
                broken.append(record)
        stale = content.ingests()
        report.notes += [f"interrupted write left {p.name} in the ingest area" for p in stale]
        unreferenced = sorted(set(content) - self.store.referenced_blobs() - corrupt)
        report.notes += [f"blob {d} is not used by any image" for d in unreferenced]
        if repair:
            for d in corrupt:
                content.delete(d)
            for record in broken:
                with contextlib.suppress(NotFound):
                    self.store.remove(record.manifest)
            report.repaired = len(corrupt) + len(broken) + len(self.store.garbage_collect()) + len(stale)
        return report


@dataclass
class CheckReport:
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repaired: int = 0


def _record_problem(store: ImageStore, record: ImageRecord, corrupt: set[Digest]) -> str:
    try:
        for n in record.names:
            reference.parse(n)
        manifest = Manifest.parse(store.content.read_bytes(record.manifest_digest))
        if manifest.config.digest != record.id:
            return f"manifest names config {manifest.config.digest}, record says {record.config}"
        config = ImageConfig.parse(store.content.read_bytes(record.id))
        if len(config.diff_ids) != len(manifest.layers):
            return "config and manifest disagree on the number of layers"
        for layer in manifest.layers:
            if not store.content.has(layer.digest):
                return f"layer {layer.digest} is missing"
            if layer.digest in corrupt:
                return f"layer {layer.digest} is corrupt"
    except (NotFound, CorruptContent, InvalidArgument) as e:
        return str(e)
    return ""


def _is_name_of(spec: str, record: ImageRecord) -> bool:
    try:
        ref = reference.parse(spec)
    except InvalidArgument:
        return False
    return ref.digest is None and str(ref) in record.names


def _store_bytes(store: ImageStore) -> int:
    total = 0
    for d in store.content:
        with contextlib.suppress(FileNotFoundError):
            total += store.content.path(d).stat().st_size
    return total


def _last_comment(config: ImageConfig) -> str:
    history = config.history
    return str(history[-1].get("comment", "")) if history else ""


def _docker_container_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The `Config` block of image inspect, with Docker's keys present even when empty."""
    return {
        "Hostname": "",
        "Domainname": "",
        "User": cfg.get("User", ""),
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "ExposedPorts": cfg.get("ExposedPorts"),
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": cfg.get("Env"),
        "Cmd": cfg.get("Cmd"),
        "Healthcheck": cfg.get("Healthcheck"),
        "Image": "",
        "Volumes": cfg.get("Volumes"),
        "WorkingDir": cfg.get("WorkingDir", ""),
        "Entrypoint": cfg.get("Entrypoint"),
        "OnBuild": cfg.get("OnBuild"),
        "Labels": cfg.get("Labels"),
        "StopSignal": cfg.get("StopSignal"),
    }


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")
