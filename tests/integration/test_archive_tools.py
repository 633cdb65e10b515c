"""Our archives against the reference tools: skopeo reads all three formats, umoci unpacks our layout, and what
skopeo writes (OCI layout, oci-archive, docker-archive) loads back into us with the same config."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from intermodal.image import archive
from intermodal.image.store import ImageStore

needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
needs_umoci = pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed")
FIXED_MTIME = 1_600_000_000  # tests/conftest.py gives etc/motd this mtime


def run(*argv: str | Path) -> str:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{argv} failed: {result.stderr}"
    return result.stdout


@pytest.fixture
def saved(test_image: Any, tmp_path: Path) -> dict[str, Path]:
    """test/image:1 written in each of our formats."""
    items = [(test_image.record, ["test/image:1"])]
    paths = {"oci-dir": tmp_path / "layout"}
    archive.save(test_image.store, items, paths["oci-dir"], format="oci-dir")
    for fmt in ("docker", "oci-archive"):
        paths[fmt] = tmp_path / f"{fmt}.tar"
        with open(paths[fmt], "wb") as f:
            archive.save(test_image.store, items, f, format=fmt)
    return paths


@needs_skopeo
@pytest.mark.parametrize("fmt", ["oci-dir", "oci-archive"])
def test_skopeo_inspects_our_oci_layouts(test_image: Any, saved: dict[str, Path], fmt: str) -> None:
    # `oci:DIR:1` finds the image by its org.opencontainers.image.ref.name, the tag (image-layout.md).
    ref = f"oci:{saved[fmt]}:1" if fmt == "oci-dir" else f"oci-archive:{saved[fmt]}"
    info = json.loads(run("skopeo", "inspect", ref))
    assert info["Digest"] == test_image.record.manifest
    assert info["Layers"] == [str(test_image.layer_digest)]
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    raw_config = subprocess.run(
        ["skopeo", "inspect", "--raw", "--config", ref], capture_output=True, check=True
    )
    assert f"sha256:{hashlib.sha256(raw_config.stdout).hexdigest()}" == test_image.record.config


@needs_skopeo
def test_skopeo_inspects_our_docker_archive(test_image: Any, saved: dict[str, Path]) -> None:
    ref = f"docker-archive:{saved['docker']}"
    info = json.loads(run("skopeo", "inspect", ref))
    # skopeo serves docker-archive layers uncompressed, so it reports them by diff ID.
    assert info["Layers"] == [str(test_image.diff_id)]
    raw_config = subprocess.run(
        ["skopeo", "inspect", "--raw", "--config", ref], capture_output=True, check=True
    )
    assert f"sha256:{hashlib.sha256(raw_config.stdout).hexdigest()}" == test_image.record.config


@needs_umoci
def test_umoci_unpacks_our_layout(test_image: Any, saved: dict[str, Path], tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--image", f"{saved['oci-dir']}:1", bundle)
    rootfs = bundle / "rootfs"
    for name, content in test_image.files.items():
        assert (rootfs / name).read_bytes() == content
    assert (rootfs / "etc/motd").stat().st_mtime == FIXED_MTIME
    assert (rootfs / "bin/hello").stat().st_mode & 0o777 == 0o755


@needs_skopeo
@pytest.mark.parametrize(
    "destination",
    [
        "oci:{tmp}/copied:latest",
        "oci-archive:{tmp}/copied.tar:latest",
        "docker-archive:{tmp}/copied.tar:test/image:1",
    ],
)
def test_what_skopeo_writes_loads_with_the_same_config(
    test_image: Any, saved: dict[str, Path], tmp_path: Path, destination: str
) -> None:
    run("skopeo", "copy", "--quiet", f"oci:{saved['oci-dir']}:1", destination.format(tmp=tmp_path))
    copied = tmp_path / "copied.tar"
    if not copied.exists():
        copied = _tar_directory(tmp_path / "copied", tmp_path / "copied-layout.tar")
    store = ImageStore(tmp_path / "loaded")
    with open(copied, "rb") as f:
        [record] = archive.load(store, f)
    assert record.config == test_image.record.config
    assert record.size == test_image.record.size
    if destination.startswith("docker-archive"):
        assert record.names == ["docker.io/test/image:1"]


def _tar_directory(directory: Path, target: Path) -> Path:
    with open(target, "wb") as f, tarfile.open(fileobj=f, mode="w") as tar:
        tar.add(directory, arcname=".")
    return target


@needs_skopeo
def test_round_trip_through_skopeo_keeps_the_manifest(
    test_image: Any, saved: dict[str, Path], tmp_path: Path
) -> None:
    """skopeo copies an OCI layout byte for byte, and we keep manifests as they are: same digest end to end."""
    run(
        "skopeo", "copy", "--quiet", f"oci-archive:{saved['oci-archive']}", f"oci-archive:{tmp_path}/back.tar"
    )
    store = ImageStore(tmp_path / "loaded")
    [record] = archive.load(store, io.BytesIO((tmp_path / "back.tar").read_bytes()))
    assert record.manifest == test_image.record.manifest
