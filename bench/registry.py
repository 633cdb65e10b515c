"""Registry benchmark: pull and push of a ~200 MB image with 5 layers (incompressible and compressible parts)
against Debian's docker-registry on 127.0.0.1, compared with `skopeo copy` between the same registry and an
OCI layout, in the same run. Also: blob bytes a second push sends, and what a pull of an image sharing 4 of
its 5 layers with a stored one downloads.

Bytes are counted by the registry, from its access log (`http.response.written` of blob GETs, and the number
of upload requests), not by our client. Each push goes to an empty registry, so neither tool finds blobs
already there; skopeo's blob-info cache is hidden behind an empty tmpfs (`unshare -m`) so it cannot mount.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from intermodal.engine import distribution
from intermodal.image import mediatypes as mt
from intermodal.image.digest import Digest
from intermodal.image.models import Descriptor, Manifest, canonical_json
from intermodal.image.store import ImageRecord, ImageStore

RUNS = 3
LAYERS = 5
RANDOM_PART = 30 << 20  # incompressible bytes per layer
TEXT_PART = 20 << 20  # compressible bytes per layer (log-like lines)
SKOPEO_CACHE = "/var/lib/containers/cache"
_WRITTEN = re.compile(
    r'http\.request\.method=(\w+) .*?http\.request\.uri="?(\S+?)"? .*?http\.response\.written=(\d+)'
)

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via HTTP_PROXY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _registry(work: Path) -> Iterator[tuple[str, Path]]:
    """A fresh docker-registry; yields its host:port and its log file."""
    work.mkdir(parents=True)
    host = f"127.0.0.1:{_free_port()}"
    config = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(work / "data")}},
        "http": {"addr": host},
    }
    (work / "config.yml").write_text(json.dumps(config))
    log = work / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(work / "config.yml")], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        for _ in range(300):
            try:
                _DIRECT.open(f"http://{host}/v2/", timeout=1).close()
                break
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        yield host, log
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work / "data", ignore_errors=True)


def _log_offset(log: Path) -> int:
    return log.stat().st_size


def _blob_traffic(log: Path, offset: int) -> tuple[int, int]:
    """(bytes of blob GET responses, number of upload requests) logged since `offset`."""
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    got = uploads = 0
    for line in text.splitlines():
        if 'msg="response completed"' not in line:
            continue
        match = _WRITTEN.search(line)
        if not match:
            continue
        method, uri, written = match.groups()
        if method == "GET" and "/blobs/sha256:" in uri:
            got += int(written)
        if "/blobs/uploads/" in uri and method in ("POST", "PATCH", "PUT"):
            uploads += 1
    return got, uploads


def _layer(rng: random.Random, index: int) -> tuple[bytes, bytes]:
    """A layer tar with a random (incompressible) file and a text (compressible) one; (gzip blob, tar)."""
    words = [f"word{rng.randrange(5000)}" for _ in range(4000)]
    text = io.BytesIO()
    while text.tell() < TEXT_PART:
        text.write((" ".join(rng.sample(words, 12)) + "\n").encode())
    files = {f"data/random-{index}.bin": rng.randbytes(RANDOM_PART), f"data/log-{index}.txt": text.getvalue()}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, compresslevel=6, mtime=0), tar_bytes


def _image(root: Path, name: str, layers: list[tuple[bytes, bytes]]) -> ImageRecord:
    store = ImageStore(root / "images")
    descs = [Descriptor(mt.OCI_LAYER_GZIP, store.content.write_bytes(blob), len(blob)) for blob, _ in layers]
    config = canonical_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [str(Digest.of_bytes(tar)) for _, tar in layers]},
        }
    )
    manifest = Manifest(
        Descriptor(mt.OCI_CONFIG, store.content.write_bytes(config), len(config)), tuple(descs)
    )
    sizes = [len(tar) for _, tar in layers]
    return store.commit(manifest.to_bytes(), [name], sum(sizes), layer_sizes=sizes)


def _skopeo(*args: str) -> None:
    """skopeo with its blob-info cache hidden (an empty tmpfs over it, in a private mount namespace)."""
    script = f'mkdir -p {SKOPEO_CACHE} && mount -t tmpfs tmpfs {SKOPEO_CACHE} && exec skopeo "$@"'
    subprocess.run(["unshare", "-m", "sh", "-c", script, "skopeo", *args], check=True, capture_output=True)


def _timed(who: str, action: Callable[..., object], *args: object) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run: ours in this process, skopeo as a child. CPU time is the
    steadier figure on a shared machine; wall time is what a user waits."""
    kind = resource.RUSAGE_SELF if who == "ours" else resource.RUSAGE_CHILDREN
    before = resource.getrusage(kind)
    started = time.perf_counter()
    action(*args)
    wall = time.perf_counter() - started
    after = resource.getrusage(kind)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _oci_layout(store: ImageStore, record: ImageRecord, target: Path) -> None:
    blobs = target / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    manifest = store.manifest(record)
    for digest in (record.manifest_digest, manifest.config.digest, *(d.digest for d in manifest.layers)):
        shutil.copyfile(store.content.path(digest), blobs / digest.hex)
    entry = {
        "mediaType": mt.OCI_MANIFEST,
        "digest": record.manifest,
        "size": store.content.size(record.manifest_digest),
        "annotations": {"org.opencontainers.image.ref.name": "t"},
    }
    (target / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (target / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))


