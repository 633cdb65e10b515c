"""Shared fixtures: a small real image in a real store (unit and integration tests both build on it)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from intermodal.image import mediatypes as mt
from intermodal.image.digest import Digest
from intermodal.image.models import Descriptor, Manifest
from intermodal.image.store import ImageRecord, ImageStore

FIXED_MTIME = 1_600_000_000  # etc/motd's mtime, for tests that check unpacked metadata
DEFAULT_FILES = {
    "bin/hello": b"#!/bin/sh\necho hello\n",
    "etc/motd": b"welcome to the test image\n",
    "etc/empty": b"",
}
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class SampleImage:
    store: ImageStore
    record: ImageRecord
    files: dict[str, bytes]
    layer_digest: Digest  # the gzip blob
    diff_id: Digest  # the uncompressed tar
    config_bytes: bytes


def layer_tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed, reproducible layer tar: parent directories first, then the files, sorted."""
    raw = io.BytesIO()
    dirs = sorted({str(Path(name).parent) for name in files} - {"."})
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_500_000_000
            tar.addfile(info)
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o755 if name.startswith("bin/") else 0o644
            info.mtime = FIXED_MTIME if name == "etc/motd" else 1_500_000_000
            tar.addfile(info, io.BytesIO(files[name]))
    return raw.getvalue()


def build_image(store: ImageStore, names: list[str], files: dict[str, bytes] | None = None) -> SampleImage:
    """Write a one-layer gzip image (layer, config, OCI manifest) into `store` and commit it under `names`."""
    files = DEFAULT_FILES if files is None else files
    tar = layer_tar(files)
    layer = gzip.compress(tar, mtime=0)
    diff_id = Digest.of_bytes(tar)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": ["sh"], "Env": [f"PATH={PATH}"]},
            "rootfs": {"type": "layers", "diff_ids": [str(diff_id)]},
            "history": [
                {"created": "2024-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD files in /"}
            ],
        },
        sort_keys=True,
    ).encode()
    layer_digest = store.content.write_bytes(layer)
    config_digest = store.content.write_bytes(config)
    manifest = Manifest(
        Descriptor(mt.OCI_CONFIG, config_digest, len(config)),
        (Descriptor(mt.OCI_LAYER_GZIP, layer_digest, len(layer)),),
    )
    record = store.commit(manifest.to_bytes(), names, len(tar), layer_sizes=[len(tar)])
    return SampleImage(store, record, dict(files), layer_digest, diff_id, config)


@pytest.fixture
def image_store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "root")


@pytest.fixture
def make_image(image_store: ImageStore) -> Callable[..., SampleImage]:
    """Build more images in the same store: `make_image(["name:tag"], {"path": b"content"})`."""
    return lambda names, files=None: build_image(image_store, names, files)


@pytest.fixture
def test_image(image_store: ImageStore) -> SampleImage:
    """`test/image:1`: one gzip layer with bin/hello, etc/motd (mtime FIXED_MTIME) and an empty file."""
    return build_image(image_store, ["test/image:1"])
