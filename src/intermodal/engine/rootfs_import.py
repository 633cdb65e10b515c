"""`import`: turn a root filesystem tarball into a one-layer image, like `docker import`."""

from __future__ import annotations

import datetime as dt
from typing import BinaryIO

from intermodal.engine.config_changes import apply_changes
from intermodal.image import reference
from intermodal.image.assemble import HistoryEntry, assemble, store_tar_stream
from intermodal.image.store import ImageRecord, ImageStore


def import_tarball(
    store: ImageStore,
    stream: BinaryIO,
    name: str | None,
    changes: list[str],
    message: str = "",
    source: str = "-",
) -> ImageRecord:
    if name:
        reference.parse(name)  # reject a bad name before reading the whole tarball
    config = apply_changes({}, changes)
    created = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    with store.lease():
        layer = store_tar_stream(store.content, stream)
        return assemble(
            store,
            [layer],
            config,
            [HistoryEntry(created_by="", comment=message or f"Imported from {source}")],
            created=created,
            names=[name] if name else [],
        )
