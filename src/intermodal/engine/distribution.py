"""Pull and push: moving images between the store and registries, plus login/logout and `ensure_image`.

Pull streams each blob into a resumable ingest (named after its digest, so an interrupted pull continues with
a Range request next time), decompresses and hashes layers while they download so the config's diff IDs are
checked without a second pass, skips blobs the store already has, and publishes the image only when every
blob is verified. Push never sends what the registry has: HEAD first, then a cross-repository mount from a
repository known to hold the blob, and only then an upload. Frontends get progress events and format them.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar, cast

import zstandard
from isal import isal_zlib

from intermodal.errors import CorruptContent, InvalidArgument, NotFound, RegistryError
from intermodal.fsutil import file_lock
from intermodal.image import mediatypes as mt
from intermodal.image import reference
from intermodal.image.digest import Digest
from intermodal.image.layer import detect_compression
from intermodal.image.models import Descriptor, ImageConfig, Index, Manifest, Platform
from intermodal.image.store import ImageRecord, ImageStore
from intermodal.registry import credentials
from intermodal.registry.client import Cancelled, FetchedManifest, RegistryClient
from intermodal.registry.mounts import MountSources

WORKERS = 3  # concurrent blob transfers per image, like Docker's max-concurrent-downloads default
CONFIG_LIMIT = 16 << 20  # an image config is JSON metadata; refuse to buffer anything bigger
MOUNT_SOURCES = "registry-blobs.json"
PULL_POLICIES = ("missing", "always", "never")
_CHUNK = 1 << 20
_DECOMPRESS_STEP = 4 << 20  # bound on decompressed bytes held at once (a layer may be a zip bomb)
_PROGRESS_INTERVAL = 0.1  # seconds between byte-count updates of one transfer
_INFLATE_ERROR = cast(type[Exception], isal_zlib.error)  # the stub types it as an instance


@dataclass(frozen=True)
class ProgressEvent:
    """One line of Docker-style progress: `id` is a short blob digest (or a tag), "" for a message."""

    id: str
    status: str
    current: int = 0
    total: int = 0


ProgressFn = Callable[[ProgressEvent], None]


def _ignore(event: ProgressEvent) -> None:
    pass


def parse_platform(text: str | None) -> Platform:
    """`os/arch[/variant]` as `--platform` takes it; linux/amd64 when not given."""
    if not text:
        return Platform()
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgument(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/arm64")
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


def normalize_registry(server: str | None) -> str:
    """What `login` takes: a host[:port], optionally as a URL; Docker Hub's aliases become `docker.io`."""
    host = (server or reference.DEFAULT_REGISTRY).removeprefix("https://").removeprefix("http://")
    host = host.split("/", 1)[0]
    if host in ("index.docker.io", "registry-1.docker.io"):
        return reference.DEFAULT_REGISTRY
    if not host:
        raise InvalidArgument(f"invalid registry {server!r}: expected HOST[:PORT]")
    return host


@contextlib.contextmanager
def _connect(registry: str, tls_verify: bool) -> Iterator[RegistryClient]:
    with RegistryClient(registry, credentials.lookup(registry), tls_verify=tls_verify) as client:
        client.ping()
        yield client


class _Emitter:
    """Serialises progress callbacks coming from worker threads."""

    def __init__(self, fn: ProgressFn):
        self._fn = fn
        self._lock = threading.Lock()

    def __call__(self, ident: str, status: str, current: int = 0, total: int = 0) -> None:
        with self._lock:
            self._fn(ProgressEvent(ident, status, current, total))


# -- pull ---------------------------------------------------------------------------------------------------


def pull(
    root: Path,
    name: str,
    platform: str | None = None,
    all_tags: bool = False,
    progress: ProgressFn = _ignore,
    *,
    tls_verify: bool = True,
) -> list[ImageRecord]:
    """Pull `name` (every tag of its repository with `all_tags`) into the store under `root`."""
    ref = reference.parse(name, default_tag=not all_tags)
    if all_tags and (ref.tag or ref.digest):
        raise InvalidArgument(f"tag can't be used with --all-tags/-a: give {ref.familiar_name}")
    wanted = parse_platform(platform)
    store = ImageStore(root / "images")
    emit = _Emitter(progress)
    with _connect(ref.registry, tls_verify) as client:
        refs = [ref.with_tag(t) for t in client.tags(ref.repository)] if all_tags else [ref]
        return [_Pull(store, client, r, wanted, bool(platform), emit).run() for r in refs]


