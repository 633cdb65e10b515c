"""`commit`: a new image from a container's changes. The overlay upper dir becomes one layer
(`write_layer(overlay_upper=True)` turns whiteouts and opaque dirs into OCI whiteouts) on top of the
container's image, with the container's Config (plus `--change`) as the image config, like `docker commit`.

A running container is frozen for the duration by default (Docker's `--pause=true`), so the layer is one
consistent moment of its file system.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import tempfile
from collections.abc import Iterator
from pathlib import Path

from intermodal.engine.config_changes import apply_changes
from intermodal.engine.containers.record import RUNNING
from intermodal.engine.containers.service import ContainerService
from intermodal.image import reference
from intermodal.image.assemble import HistoryEntry, assemble
from intermodal.image.layer import write_layer
from intermodal.image.store import ImageRecord

# The Config keys an image carries (image-spec config.md "config"), taken from the container's Config.
_IMAGE_KEYS = (
    "User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels", "StopSignal", "OnBuild",
)  # fmt: skip


def commit(
    svc: ContainerService,
    spec: str,
    name: str = "",
    *,
    author: str = "",
    message: str = "",
    changes: list[str] | None = None,
    pause: bool = True,
) -> ImageRecord:
    record = svc.get(spec)
    if name:
        reference.parse(name)  # a bad name fails before any work
    config = apply_changes({k: record.config[k] for k in _IMAGE_KEYS if record.config.get(k)}, changes or [])
    store = svc.images.store
    base = svc.images.get(record.image)
    created = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    # Docker's history line for a commit is the container's command (daemon/commit.go).
    history = HistoryEntry(created_by=" ".join(record.config.get("Cmd") or []), comment=message)
    with store.lease():  # until the image names the layer blob, GC must not take it
        with _frozen(svc, record.id, pause and record.status == RUNNING), _upper(svc, record.id) as upper:
            with store.content.writer() as w:
                layer = write_layer(w, upper, overlay_upper=True)
        return assemble(
            store, [layer], config, [history], created=created, names=[name] if name else [], base=base,
            author=author,
        )  # fmt: skip


@contextlib.contextmanager
def _frozen(svc: ContainerService, cid: str, pause: bool) -> Iterator[None]:
    if not pause:
        yield
        return
    svc.pause(cid)
    try:
        yield
    finally:
        svc.unpause(cid)


@contextlib.contextmanager
def _upper(svc: ContainerService, cid: str) -> Iterator[Path]:
    """The upper dir; a container that never started has none, which is an empty layer. With --userns=auto
    its files belong to the container's host range: the layer is written from an idmapped view that maps
    the range back to 0.. (the inverse of the container's maps), so the image is owned as inside."""
    paths = svc.paths(cid)
    upper = paths.upper
    if not upper.is_dir():
        with tempfile.TemporaryDirectory() as empty:
            yield Path(empty)
        return
    id_mappings = svc.store.load(cid).id_mappings
    if not id_mappings:
        yield upper
        return
    from intermodal.engine.containers import bundle

    with bundle.unmapped_view(upper, paths.dir / "commit-view", id_mappings) as view:
        yield view
