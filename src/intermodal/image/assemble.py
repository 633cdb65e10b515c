"""Put an image together from layers and a container config: write the config and manifest blobs and
publish the record. `import`, `bootstrap`, `commit` and `build` all end here."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from typing import Any, BinaryIO

from intermodal.errors import InvalidArgument
from intermodal.image import mediatypes as mt
from intermodal.image.content import ContentStore
from intermodal.image.digest import Digest
from intermodal.image.layer import LayerInfo, detect_compression, open_decompressed
from intermodal.image.models import Descriptor, Manifest, canonical_json
from intermodal.image.store import ImageRecord, ImageStore
from intermodal.image.streams import Prefixed

_CHUNK = 1 << 20


@dataclass(frozen=True)
class HistoryEntry:
    created_by: str
    comment: str = ""
    empty_layer: bool = False


def store_tar_stream(content: ContentStore, stream: BinaryIO) -> LayerInfo:
    """Store a (possibly compressed) tar stream as a gzip layer blob, computing its diff ID in the same pass."""
    head = stream.read(8)
    tar = open_decompressed(Prefixed(head, stream), detect_compression(head))
    first = b""
    while len(first) < tarfile.BLOCKSIZE and (chunk := tar.read(tarfile.BLOCKSIZE - len(first))):
        first += chunk
    try:
        tarfile.TarInfo.frombuf(first, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        raise InvalidArgument(
            "the input is not a tar archive (plain, gzip or zstd): give a root filesystem tarball"
        ) from None
    diff = hashlib.sha256(first)
    unpacked = len(first)
    with content.writer() as w:
        # mtime=0 and no file name in the gzip header keep the blob reproducible for the same input.
        with gzip.GzipFile(fileobj=_Sink(w), mode="wb", mtime=0, filename="") as gz:
            gz.write(first)
            while chunk := tar.read(_CHUNK):
                diff.update(chunk)
                unpacked += len(chunk)
                gz.write(chunk)
        size = w.offset
    assert w.committed is not None
    return LayerInfo(digest=w.committed, diff_id=Digest(diff.hexdigest()), size=size, unpacked_size=unpacked)


def assemble(
    store: ImageStore,
    layers: list[LayerInfo],
    container_config: dict[str, Any],
    history: list[HistoryEntry],
    *,
    created: str,
    names: list[str],
    base: ImageRecord | None = None,
    layer_media_type: str = mt.OCI_LAYER_GZIP,
    author: str = "",
) -> ImageRecord:
    """Write config + manifest for `layers` (on top of `base`'s) and commit the image under `names`.

    `author` is the config's top-level field (MAINTAINER); layers on top of `base` all use `layer_media_type`.
    """
    base_config = store.config(base) if base else None
    base_diff_ids = [str(d) for d in base_config.diff_ids] if base_config else []
    base_history = base_config.history if base_config else []
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": base_diff_ids + [str(layer.diff_id) for layer in layers]},
        "history": base_history
        + [
            {"created": created, "created_by": h.created_by, **({"comment": h.comment} if h.comment else {})}
            | ({"empty_layer": True} if h.empty_layer else {})
            for h in history
        ],
    }
    if author:
        config["author"] = author
    config_bytes = canonical_json(config)
    with store.lease():
        config_digest = store.content.write_bytes(config_bytes)
        base_layers: tuple[Descriptor, ...] = ()
        base_sizes: list[int] = []
        if base is not None:
            base_layers = store.manifest(base).layers
            base_sizes = list(base.layer_sizes)
        manifest = Manifest(
            config=Descriptor(mt.OCI_CONFIG, config_digest, len(config_bytes)),
            layers=base_layers
            + tuple(Descriptor(layer_media_type, layer.digest, layer.size) for layer in layers),
        )
        sizes = base_sizes + [layer.unpacked_size for layer in layers]
        return store.commit(manifest.to_bytes(), names, sum(sizes), layer_sizes=sizes)


class _Sink(io.RawIOBase):
    """Adapts an ingest writer to the file interface gzip expects."""

    def __init__(self, writer: Any):
        self._writer = writer

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self._writer.write(bytes(b))
        return len(b)
