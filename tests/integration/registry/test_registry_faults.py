"""Faults between us and a real registry, injected by a proxy on 127.0.0.1: streams cut half-way (resumed with
Range, in the same pull and in the next one), wrong blob bytes, malformed manifests, 5xx answers, and no
network at all."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from intermodal.engine import distribution
from intermodal.engine.images import ImageService
from intermodal.errors import CorruptContent, InvalidArgument, RegistryError
from intermodal.image import mediatypes as mt
from intermodal.image.store import ImageStore
from intermodal.registry import client as registry_client

from .registry_support import Cut, FaultProxy, intermodal, make_image

BIG = 2_000_000  # incompressible bytes in the layer that gets cut


def _pushed(proxy: FaultProxy, root: Path, repo: str, layers: int = 1):
    name = f"{proxy.host}/{repo}:1"
    record = make_image(root, name, [{f"f{i}": os.urandom(BIG)} for i in range(layers)])
    distribution.push(root, name)
    proxy.reset()
    layer = ImageStore(root / "images").manifest(record).layers[0]
    return name, record, layer


def test_a_cut_stream_resumes_with_range_in_the_same_pull(proxy: FaultProxy, tmp_path: Path) -> None:
    name, record, layer = _pushed(proxy, tmp_path / "a", "resume/same")
    proxy.cuts[str(layer.digest)] = Cut(after=700_000)
    assert distribution.pull(tmp_path / "b", name)[0].config == record.config
    gets = proxy.requests("GET", str(layer.digest))
    assert [g.range for g in gets] == [None, "bytes=700000-"]
    assert (
        proxy.blob_bytes("GET")
        == layer.size + ImageStore(tmp_path / "a" / "images").manifest(record).config.size
    )


def test_an_interrupted_pull_resumes_next_time(
    proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, record, layer = _pushed(proxy, tmp_path / "a", "resume/later")
    proxy.cuts[str(layer.digest)] = Cut(after=600_000, times=1 + registry_client.ATTEMPTS)
    failed = intermodal(tmp_path / "b", "pull", name, check=False)
    assert failed.returncode == 1
    assert "run the command again to resume" in failed.stderr.strip().splitlines()[-1]
    store = ImageStore(tmp_path / "b" / "images")
    assert store.records() == []
    (partial,) = store.content.ingests()
    assert partial.stat().st_size == 600_000
    report = ImageService(tmp_path / "b").check()
    assert report.errors == [] and len(report.notes) == 1 and "interrupted" in report.notes[0]

    proxy.reset()
    out = intermodal(tmp_path / "b", "pull", name).stdout
    assert "Resuming download at 600000 bytes" in out
    gets = proxy.requests("GET", str(layer.digest))
    assert [g.range for g in gets] == ["bytes=600000-"]
    assert gets[0].body_bytes == layer.size - 600_000
    assert store.get(name).manifest == record.manifest
    assert store.content.ingests() == []
    report = ImageService(tmp_path / "b").check()
    assert report.errors == [] and report.notes == []


def test_a_wrong_blob_is_detected_and_nothing_is_stored(proxy: FaultProxy, tmp_path: Path) -> None:
    name, _, layer = _pushed(proxy, tmp_path / "a", "wrong/blob")
    proxy.corrupt.add(str(layer.digest))
    failed = intermodal(tmp_path / "b", "pull", name, check=False)
    assert failed.returncode != 0
    assert f"content mismatch: expected {layer.digest}" in failed.stderr
    store = ImageStore(tmp_path / "b" / "images")
    assert store.records() == [] and list(store.content) == [] and store.content.ingests() == []
    report = ImageService(tmp_path / "b").check()
    assert report.errors == [] and report.notes == []
    proxy.corrupt.clear()
    distribution.pull(tmp_path / "b", name)  # and a clean retry works


def _manifest_json(**overrides: object) -> bytes:
    good = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": "sha256:" + "a" * 64, "size": 10},
        "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": "sha256:" + "b" * 64, "size": 10}],
    }
    return json.dumps({**good, **overrides}).encode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>surprise</html>", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (_manifest_json(layers=None), "missing config or layers"),
        (_manifest_json(schemaVersion=1), "schemaVersion must be 2"),
        (
            _manifest_json(config={"mediaType": mt.OCI_CONFIG, "digest": "md5:xyz", "size": 1}),
            "invalid digest .md5:xyz.",
        ),
        (
            _manifest_json(
                config={
                    "mediaType": "application/vnd.cncf.helm.config.v1+json",
                    "digest": "sha256:" + "a" * 64,
                    "size": 1,
                }
            ),
            "is not a container image",
        ),
        (
            _manifest_json(
                layers=[{"mediaType": "application/x-foo", "digest": "sha256:" + "b" * 64, "size": 1}]
            ),
            "unsupported layer media type",
        ),
    ],
)
def test_malformed_manifests_are_rejected_with_the_reason(
    proxy: FaultProxy, tmp_path: Path, body: bytes, reason: str
) -> None:
    name, _, _ = _pushed(proxy, tmp_path / "a", "malformed/app", layers=1)
    proxy.manifests["/manifests/1"] = body
    with pytest.raises(InvalidArgument, match=reason):
        distribution.pull(tmp_path / "b", name)
    assert ImageStore(tmp_path / "b" / "images").records() == []


def test_a_manifest_not_matching_the_requested_digest_is_refused(proxy: FaultProxy, tmp_path: Path) -> None:
    name, record, _ = _pushed(proxy, tmp_path / "a", "digest/lie")
    proxy.manifests[f"/manifests/{record.manifest}"] = _manifest_json()
    with pytest.raises(CorruptContent, match="does not match its digest"):
        distribution.pull(tmp_path / "b", f"{proxy.host}/digest/lie@{record.manifest}")


def test_5xx_is_retried_and_4xx_is_not(proxy: FaultProxy, tmp_path: Path) -> None:
    name, record, layer = _pushed(proxy, tmp_path / "a", "retry/app")
    proxy.failures["^GET .*/manifests/1$"] = [503, 502]
    proxy.failures[f"^GET .*/blobs/{layer.digest}$"] = [500]
    assert distribution.pull(tmp_path / "b", name)[0].manifest == record.manifest
    assert [r.status for r in proxy.requests("GET", "/manifests/1")] == [503, 502, 200]
    proxy.reset()
    proxy.failures["^GET .*/manifests/2$"] = [403]
    with pytest.raises(RegistryError, match="injected 403"):
        distribution.pull(tmp_path / "c", f"{proxy.host}/retry/app:2")
    assert len(proxy.requests("GET", "/manifests/2")) == 1


def test_no_network_fails_fast_with_one_line(tmp_path: Path) -> None:
    """docker.io goes to registry-1.docker.io; with nowhere to connect (a proxy on a closed port stands in
    for a machine without network) the pull fails at once, in one line."""
    started = time.monotonic()
    proc = intermodal(
        tmp_path,
        "pull",
        "busybox",
        env={"HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "NO_PROXY": ""},
        check=False,
    )
    assert time.monotonic() - started < 10
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot reach docker.io (registry-1.docker.io)")


@pytest.mark.parametrize("chunk", [None, 256 << 10], ids=["monolithic", "chunked"])
def test_a_failed_upload_continues_where_the_registry_stopped(
    proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int | None
) -> None:
    name = f"{proxy.host}/upload/{'chunked' if chunk else 'monolithic'}:1"
    record = make_image(tmp_path / "a", name, [{"f": os.urandom(BIG)}])
    if chunk:  # ~8 PATCHes of 256 KiB; the third is lost, the registry holds the first two
        monkeypatch.setattr(registry_client, "UPLOAD_CHUNK", chunk)
        proxy.failures["^PATCH .*/blobs/uploads/"] = [None, None, 503]
    else:
        proxy.failures["^PUT .*/blobs/uploads/"] = [503]
    assert distribution.push(tmp_path / "a", name).digest == record.manifest_digest
    (status,) = proxy.requests("GET", "/blobs/uploads/")  # "how much do you have?"
    assert status.status == 204
    if chunk:  # nothing the registry acknowledged was sent twice
        layer = ImageStore(tmp_path / "a" / "images").manifest(record).layers[0]
        assert sum(p.body_bytes for p in proxy.requests("PATCH") if p.status == 202) == layer.size
    assert distribution.pull(tmp_path / "b", name)[0].config == record.config
