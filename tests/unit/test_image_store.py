"""The image store's records: commit, resolution the way Docker resolves names and IDs, tags, GC."""

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from intermodal.errors import InvalidArgument, NotFound
from intermodal.image import mediatypes as mt
from intermodal.image.digest import Digest
from intermodal.image.models import Descriptor, Manifest
from intermodal.image.store import ImageStore


def make_image(store: ImageStore, names: list[str], content: bytes = b"hi") -> tuple[str, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    layer_digest = store.content.write_bytes(layer)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [str(Digest.of_bytes(raw.getvalue()))]},
            "history": [{"created_by": "test"}],
        }
    ).encode()
    config_digest = store.content.write_bytes(config)
    manifest = Manifest(
        Descriptor(mt.OCI_CONFIG, config_digest, len(config)),
        (Descriptor(mt.OCI_LAYER_GZIP, layer_digest, len(layer)),),
    )
    record = store.commit(manifest.to_bytes(), names, len(raw.getvalue()))
    return record.manifest, record.config


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


def test_commit_then_resolve_by_name_id_prefix_and_digest(store: ImageStore) -> None:
    manifest, config = make_image(store, ["busybox"])
    assert store.get("busybox").config == config
    assert store.get("docker.io/library/busybox:latest").config == config
    assert store.get(config).manifest == manifest
    assert store.get(config.removeprefix("sha256:")[:12]).manifest == manifest
    assert store.get(f"busybox@{manifest}").config == config


def test_unknown_names_are_not_found(store: ImageStore) -> None:
    make_image(store, ["busybox"])
    with pytest.raises(NotFound, match="no such image: nosuch"):
        store.get("nosuch")
    with pytest.raises(NotFound):
        store.get("busybox:other")


def test_ambiguous_id_prefix_is_refused(store: ImageStore) -> None:
    ids = set()
    for i in range(40):
        ids.add(make_image(store, [f"img{i}"], content=str(i).encode())[1].removeprefix("sha256:"))
    first_chars = {}
    for i in ids:
        first_chars.setdefault(i[0], []).append(i)
    prefix = next(k for k, v in first_chars.items() if len(v) > 1)
    with pytest.raises(InvalidArgument, match="ambiguous"):
        store.get(prefix)


def test_commit_refuses_missing_blobs(store: ImageStore) -> None:
    manifest = Manifest(
        Descriptor(mt.OCI_CONFIG, Digest("1" * 64), 10), (Descriptor(mt.OCI_LAYER_GZIP, Digest("2" * 64), 5),)
    )
    with pytest.raises(NotFound, match="missing"):
        store.commit(manifest.to_bytes(), ["x"], 0)
    assert store.records() == []


def test_tag_moves_between_images_and_leaves_the_old_one_dangling(store: ImageStore) -> None:
    make_image(store, ["app:1"], b"one")
    store.tag("app:1", "app:latest")
    _, second = make_image(store, ["app:latest"], b"two")
    assert store.get("app:latest").config == second
    first = store.get("app:1")
    assert first.names == ["docker.io/library/app:1"]
    store.untag("app:1")
    assert [r.names for r in store.records() if r.config == first.config] == [[]]


def test_tag_rejects_digest_target(store: ImageStore) -> None:
    make_image(store, ["app"])
    with pytest.raises(InvalidArgument):
        store.tag("app", "app@sha256:" + "a" * 64)


def test_garbage_collect_removes_only_unreferenced_blobs(store: ImageStore) -> None:
    keep_manifest, keep_config = make_image(store, ["keep"], b"keep")
    drop_manifest, _ = make_image(store, ["drop"], b"drop")
    store.remove(drop_manifest)
    removed = store.garbage_collect()
    assert len(removed) == 3
    kept = store.get("keep")
    assert store.manifest(kept).layers[0].digest in set(store.content)
    assert Digest.parse(keep_config) in set(store.content)
