"""Interoperability with an independent client: skopeo reads what we push (and umoci + runc run it), and we
pull what skopeo pushes, with the same config digest and a rootfs that runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from intermodal.engine import distribution
from intermodal.image.layer import apply_layer, detect_compression, open_decompressed
from intermodal.image.store import ImageRecord, ImageStore

from .registry_support import Registry, make_image

BUSYBOX = Path("/bin/busybox")
GREETING = "hello from the registry"


def _skopeo(*args: str) -> str:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _busybox_image(root: Path, name: str) -> ImageRecord:
    return make_image(
        root,
        name,
        [{"bin/busybox": BUSYBOX.read_bytes()}, {"etc/motd": b"interop\n"}],
        cmd=("/bin/busybox", "echo", GREETING),
    )


def _oci_layout(store: ImageStore, record: ImageRecord, target: Path, tag: str) -> None:
    """An OCI image layout (image-spec image-layout.md) holding one image from our store."""
    blobs = target / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    manifest = store.manifest(record)
    for digest in (record.manifest_digest, manifest.config.digest, *(d.digest for d in manifest.layers)):
        shutil.copyfile(store.content.path(digest), blobs / digest.hex)
    (target / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    entry = {
        "mediaType": manifest.media_type,
        "digest": record.manifest,
        "size": store.content.size(record.manifest_digest),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    (target / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))


def test_skopeo_reads_what_we_push(registry: Registry, tmp_path: Path) -> None:
    name = f"{registry.host}/interop/ours:1"
    record = _busybox_image(tmp_path / "a", name)
    distribution.push(tmp_path / "a", name)
    store = ImageStore(tmp_path / "a" / "images")

    info = json.loads(_skopeo("inspect", "--tls-verify=false", f"docker://{name}"))
    assert info["Digest"] == record.manifest
    assert info["Layers"] == [str(d.digest) for d in store.manifest(record).layers]
    raw = _skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{name}")
    assert raw.encode() == store.content.read_bytes(record.manifest_digest)
    config = _skopeo("inspect", "--config", "--raw", "--tls-verify=false", f"docker://{name}")
    assert config.encode() == store.content.read_bytes(record.id)


@pytest.mark.root
def test_what_we_push_runs_after_skopeo_copy_and_umoci_unpack(registry: Registry, tmp_path: Path) -> None:
    name = f"{registry.host}/interop/runs:1"
    _busybox_image(tmp_path / "a", name)
    distribution.push(tmp_path / "a", name)
    layout = tmp_path / "layout"
    _skopeo("copy", "--src-tls-verify=false", f"docker://{name}", f"oci:{layout}:t")
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:t", str(bundle)], check=True, capture_output=True
    )
    assert (bundle / "rootfs" / "etc" / "motd").read_text() == "interop\n"
    spec = json.loads((bundle / "config.json").read_text())
    assert spec["process"]["args"] == ["/bin/busybox", "echo", GREETING]
    spec["process"]["terminal"] = False
    (bundle / "config.json").write_text(json.dumps(spec))
    run = subprocess.run(
        ["runc", "run", "--bundle", str(bundle), f"interop-{uuid.uuid4().hex[:8]}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == GREETING


@pytest.mark.parametrize("source", ["oci", "docker-archive"])
def test_we_pull_what_skopeo_pushes(registry: Registry, tmp_path: Path, source: str) -> None:
    record = _busybox_image(tmp_path / "a", "interop/src:1")
    store = ImageStore(tmp_path / "a" / "images")
    name = f"{registry.host}/interop/skopeo-{source}:1"
    if source == "oci":
        _oci_layout(store, record, tmp_path / "layout", "t")
        src = f"oci:{tmp_path / 'layout'}:t"
    else:
        # Uncompressed layers in the archive: skopeo compresses them itself on the way up, so the manifest
        # and layer blobs are skopeo's own, while the config (diff IDs) stays the same.
        archive = tmp_path / "image.tar"
        with open(archive, "wb") as f:
            from intermodal.engine.images import ImageService

            ImageService(tmp_path / "a").save(["interop/src:1"], f)
        src = f"docker-archive:{archive}"
    _skopeo("copy", "--dest-tls-verify=false", src, f"docker://{name}")

    pulled = distribution.pull(tmp_path / "b", name)[0]
    assert pulled.config == record.config
    if source == "oci":
        assert pulled.manifest == record.manifest

    # The layers we stored unpack into a rootfs whose busybox runs.
    ours = ImageStore(tmp_path / "b" / "images")
    rootfs = tmp_path / "rootfs"
    for layer in ours.manifest(pulled).layers:
        with ours.content.open(layer.digest) as blob, open(ours.content.path(layer.digest), "rb") as head:
            apply_layer(open_decompressed(blob, detect_compression(head.read(8))), rootfs)
    assert (rootfs / "etc" / "motd").read_text() == "interop\n"
    if os.geteuid() == 0:
        out = subprocess.run(
            ["chroot", str(rootfs), "/bin/busybox", "echo", GREETING],
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == GREETING