class _Pull:
    def __init__(
        self,
        store: ImageStore,
        client: RegistryClient,
        ref: reference.Reference,
        platform: Platform,
        explicit_platform: bool,
        emit: _Emitter,
    ):
        self.store = store
        self.client = client
        self.ref = ref
        self.platform = platform
        self.explicit_platform = explicit_platform
        self.emit = emit
        self.cancelled = threading.Event()
        self._known: dict[Digest, tuple[Digest, int]] | None = None

    def run(self) -> ImageRecord:
        ref, store = self.ref, self.store
        target = str(ref.digest) if ref.digest else str(ref.tag)
        self.emit(target, f"Pulling from {ref.repository}")
        with store.lease():
            top = self.client.get_manifest(ref.repository, target)
            fetched = self._select(top)
            manifest = _parse_manifest(fetched, ref)
            config_bytes, config = self._config(manifest.config)
            if len(config.diff_ids) != len(manifest.layers):
                raise CorruptContent(
                    f"{ref.familiar}: the manifest has {len(manifest.layers)} layers but the config lists "
                    f"{len(config.diff_ids)} diff IDs: refused"
                )
            if self.explicit_platform and top.media_type not in mt.INDEXES:
                _check_platform(config, self.platform, ref)
            jobs = _unique_layers(manifest, config)
            done = run_parallel([self._layer_job(d, diff) for d, diff in jobs.values()], self.cancelled)
            sizes = dict(zip(jobs, done, strict=True))
            layer_sizes = [sizes[layer.digest] for layer in manifest.layers]
            # The config goes in last: a failed pull leaves only layers (kept to be reused or resumed).
            self.store.content.write_bytes(config_bytes, expected=manifest.config.digest)
            names = [str(ref)] if ref.tag and not ref.digest else []
            up_to_date = any(
                r.manifest == str(fetched.digest) and set(names) <= set(r.names) for r in store.records()
            )
            record = store.commit(
                fetched.data,
                names,
                sum(layer_sizes),
                repo_digests=[f"{ref.familiar_name}@{top.digest}"],
                layer_sizes=layer_sizes,
            )
        MountSources(store.root / MOUNT_SOURCES).record(
            ref.registry,
            ref.repository,
            [manifest.config.digest, *jobs],
            store.content.has,
        )
        self.emit("", f"Digest: {top.digest}")
        what = "Image is up to date for" if up_to_date else "Downloaded newer image for"
        self.emit("", f"Status: {what} {ref.familiar}")
        return record

    def _select(self, top: FetchedManifest) -> FetchedManifest:
        """Follow an index to the manifest for our platform (image-index.md); a manifest is itself."""
        if top.media_type not in mt.INDEXES:
            return top
        try:
            index = Index.parse(top.data, top.media_type)
        except InvalidArgument as e:
            raise InvalidArgument(f"{self.ref.familiar}: the registry sent a malformed index ({e})") from None
        desc = index.select(self.platform)
        fetched = self.client.get_manifest(self.ref.repository, str(desc.digest))
        if len(fetched.data) != desc.size:
            raise CorruptContent(
                f"{self.ref.familiar}: manifest {desc.digest} is {len(fetched.data)} bytes, the index says "
                f"{desc.size}: refused"
            )
        return fetched

    def _config(self, desc: Descriptor) -> tuple[bytes, ImageConfig]:
        """The config's bytes, verified, from the store or the registry (kept in memory until commit)."""
        content = self.store.content
        if content.has(desc.digest):
            data = content.read_bytes(desc.digest)
        else:
            if desc.size > CONFIG_LIMIT:
                raise InvalidArgument(f"{self.ref.familiar}: image config of {desc.size} bytes refused")
            data = self.client.get_blob(self.ref.repository, desc.digest, desc.size)
            if Digest.of_bytes(data) != desc.digest or len(data) != desc.size:
                raise CorruptContent(
                    f"config {desc.digest} from {self.ref.familiar_name} does not match its digest and size: "
                    "refused, nothing was stored"
                )
        try:
            return data, ImageConfig.parse(data)
        except InvalidArgument as e:
            raise InvalidArgument(f"{self.ref.familiar}: {e}") from None

    def _layer_job(self, desc: Descriptor, diff_id: Digest) -> Callable[[], int]:
        return lambda: self._layer(desc, diff_id)

    def _layer(self, desc: Descriptor, diff_id: Digest) -> int:
        """Make sure the layer blob is stored and matches `diff_id`; return its unpacked size."""
        short = desc.digest.short
        content = self.store.content
        if content.has(desc.digest):
            return self._existing(desc, diff_id)
        self.emit(short, "Pulling fs layer", 0, desc.size)
        ingest_name = f"pull-{desc.digest.hex}"
        ingest = content.ingest / ingest_name
        content.ingest.mkdir(parents=True, exist_ok=True)
        # One transfer per blob at a time, across processes: a second pull waits, then finds it stored.
        with file_lock(ingest):
            if content.has(desc.digest):
                with contextlib.suppress(FileNotFoundError):
                    if ingest.stat().st_size == 0:
                        ingest.unlink()
                return self._existing(desc, diff_id)
            with content.writer(desc.digest, desc.size, ref=ingest_name) as w:
                hasher = _DiffHasher()
                if w.offset:
                    self.emit(short, f"Resuming download at {w.offset} bytes", w.offset, desc.size)
                    with open(ingest, "rb") as f:
                        remaining = w.offset
                        while remaining and (chunk := f.read(min(_CHUNK, remaining))):
                            hasher.update(chunk)
                            remaining -= len(chunk)

                shown = 0.0

                def write(chunk: bytes) -> None:
                    nonlocal shown
                    w.write(chunk)
                    hasher.update(chunk)
                    if time.monotonic() - shown > _PROGRESS_INTERVAL:
                        shown = time.monotonic()
                        self.emit(short, "Downloading", w.offset, desc.size)

                self.client.download_blob(
                    self.ref.repository, desc.digest, w.offset, desc.size, write, self.cancelled
                )
                self.emit(short, "Verifying Checksum", desc.size, desc.size)
                try:
                    unpacked = _check_diff_id(hasher, desc, diff_id)
                except CorruptContent as e:
                    # The blob digest speaks first: a mismatch there (raised by commit, which discards the
                    # bytes) means damage in transit; if the blob is authentic, the image itself is bad.
                    w.commit()
                    raise e from None
                w.commit()
        self.emit(short, "Download complete", desc.size, desc.size)
        self.emit(short, "Pull complete", desc.size, desc.size)
        return unpacked

    def _existing(self, desc: Descriptor, diff_id: Digest) -> int:
        """A stored layer: its unpacked size from a record that has it, else by decompressing it once."""
        self.emit(desc.digest.short, "Already exists")
        if self._known is None:
            self._known = _known_layers(self.store)
        known = self._known.get(desc.digest)
        if known is not None and known[0] == diff_id:
            return known[1]
        hasher = _DiffHasher()
        with open(self.store.content.path(desc.digest), "rb") as f:
            while chunk := f.read(_CHUNK):
                hasher.update(chunk)
        return _check_diff_id(hasher, desc, diff_id)


