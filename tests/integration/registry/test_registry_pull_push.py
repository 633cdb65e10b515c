"""Push and pull against a real `docker-registry`: round trips, digests, platform selection, and that nothing is
transferred twice (HEAD before upload, cross-repository mounts, blobs already in the store)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from intermodal.engine import distribution
from intermodal.engine.images import ImageService
from intermodal.image import mediatypes as mt
from intermodal.image.models import Descriptor, Index, Platform
from intermodal.image.store import ImageStore
from intermodal.registry.client import RegistryClient

from .registry_support import FaultProxy, Registry, intermodal, make_image


def _layers(n: int, seed: bytes = b"") -> list[dict[str, bytes]]:
    return [{f"layer{i}/data": seed + os.urandom(20_000 + i)} for i in range(n)]


def _store(root: Path) -> ImageStore:
    return ImageStore(root / "images")


def test_push_then_pull_into_a_fresh_root_gives_the_same_image(registry: Registry, tmp_path: Path) -> None:
    name = f"{registry.host}/roundtrip/app:1"
    pushed = make_image(tmp_path / "a", name, [{"etc/motd": b"hello\n"}, {"bin/tool": os.urandom(100_000)}])
    out = intermodal(tmp_path / "a", "push", name).stdout
    assert out.splitlines()[0] == f"The push refers to repository [{registry.host}/roundtrip/app]"
    assert out.count(": Pushed") == 2
    size = _store(tmp_path / "a").content.size(pushed.manifest_digest)
    assert out.splitlines()[-1] == f"1: digest: {pushed.manifest} size: {size}"
    assert f"{registry.host}/roundtrip/app@{pushed.manifest}" in _store(tmp_path / "a").get(name).repo_digests

    out = intermodal(tmp_path / "b", "pull", name).stdout
    assert out.splitlines()[-1] == name
    assert f"Status: Downloaded newer image for {name}" in out
    pulled = _store(tmp_path / "b").get(name)
    assert (pulled.manifest, pulled.config) == (pushed.manifest, pushed.config)
    assert pulled.layer_sizes == pushed.layer_sizes and pulled.size == pushed.size
    assert pulled.repo_digests == [f"{registry.host}/roundtrip/app@{pushed.manifest}"]
    report = ImageService(tmp_path / "b").check()
    assert report.errors == [] and report.notes == []

    again = intermodal(tmp_path / "b", "pull", name).stdout
    assert f"Status: Image is up to date for {name}" in again
    assert again.count("Already exists") == 2


def test_pull_by_digest_verifies_and_records_no_tag(registry: Registry, tmp_path: Path) -> None:
    name = f"{registry.host}/bydigest/app:1"
    pushed = make_image(tmp_path / "a", name, _layers(1))
    distribution.push(tmp_path / "a", name)
    by_digest = f"{registry.host}/bydigest/app@{pushed.manifest}"
    out = intermodal(tmp_path / "b", "pull", by_digest).stdout
    assert out.splitlines()[-1] == by_digest
    record = _store(tmp_path / "b").get(by_digest)
    assert record.config == pushed.config and record.names == []
    wrong = f"{registry.host}/bydigest/app@sha256:{'0' * 64}"
    failed = intermodal(tmp_path / "c", "pull", wrong, check=False)
    assert failed.returncode == 1 and "manifest unknown" in failed.stderr


def test_docker_schema2_media_types_round_trip(registry: Registry, tmp_path: Path) -> None:
    name = f"{registry.host}/schema2/app:1"
    pushed = make_image(tmp_path / "a", name, _layers(2), docker_types=True)
    distribution.push(tmp_path / "a", name)
    pulled = distribution.pull(tmp_path / "b", name)[0]
    assert pulled.manifest == pushed.manifest
    assert _store(tmp_path / "b").manifest(pulled).media_type == mt.DOCKER_MANIFEST


def test_index_pull_selects_amd64_and_platform_picks_the_other(registry: Registry, tmp_path: Path) -> None:
    repo = f"{registry.host}/multi/app"
    amd = make_image(tmp_path / "a", f"{repo}:amd", _layers(1), arch="amd64")
    arm = make_image(tmp_path / "a", f"{repo}:arm", _layers(1), arch="arm64")
    distribution.push(tmp_path / "a", f"{repo}:amd")
    distribution.push(tmp_path / "a", f"{repo}:arm")
    content = _store(tmp_path / "a").content
    index = Index(
        manifests=tuple(
            Descriptor(mt.OCI_MANIFEST, r.manifest_digest, content.size(r.manifest_digest), platform=p)
            for r, p in ((arm, Platform("linux", "arm64", "v8")), (amd, Platform("linux", "amd64")))
        )
    )
    with RegistryClient(registry.host) as client:
        client.ping()
        index_digest = client.put_manifest("multi/app", "both", index.to_bytes(), mt.OCI_INDEX)

    default = distribution.pull(tmp_path / "b", f"{repo}:both")[0]
    assert default.config == amd.config
    assert default.repo_digests == [f"{repo}@{index_digest}"]
    intermodal(tmp_path / "c", "pull", "--platform", "linux/arm64", f"{repo}:both")
    assert _store(tmp_path / "c").get(f"{repo}:both").config == arm.config
    missing = intermodal(tmp_path / "d", "pull", "--platform", "linux/s390x", f"{repo}:both", check=False)
    assert missing.returncode != 0 and "linux/s390x" in missing.stderr
    mismatch = intermodal(tmp_path / "d", "pull", "--platform", "linux/arm64", f"{repo}:amd", check=False)
    assert mismatch.returncode != 0 and "does not match" in mismatch.stderr


def test_pushing_again_sends_no_blob_bytes(proxy: FaultProxy, tmp_path: Path) -> None:
    name = f"{proxy.host}/again/app:1"
    make_image(tmp_path / "a", name, _layers(3))
    first = distribution.push(tmp_path / "a", name)
    assert first.uploaded > 60_000 and proxy.blob_bytes() == first.uploaded
    proxy.reset()
    out = intermodal(tmp_path / "a", "push", name).stdout
    assert out.count("Layer already exists") == 3
    assert proxy.blob_bytes() == 0
    assert proxy.requests("PATCH") == [] and proxy.requests("PUT", "/blobs/") == []


def test_an_image_sharing_all_but_one_layer_moves_only_that_layer(proxy: FaultProxy, tmp_path: Path) -> None:
    base = _layers(4)
    one = make_image(tmp_path / "a", f"{proxy.host}/shared/app:one", [*base, {"top": os.urandom(30_000)}])
    two = make_image(tmp_path / "a", f"{proxy.host}/shared/app:two", [*base, {"top": os.urandom(40_000)}])
    store = _store(tmp_path / "a")
    top = store.manifest(two).layers[-1]
    config = store.manifest(two).config
    distribution.push(tmp_path / "a", f"{proxy.host}/shared/app:one")
    proxy.reset()
    result = distribution.push(tmp_path / "a", f"{proxy.host}/shared/app:two")
    assert result.uploaded == top.size + config.size == proxy.blob_bytes()

    distribution.pull(tmp_path / "b", f"{proxy.host}/shared/app:one")
    proxy.reset()
    out = intermodal(tmp_path / "b", "pull", f"{proxy.host}/shared/app:two").stdout
    assert out.count("Already exists") == 4
    assert proxy.blob_bytes("GET") == top.size + config.size
    assert {r.path.rsplit("/", 1)[1] for r in proxy.requests("GET", "/blobs/")} == {
        str(top.digest),
        str(config.digest),
    }
    assert _store(tmp_path / "b").get(f"{proxy.host}/shared/app:two").config == two.config
    assert one.config != two.config


def test_cross_repository_mount_instead_of_upload(proxy: FaultProxy, tmp_path: Path) -> None:
    source = f"{proxy.host}/mount/source:1"
    record = make_image(tmp_path / "a", source, _layers(2))
    distribution.push(tmp_path / "a", source)
    intermodal(tmp_path / "a", "tag", source, f"{proxy.host}/mount/target:1")
    proxy.reset()
    out = intermodal(tmp_path / "a", "push", f"{proxy.host}/mount/target:1").stdout
    assert out.count("Mounted from mount/source") == 2
    assert proxy.blob_bytes() == 0
    assert len(proxy.requests("POST", "/mount/target/blobs/uploads/")) == 3  # two layers and the config

    # A pull records where blobs came from, so a fresh root can mount too.
    distribution.pull(tmp_path / "b", source)
    intermodal(tmp_path / "b", "tag", source, f"{proxy.host}/mount/third:1")
    proxy.reset()
    pushed = distribution.push(tmp_path / "b", f"{proxy.host}/mount/third:1")
    assert pushed.uploaded == 0 and pushed.digest == record.manifest_digest


def test_all_tags(registry: Registry, tmp_path: Path) -> None:
    repo = f"{registry.host}/alltags/app"
    for tag in ("1", "2"):
        make_image(tmp_path / "a", f"{repo}:{tag}", _layers(1))
        distribution.push(tmp_path / "a", f"{repo}:{tag}")
    out = intermodal(tmp_path / "b", "pull", "-a", repo).stdout
    assert out.splitlines()[-1] == repo
    assert {n for r in _store(tmp_path / "b").records() for n in r.names} == {f"{repo}:1", f"{repo}:2"}
    bad = intermodal(tmp_path / "b", "pull", "-a", f"{repo}:1", check=False)
    assert bad.returncode != 0 and "--all-tags" in bad.stderr
    with RegistryClient(registry.host) as client:
        client.ping()
        assert sorted(client.tags("alltags/app")) == sorted(client.tags("alltags/app", page=1)) == ["1", "2"]
        catalog = client.catalog()
        assert "alltags/app" in catalog and client.catalog(page=1) == catalog  # one repository per page


def test_unknown_tag_and_repository_exit_1_with_the_registry_message(
    registry: Registry, tmp_path: Path
) -> None:
    for name in (f"{registry.host}/nothing/here:1", f"{registry.host}/roundtrip/app:no-such-tag"):
        proc = intermodal(tmp_path, "pull", name, check=False)
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines() == [
            f"Error: manifest for {name}: manifest unknown: manifest unknown"
        ]
    push = intermodal(tmp_path, "push", f"{registry.host}/not/local:1", check=False)
    assert push.returncode != 0 and "does not exist locally" in push.stderr


def test_quiet_pull_prints_only_the_name(registry: Registry, tmp_path: Path) -> None:
    name = f"{registry.host}/quiet/app:1"
    make_image(tmp_path / "a", name, _layers(1))
    assert intermodal(tmp_path / "a", "push", "-q", name).stdout == f"{name}\n"
    assert intermodal(tmp_path / "b", "pull", "-q", name).stdout == f"{name}\n"


def test_ensure_image_follows_the_pull_policy(registry: Registry, tmp_path: Path) -> None:
    name = f"{registry.host}/ensure/app:1"
    pushed = make_image(tmp_path / "a", name, _layers(1))
    distribution.push(tmp_path / "a", name)
    with pytest.raises(Exception, match="pull policy is never"):
        distribution.ensure_image(tmp_path / "b", name, "never")
    events: list[distribution.ProgressEvent] = []
    assert (
        distribution.ensure_image(tmp_path / "b", name, "missing", progress=events.append).config
        == pushed.config
    )
    assert events
    events.clear()
    distribution.ensure_image(tmp_path / "b", name, "missing", progress=events.append)
    assert events == []  # present: no registry traffic
    distribution.ensure_image(tmp_path / "b", name, "always", progress=events.append)
    assert any("up to date" in e.status for e in events)


def test_run_pulls_a_missing_image_and_never_means_never(registry: Registry, tmp_path: Path) -> None:
    name = f"{registry.host}/runpull/bb:1"
    intermodal(tmp_path / "a", "image", "bootstrap", "busybox")
    intermodal(tmp_path / "a", "tag", "busybox", name)
    intermodal(tmp_path / "a", "push", name)
    refused = intermodal(tmp_path / "b", "run", "--rm", "--pull", "never", name, "true", check=False)
    assert refused.returncode == 125 and "no such image" in refused.stderr
    try:
        ran = intermodal(tmp_path / "b", "run", "--rm", name, "echo", "pulled and ran")
        assert ran.stdout == "pulled and ran\n"
        assert "Pull complete" in ran.stderr or "Downloaded" in ran.stderr
    finally:  # the run brought the root's bridge and nftables table up
        intermodal(tmp_path / "b", "system", "reset", "--force")