def main() -> None:
    if not shutil.which("docker-registry") or not shutil.which("skopeo"):
        print("registry benchmark skipped: needs docker-registry and skopeo")
        return
    work = Path(tempfile.mkdtemp(prefix="intermodal-bench-registry-", dir="/var/tmp"))
    try:
        _run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(work: Path) -> None:
    rng = random.Random(1509)
    layers = [_layer(rng, i) for i in range(LAYERS)]
    source = work / "source"
    record = _image(source, "bench/image:1", layers)
    store = ImageStore(source / "images")
    blob_bytes = sum(len(blob) for blob, _ in layers)
    mb = blob_bytes / 1e6
    layout = work / "layout"
    _oci_layout(store, record, layout)
    print(f"registry: image of {LAYERS} layers, {mb:.0f} MB compressed, {record.size / 1e6:.0f} MB unpacked")

    results: dict[tuple[str, str], list[tuple[float, float]]] = {
        (op, who): [] for op in ("pull", "push") for who in ("ours", "skopeo")
    }
    for run in range(RUNS):  # each push into an empty registry, ours and skopeo alternating
        with _registry(work / f"push-ours-{run}") as (host, _):
            name = f"{host}/bench/image:1"
            store.tag("bench/image:1", name)
            (source / "images" / distribution.MOUNT_SOURCES).unlink(missing_ok=True)
            results["push", "ours"].append(_timed("ours", distribution.push, source, name))
        with _registry(work / f"push-skopeo-{run}") as (host, _):
            target = f"docker://{host}/bench/image:1"
            copy = ("copy", "--dest-tls-verify=false", f"oci:{layout}:t", target)
            results["push", "skopeo"].append(_timed("skopeo", _skopeo, *copy))

    with _registry(work / "pull") as (host, log):
        name = f"{host}/bench/image:1"
        store.tag("bench/image:1", name)
        distribution.push(source, name)
        for run in range(RUNS):
            root = work / f"pull-ours-{run}"
            results["pull", "ours"].append(_timed("ours", distribution.pull, root, name))
            shutil.rmtree(root)
            dest = work / f"pull-skopeo-{run}"
            copy = ("copy", "--src-tls-verify=false", f"docker://{name}", f"oci:{dest}:t")
            results["pull", "skopeo"].append(_timed("skopeo", _skopeo, *copy))
            shutil.rmtree(dest)

        offset = _log_offset(log)
        again = distribution.push(source, name)
        _, repush_uploads = _blob_traffic(log, offset)

        # An image sharing its first 4 layers with the stored one: only the fifth should travel.
        other = [*layers[:4], _layer(rng, 99)]
        second = _image(source, "bench/other:1", other)
        other_name = f"{host}/bench/other:1"
        store.tag("bench/other:1", other_name)
        distribution.push(source, other_name)
        root = work / "shared"
        distribution.pull(root, name)
        offset = _log_offset(log)
        distribution.pull(root, other_name)
        shared_got, _ = _blob_traffic(log, offset)
        fifth = len(other[4][0]) + store.content.size(store.manifest(second).config.digest)

    print(
        f"{'median of ' + str(RUNS):14}{'ours s':>8}{'skopeo s':>10}{'ours MB/s':>11}{'skopeo MB/s':>13}",
        end="",
    )
    print(f"{'ratio':>7}{'ours cpu s':>12}{'skopeo cpu s':>14}")
    for op in ("pull", "push"):
        ours = [statistics.median(x) for x in zip(*results[op, "ours"], strict=True)]
        theirs = [statistics.median(x) for x in zip(*results[op, "skopeo"], strict=True)]
        print(f"{op:14}{ours[0]:8.2f}{theirs[0]:10.2f}{mb / ours[0]:11.0f}{mb / theirs[0]:13.0f}", end="")
        print(f"{theirs[0] / ours[0]:7.2f}{ours[1]:12.2f}{theirs[1]:14.2f}")
    print(f"re-push: {repush_uploads} upload requests at the registry, {again.uploaded} blob bytes sent")
    print(f"shared-layer pull: {shared_got} blob bytes downloaded (fifth layer + config = {fifth})")


if __name__ == "__main__":
    main()