# -- push ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushResult:
    digest: Digest
    size: int  # of the manifest, as Docker prints it
    uploaded: int  # blob bytes actually sent


def push(root: Path, name: str, progress: ProgressFn = _ignore, *, tls_verify: bool = True) -> PushResult:
    """Push the local image `name` (NAME[:TAG]) to its registry and record the digest it got there."""
    ref = reference.parse(name)
    if ref.digest or not ref.tag:
        raise InvalidArgument(f"cannot push {name!r} by digest: give NAME[:TAG]")
    store = ImageStore(root / "images")
    try:
        record = store.get(str(ref))
    except NotFound:
        raise NotFound(f"an image does not exist locally with the tag: {ref.familiar}") from None
    emit = _Emitter(progress)
    mounts = MountSources(store.root / MOUNT_SOURCES)
    with store.lease():
        manifest_bytes = store.content.read_bytes(record.manifest_digest)
        manifest = Manifest.parse(manifest_bytes)
        with _connect(ref.registry, tls_verify) as client:
            emit("", f"The push refers to repository [{ref.name}]")
            blobs = [*reversed(manifest.layers), manifest.config]  # Docker lists the top layer first
            for desc in blobs[:-1]:
                emit(desc.digest.short, "Preparing")
            cancelled = threading.Event()
            sent = run_parallel(
                [
                    _push_job(store, client, mounts, ref, d, d is manifest.config, emit, cancelled)
                    for d in blobs
                ],
                cancelled,
            )
            digest = client.put_manifest(ref.repository, ref.tag, manifest_bytes, manifest.media_type)
        store.commit(
            manifest_bytes,
            [],
            record.size,
            repo_digests=[f"{ref.familiar_name}@{digest}"],
            layer_sizes=record.layer_sizes,
        )
    mounts.record(ref.registry, ref.repository, [d.digest for d in blobs], store.content.has)
    emit("", f"{ref.tag}: digest: {digest} size: {len(manifest_bytes)}")
    return PushResult(digest, len(manifest_bytes), sum(sent))


def _push_job(
    store: ImageStore,
    client: RegistryClient,
    mounts: MountSources,
    ref: reference.Reference,
    desc: Descriptor,
    quiet: bool,
    emit: _Emitter,
    cancelled: threading.Event,
) -> Callable[[], int]:
    shown = emit if not quiet else _Emitter(_ignore)
    return lambda: _push_blob(store, client, mounts, ref, desc, shown, cancelled)


def _push_blob(
    store: ImageStore,
    client: RegistryClient,
    mounts: MountSources,
    ref: reference.Reference,
    desc: Descriptor,
    emit: _Emitter,
    cancelled: threading.Event,
) -> int:
    """Send one blob unless the registry has it or can mount it; return the bytes uploaded."""
    short, repo = desc.digest.short, ref.repository
    if client.blob_size(repo, desc.digest) is not None:
        emit(short, "Layer already exists")
        return 0
    location = None
    for source in mounts.sources(ref.registry, desc.digest):
        if source == repo:
            continue
        try:
            location = client.mount_blob(repo, desc.digest, source)
        except RegistryError as e:
            if e.http_status >= 500:
                raise
            continue  # no read access to the source repository (or it is gone): try another, or upload
        if location is None:
            emit(short, f"Mounted from {source}")
            return 0
        break  # the registry opened an upload session instead; use it
    path = store.content.path(desc.digest)
    size = store.content.size(desc.digest)
    if size != desc.size:
        raise CorruptContent(
            f"blob {desc.digest} is {size} bytes but the manifest says {desc.size}; "
            "run `intermodal system check`"
        )
    done = 0

    def sent(n: int) -> None:
        nonlocal done
        if cancelled.is_set():
            raise Cancelled()
        done += n
        emit(short, "Pushing", done, desc.size)

    client.upload_blob(repo, desc.digest, path, desc.size, location, sent)
    emit(short, "Pushed", desc.size, desc.size)
    return desc.size


# -- login, logout, ensure_image ----------------------------------------------------------------------------


def login(server: str | None, username: str, password: str, *, tls_verify: bool = True) -> Path:
    """Check the credentials against the registry, then store them in Docker's config.json."""
    if not username or not password:
        raise InvalidArgument("login needs a username and a password")
    registry = normalize_registry(server)
    creds = credentials.Credentials(username, password)
    with RegistryClient(registry, creds, tls_verify=tls_verify) as client:
        client.ping()
        client.check_login()
    return credentials.store(registry, creds)


def logout(server: str | None) -> tuple[str, bool]:
    """Forget the credentials for a registry; returns it and whether there were any."""
    registry = normalize_registry(server)
    return registry, credentials.erase(registry)


def ensure_image(
    root: Path,
    name: str,
    policy: str = "missing",
    *,
    platform: str | None = None,
    progress: ProgressFn = _ignore,
    tls_verify: bool = True,
) -> ImageRecord:
    """The image `run`/`build` should use under `--pull missing|always|never` (Docker's semantics)."""
    if policy not in PULL_POLICIES:
        raise InvalidArgument(f"invalid pull policy {policy!r}: choose one of {', '.join(PULL_POLICIES)}")
    store = ImageStore(root / "images")
    if policy != "always":
        try:
            return store.get(name)
        except NotFound:
            found = _by_repo_digest(store, name)
            if found is not None:
                return found
            if policy == "never":
                raise NotFound(f"no such image: {name} (not pulled: the pull policy is never)") from None
    return pull(root, name, platform, progress=progress, tls_verify=tls_verify)[0]


def _by_repo_digest(store: ImageStore, name: str) -> ImageRecord | None:
    """`name@digest` where the digest is the index a pull started from (kept in repo_digests only)."""
    try:
        ref = reference.parse(name)
    except InvalidArgument:
        return None
    if ref.digest is None:
        return None
    wanted = f"{ref.familiar_name}@{ref.digest}"
    return next((r for r in store.records() if wanted in r.repo_digests), None)


def _parse_manifest(fetched: FetchedManifest, ref: reference.Reference) -> Manifest:
    if fetched.media_type not in mt.MANIFESTS:
        raise InvalidArgument(
            f"{ref.familiar}: unsupported manifest type {fetched.media_type!r}: not a container image"
        )
    try:
        manifest = Manifest.parse(fetched.data, fetched.media_type)
        if manifest.config.media_type not in mt.CONFIGS:
            raise InvalidArgument(f"config type {manifest.config.media_type!r} is not a container image")
        for layer in manifest.layers:
            try:
                mt.layer_compression(layer.media_type)
            except ValueError:
                raise InvalidArgument(f"unsupported layer media type {layer.media_type!r}") from None
    except InvalidArgument as e:
        raise InvalidArgument(f"{ref.familiar}: the registry sent a malformed manifest ({e})") from None
    return manifest


def _check_platform(config: ImageConfig, wanted: Platform, ref: reference.Reference) -> None:
    actual = config.platform
    if (actual.os, actual.architecture) != (wanted.os, wanted.architecture) or (
        wanted.variant and actual.variant != wanted.variant
    ):
        have = "/".join(p for p in (actual.os, actual.architecture, actual.variant) if p)
        want = "/".join(p for p in (wanted.os, wanted.architecture, wanted.variant) if p)
        raise InvalidArgument(f"image {ref.familiar} is {have}, which does not match the requested {want}")


def _unique_layers(manifest: Manifest, config: ImageConfig) -> dict[Digest, tuple[Descriptor, Digest]]:
    """Each distinct layer blob once (an image may repeat one), with the diff ID the config gives it."""
    jobs: dict[Digest, tuple[Descriptor, Digest]] = {}
    for layer, diff_id in zip(manifest.layers, config.diff_ids, strict=True):
        seen = jobs.setdefault(layer.digest, (layer, diff_id))
        if seen[1] != diff_id:
            raise CorruptContent(f"layer {layer.digest} is listed with two different diff IDs: refused")
    return jobs


def _known_layers(store: ImageStore) -> dict[Digest, tuple[Digest, int]]:
    """Layer digest -> (diff ID, unpacked size) from the images already in the store."""
    known: dict[Digest, tuple[Digest, int]] = {}
    for record in store.records():
        with contextlib.suppress(NotFound, InvalidArgument, CorruptContent):
            layers = store.manifest(record).layers
            diff_ids = store.config(record).diff_ids
            if len(layers) == len(diff_ids) == len(record.layer_sizes):
                for layer, diff_id, size in zip(layers, diff_ids, record.layer_sizes, strict=True):
                    known[layer.digest] = (diff_id, size)
    return known


def _check_diff_id(hasher: _DiffHasher, desc: Descriptor, diff_id: Digest) -> int:
    actual, unpacked = hasher.finish(desc.digest)
    if actual != diff_id:
        raise CorruptContent(
            f"layer {desc.digest} uncompresses to {actual}, but the image config says {diff_id}: "
            "the image is corrupt and was not stored"
        )
    return unpacked


class _DiffHasher:
    """Decompresses a layer as its bytes arrive and hashes the tar stream (the diff ID, config.md) in the
    same pass as the download. Compression is sniffed from the magic bytes, like containerd, because media
    types sometimes lie. gzip goes through ISA-L (`isal`), which inflates 2-4x faster than zlib: that pass is
    most of a pull's CPU time. A decoding error is kept for `finish`: the blob digest decides first whether the
    bytes are damaged in transit or the image itself is bad."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._kind: str | None = None
        self._gunzip: isal_zlib.Decompress | None = None
        self._members = 0
        self._zstd: zstandard.ZstdDecompressionWriter | None = None
        self.error: Exception | None = None

    def _out(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)

    def write(self, data: bytes) -> int:  # the zstd stream writer's sink
        self._out(data)
        return len(data)

    def update(self, data: bytes) -> None:
        """Take bytes as they come off the network; inflate them in 1 MiB batches (fewer calls per byte
        than the 64 KiB pieces a socket read gives)."""
        if self.error is not None:
            return
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= _CHUNK:
            self._drain()

    def _drain(self) -> None:
        data = b"".join(self._pending)
        self._pending, self._pending_size = [], 0
        if self._kind is None:
            if not data:
                return
            self._start(detect_compression(data))
        try:
            self._feed(data)
        except (_INFLATE_ERROR, zstandard.ZstdError) as e:
            self.error = e

    def _start(self, kind: str) -> None:
        self._kind = kind
        if kind == "zstd":
            self._zstd = zstandard.ZstdDecompressor().stream_writer(
                cast(BinaryIO, self), write_size=_CHUNK, closefd=False
            )

    def _feed(self, data: bytes) -> None:
        if self._kind == "gzip":
            self._feed_gzip(data)
        elif self._kind == "zstd":
            assert self._zstd is not None
            self._zstd.write(data)
        else:
            self._out(data)

    def _feed_gzip(self, data: bytes) -> None:
        """Several gzip members back to back are one stream (RFC 1952), zero padding between them allowed."""
        while data:
            if self._gunzip is None:
                if self._members:
                    data = data.lstrip(b"\0")
                    if not data:
                        return
                self._gunzip = isal_zlib.decompressobj(16 + isal_zlib.MAX_WBITS)
                self._members += 1
            z = self._gunzip
            while True:
                out = z.decompress(data, _DECOMPRESS_STEP)
                self._out(out)
                data = z.unconsumed_tail
                if z.eof or (not data and len(out) < _DECOMPRESS_STEP):
                    break
            if z.eof:
                data = z.unused_data
                self._gunzip = None
            else:
                data = b""

    def finish(self, digest: Digest) -> tuple[Digest, int]:
        if self.error is None:
            self._drain()
        if self._kind == "gzip" and self._gunzip is not None and self.error is None:
            self.error = EOFError("compressed stream ended before the end-of-stream marker")
        if self._zstd is not None and self.error is None:
            try:
                self._zstd.flush()
            except zstandard.ZstdError as e:
                self.error = e
        if self.error is not None:
            raise CorruptContent(f"layer {digest} is not valid {self._kind or 'tar'} data ({self.error})")
        return Digest(self._hash.hexdigest()), self.size


T = TypeVar("T")


def run_parallel(jobs: list[Callable[[], T]], cancelled: threading.Event) -> list[T]:
    """Run jobs on WORKERS threads; on the first failure (or Ctrl-C) the others stop at their next chunk,
    keeping what they have for a later resume, and that first error is raised."""
    if not jobs:
        return []
    pool = ThreadPoolExecutor(max_workers=min(WORKERS, len(jobs)), thread_name_prefix="transfer")
    futures: list[Future[T]] = [pool.submit(job) for job in jobs]
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when="FIRST_EXCEPTION")
            if any(f.exception() is not None for f in done):
                cancelled.set()
                for f in pending:
                    f.cancel()
                wait(pending)
                break
    except BaseException:
        cancelled.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
    real = [e for e in errors if not isinstance(e, Cancelled)]
    if real or errors:
        raise (real or errors)[0]  # type: ignore[misc]
    return [f.result() for f in futures]
