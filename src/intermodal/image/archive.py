"""Save and load images as archives: `docker save`/`docker load` tarballs and OCI image layouts.

Formats written:

- ``docker``: what `docker save` writes since Docker 25, an OCI image layout (image-layout.md) with Docker's
  `manifest.json` and `repositories` beside it, so every Docker version, skopeo's `docker-archive:`,
  containerd and we can read it;
- ``oci-archive``: a tar of an OCI image layout alone;
- ``oci-dir``: the OCI image layout as a directory.

Loading treats the archive as hostile. It is read once as a stream and never extracted: small JSON members
stay in memory, every other regular member goes straight into the content store (a member named
`blobs/sha256/<hex>` must hash to that name), and links are followed only as names inside the archive. Every
image's layers are checked against its config's diff IDs before any record is committed.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import posixpath
import re
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeGuard, cast

import zstandard

from intermodal.errors import CorruptContent, InvalidArgument
from intermodal.fsutil import atomic_write_bytes, fsync_dir
from intermodal.image import mediatypes as mt
from intermodal.image import reference
from intermodal.image.digest import Digest
from intermodal.image.layer import detect_compression, open_decompressed
from intermodal.image.models import Descriptor, ImageConfig, Index, Manifest, Platform, canonical_json
from intermodal.image.store import ImageRecord, ImageStore
from intermodal.image.streams import Prefixed

__all__ = ["save", "load"]

# containerd's annotation for the full image name: Docker 25+ writes it into index.json and reads it back.
_IMAGE_NAME = "io.containerd.image.name"
# annotations.md: the ref name of an index.json descriptor in an image layout; Docker and skopeo put the tag here.
_REF_NAME = "org.opencontainers.image.ref.name"
_LAYOUT = canonical_json({"imageLayoutVersion": "1.0.0"})
_PLATFORM = Platform("linux", "amd64")
_LAYER_TYPES = {"": mt.OCI_LAYER, "gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD}

_METADATA_NAMES = {"manifest.json", "index.json", "oci-layout", "repositories"}
_LEGACY_LAYER_METADATA = {"json", "VERSION"}  # `<id>/json` and `<id>/VERSION` in docker <= 24 archives
_METADATA_MAX = 8 << 20  # one JSON document; real ones are kilobytes
_METADATA_TOTAL_MAX = 64 << 20
_MAX_LINK_HOPS = 16
_MAX_INDEX_DEPTH = 4
_BLOB_NAME = re.compile(r"^blobs/sha256/([a-f0-9]{64})$")
_CHUNK = 1 << 20
# What truncated or garbled tar, gzip or zstd data raises (gzip.BadGzipFile is an OSError, but never an I/O one).
_BAD_DATA = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, zstandard.ZstdError)


# -- save ---------------------------------------------------------------------------------------------------


@dataclass
class _SaveEntry:
    manifest: Descriptor  # the manifest's own descriptor, as index.json lists it
    parsed: Manifest
    refs: list[reference.Reference]


def save(
    store: ImageStore,
    items: list[tuple[ImageRecord, list[str]]],
    out: BinaryIO | Path | str,
    *,
    format: str = "docker",
) -> None:
    """Write the images in `items` (each with the names to save it under) to `out`: a binary stream for
    "docker" and "oci-archive", a directory path for "oci-dir"."""
    if format not in ("docker", "oci-archive", "oci-dir"):
        raise InvalidArgument(f"unknown archive format {format!r}: expected docker, oci-archive or oci-dir")
    entries = _save_entries(store, items)
    if format == "oci-dir":
        if not isinstance(out, str | Path):
            raise InvalidArgument("the oci-dir format writes a directory: give a path, not a stream")
        _write_layout_dir(store, entries, Path(out))
        return
    if isinstance(out, str | Path):
        raise InvalidArgument(f"the {format} format writes a stream: open the output file first")
    files = {"oci-layout": _LAYOUT, "index.json": _index(entries).to_bytes()}
    if format == "docker":
        files["manifest.json"] = _docker_manifest(entries)
        if repositories := _repositories(entries):
            files["repositories"] = repositories
    _write_tar(store, _blobs_of(entries), files, out)


def _save_entries(store: ImageStore, items: list[tuple[ImageRecord, list[str]]]) -> list[_SaveEntry]:
    """One entry per distinct image, in the order given, with every name it is saved under."""
    entries: dict[str, _SaveEntry] = {}
    for record, names in items:
        entry = entries.get(record.manifest)
        if entry is None:
            data = store.content.read_bytes(record.manifest_digest)
            parsed = Manifest.parse(data)
            manifest = Descriptor(parsed.media_type, record.manifest_digest, len(data))
            entry = entries[record.manifest] = _SaveEntry(manifest, parsed, [])
        for name in names:
            ref = reference.parse(name)
            if ref not in entry.refs:
                entry.refs.append(ref)
    return list(entries.values())


def _index(entries: list[_SaveEntry]) -> Index:
    """index.json: one descriptor per name, as Docker 25 and containerd write it; an image saved by ID gets
    one descriptor without annotations."""
    descriptors: list[Descriptor] = []
    for entry in entries:
        if not entry.refs:
            descriptors.append(entry.manifest)
        for ref in entry.refs:
            annotations = {_IMAGE_NAME: str(ref)}
            if ref.tag:
                annotations[_REF_NAME] = ref.tag
            descriptors.append(dataclasses.replace(entry.manifest, annotations=annotations))
    return Index(tuple(descriptors))


def _docker_manifest(entries: list[_SaveEntry]) -> bytes:
    """Docker's manifest.json, the file every `docker load` reads: paths into the layout and familiar tags.
    An image saved by ID has `"RepoTags": null`, as Docker writes it."""
    return json.dumps(
        [
            {
                "Config": _blob_path(entry.parsed.config.digest),
                "RepoTags": [f"{r.familiar_name}:{r.tag}" for r in entry.refs if r.tag] or None,
                "Layers": [_blob_path(layer.digest) for layer in entry.parsed.layers],
            }
            for entry in entries
        ],
        separators=(",", ":"),
    ).encode()


def _repositories(entries: list[_SaveEntry]) -> bytes:
    """The pre-1.10 `repositories` file (name -> tag -> top layer) that `docker save` still writes."""
    repositories: dict[str, dict[str, str]] = {}
    for entry in entries:
        for ref in entry.refs:
            if ref.tag and entry.parsed.layers:
                repositories.setdefault(ref.familiar_name, {})[ref.tag] = entry.parsed.layers[-1].digest.hex
    return json.dumps(repositories, sort_keys=True, separators=(",", ":")).encode() if repositories else b""


def _blobs_of(entries: list[_SaveEntry]) -> list[Digest]:
    blobs = {e.manifest.digest for e in entries}
    for entry in entries:
        blobs.add(entry.parsed.config.digest)
        blobs.update(layer.digest for layer in entry.parsed.layers)
    return sorted(blobs)


def _blob_path(digest: Digest) -> str:
    return f"blobs/sha256/{digest.hex}"


def _write_tar(store: ImageStore, blobs: list[Digest], files: dict[str, bytes], out: BinaryIO) -> None:
    """A deterministic tar (sorted names, mtime 0, root-owned, no user names): equal images, equal bytes.
    Blobs are streamed from the content store, never held in memory whole."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_tar_entry("blobs", tarfile.DIRTYPE, 0o755))
        tar.addfile(_tar_entry("blobs/sha256", tarfile.DIRTYPE, 0o755))
        for digest in blobs:
            with store.content.open(digest) as blob:
                info = _tar_entry(_blob_path(digest), size=store.content.size(digest))
                tar.addfile(info, cast(BinaryIO, blob))
                blob.read()  # reading at EOF makes the reader check the digest: never export a corrupt blob
        for name in sorted(files):
            tar.addfile(_tar_entry(name, size=len(files[name])), io.BytesIO(files[name]))


def _tar_entry(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_layout_dir(store: ImageStore, entries: list[_SaveEntry], root: Path) -> None:
    """Write or add to an image layout directory. Images already there stay unless one of ours takes their
    ref name (as skopeo does); index.json is written last, so it never names a blob that is not there yet."""
    existing = _existing_layout(root)
    index = _index(entries)
    taken = {d.annotations.get(_REF_NAME) for d in index.manifests} - {None}
    kept = [d for d in existing if d.annotations.get(_REF_NAME) not in taken and d not in index.manifests]
    blob_dir = root / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    for digest in _blobs_of(entries):
        _copy_blob(store, digest, blob_dir / digest.hex)
    fsync_dir(blob_dir)
    atomic_write_bytes(root / "oci-layout", _LAYOUT)
    atomic_write_bytes(root / "index.json", Index((*kept, *index.manifests)).to_bytes())


def _existing_layout(root: Path) -> list[Descriptor]:
    """The descriptors of a layout already at `root`; refuse to write into a directory that holds other files."""
    if (root / "oci-layout").is_file():
        index = root / "index.json"
        return list(Index.parse(index.read_bytes()).manifests) if index.is_file() else []
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise InvalidArgument(f"{root} exists and is not an OCI image layout: give a new or empty directory")
    return []


def _copy_blob(store: ImageStore, digest: Digest, target: Path) -> None:
    """Stream one blob into the layout through a temporary file, so the layout never holds a partial blob."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{digest.hex[:12]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f, store.content.open(digest) as blob:
            while chunk := blob.read(_CHUNK):  # the reader checks the digest when it reaches EOF
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- load ---------------------------------------------------------------------------------------------------


def load(store: ImageStore, stream: BinaryIO) -> list[ImageRecord]:
    """Load every image of a docker-archive (Docker 25+ or legacy) or OCI archive, plain, gzip or zstd.

    Everything is verified before the first record is committed, so a bad archive adds no image; blobs it
    left in the content store are unreferenced and go at the next garbage collection.
    """
    with store.lease():
        try:
            archive = _read_archive(store, stream)
            layer_cache: dict[Digest, _Layer] = {}
            verified = [_verify(store, image, layer_cache) for image in _images_in(archive)]
        except InvalidArgument as e:
            raise InvalidArgument(f"cannot load the image archive: {e}") from None
        return [
            store.commit(v.manifest, v.names, sum(v.layer_sizes), layer_sizes=v.layer_sizes) for v in verified
        ]


@dataclass
class _Archive:
    """What streaming the tar left: small JSON members by name, the digests of the other regular members
    (already in the content store), and links as name -> target name. Names are normalised archive paths;
    none of them is ever used as a filesystem path."""

    store: ImageStore
    metadata: dict[str, bytes] = field(default_factory=dict)
    blobs: dict[str, Digest] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    held: int = 0  # bytes of metadata kept in memory

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = _normalise(member.name)
        for table in (self.metadata, self.blobs, self.links):  # a later member of the same name wins
            table.pop(name, None)
        if member.issym():
            base = "" if member.linkname.startswith("/") else posixpath.dirname(name)
            self.links[name] = _normalise(posixpath.join(base, member.linkname))
        elif member.islnk():
            self.links[name] = _normalise(member.linkname)
        elif member.isreg():
            data = cast(BinaryIO, tar.extractfile(member))
            if _is_metadata(name):
                self._keep(name, member.size, data)
            else:
                self.blobs[name] = _ingest(self.store, name, member.size, data)
        # Directories, devices and fifos carry nothing an image needs.

    def _keep(self, name: str, size: int, data: BinaryIO) -> None:
        if size > _METADATA_MAX or self.held + size > _METADATA_TOTAL_MAX:
            raise InvalidArgument(f"{name} is {size} bytes, too large for a metadata file")
        self.metadata[name] = data.read()
        self.held += size

    def resolve(self, name: str) -> str:
        for _ in range(_MAX_LINK_HOPS):
            if name not in self.links:
                return name
            name = self.links[name]
        raise InvalidArgument(f"{name} is a link in a loop")

    def has(self, name: str) -> bool:
        name = self.resolve(name)
        return name in self.metadata or name in self.blobs

    def blob(self, name: str) -> Digest:
        """The content-store digest of member `name`, storing it first if it was kept in memory."""
        target = self.resolve(name)
        if target in self.blobs:
            return self.blobs[target]
        if target in self.metadata:
            return self.store.content.write_bytes(self.metadata[target])
        raise InvalidArgument(f"the archive has no {name}")

    def read(self, name: str) -> bytes:
        target = self.resolve(name)
        if target in self.metadata:
            return self.metadata[target]
        return _read_small(self.store, self.blob(name), name)

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidArgument(f"{name} is not valid JSON ({e})") from None

    def layout_blob(self, desc: Descriptor) -> Digest:
        """The blob `desc` names in the layout (image-layout.md: `blobs/<alg>/<encoded>`), checked against it."""
        name = _blob_path(desc.digest)
        if self.blob(name) != desc.digest:  # a link named after one digest, pointing at other content
            raise CorruptContent(f"archive member {name} does not match its digest: the archive is corrupt")
        size = self.store.content.size(desc.digest)
        if size != desc.size:
            raise CorruptContent(f"blob {desc.digest} is {size} bytes but its descriptor says {desc.size}")
        return desc.digest


def _read_archive(store: ImageStore, stream: BinaryIO) -> _Archive:
    """Stream every member once; the compression of the whole archive is sniffed first (tarfile knows
    gzip, bzip2 and xz but not zstd), and the sniffed bytes are put back for a stream that cannot seek."""
    archive = _Archive(store)
    head = b""
    while len(head) < 8 and (more := stream.read(8 - len(head))):  # a pipe may return fewer bytes
        head += more
    rewound = cast(BinaryIO, io.BufferedReader(Prefixed(head, stream), _CHUNK))
    try:
        with tarfile.open(fileobj=open_decompressed(rewound, detect_compression(head)), mode="r|*") as tar:
            for member in tar:
                archive.add(tar, member)
    except _BAD_DATA as e:
        raise InvalidArgument(
            f"not a readable tar archive ({e}): it is truncated or of another kind"
        ) from None
    return archive


def _normalise(name: str) -> str:
    """An archive path with `.`, `..` and leading `/` resolved inside the archive, the way Docker resolves
    names in scope: `../../etc/x` is `etc/x`, which is only ever a key, never a place on disk."""
    return posixpath.normpath("/" + name).lstrip("/")


def _is_metadata(name: str) -> bool:
    return (
        name in _METADATA_NAMES
        or name.endswith(".json")
        or posixpath.basename(name) in _LEGACY_LAYER_METADATA
    )


def _ingest(store: ImageStore, name: str, size: int, data: BinaryIO) -> Digest:
    """Copy one member into the content store; a member named `blobs/sha256/<hex>` must hash to that name."""
    match = _BLOB_NAME.match(name)
    expected = Digest(match[1]) if match else None
    try:
        with store.content.writer(expected, size) as w:
            while chunk := data.read(_CHUNK):
                w.write(chunk)
    except CorruptContent:
        raise CorruptContent(
            f"archive member {name} does not match its digest: the archive is corrupt"
        ) from None
    assert w.committed is not None
    return w.committed


def _read_small(store: ImageStore, digest: Digest, name: str) -> bytes:
    size = store.content.size(digest)
    if size > _METADATA_MAX:
        raise InvalidArgument(f"{name} is {size} bytes, too large for a manifest, index or config")
    return store.content.read_bytes(digest)


@dataclass
class _Image:
    """One image found in the archive, not yet verified."""

    names: list[str]
    config: Digest
    layers: list[Digest]
    manifest: bytes | None  # the archive's own manifest, kept byte for byte; None in a legacy archive


def _images_in(archive: _Archive) -> list[_Image]:
    if archive.has("index.json"):
        images = _layout_images(archive)
    elif archive.has("manifest.json"):
        images = _docker_images(archive)
    else:
        raise InvalidArgument(
            "it has neither index.json (OCI) nor manifest.json (Docker): not an image archive"
        )
    if not images:
        raise InvalidArgument(f"it holds no {_PLATFORM.os}/{_PLATFORM.architecture} image")
    return images


def _layout_images(archive: _Archive) -> list[_Image]:
    """The images index.json names (image-layout.md); nested indexes lead to their linux/amd64 manifest."""
    images: dict[Digest, _Image] = {}
    for desc in Index.parse(archive.read("index.json")).manifests:
        chosen = _platform_manifest(archive, desc, 0)
        if chosen is None:
            continue
        image = images.get(chosen.digest)
        if image is None:
            data = _read_small(archive.store, archive.layout_blob(chosen), _blob_path(chosen.digest))
            manifest = Manifest.parse(data, chosen.media_type)
            layers = [archive.layout_blob(layer) for layer in manifest.layers]
            image = images[chosen.digest] = _Image([], archive.layout_blob(manifest.config), layers, data)
        image.names += [n for n in _names(desc.annotations) if n not in image.names]
    return list(images.values())


def _platform_manifest(archive: _Archive, desc: Descriptor, depth: int) -> Descriptor | None:
    """The linux/amd64 image manifest `desc` leads to (image-index.md), or None if it is another platform's."""
    if desc.media_type in mt.INDEXES:
        if depth >= _MAX_INDEX_DEPTH:
            raise InvalidArgument(f"image indexes are nested more than {_MAX_INDEX_DEPTH} deep")
        data = _read_small(archive.store, archive.layout_blob(desc), _blob_path(desc.digest))
        return _platform_manifest(archive, Index.parse(data, desc.media_type).select(_PLATFORM), depth + 1)
    if desc.media_type not in mt.MANIFESTS:
        raise InvalidArgument(f"index.json names {desc.digest} of unsupported media type {desc.media_type}")
    platform = desc.platform
    if platform and (platform.os, platform.architecture) != (_PLATFORM.os, _PLATFORM.architecture):
        return None
    return desc


def _names(annotations: dict[str, str]) -> list[str]:
    """containerd's full-name annotation, else the OCI ref name when it is a whole reference rather than a
    bare tag (containerd's rule: one with '/', ':' or '@'). A bare tag names no repository, so it is unused."""
    name = annotations.get(_IMAGE_NAME, "")
    ref_name = annotations.get(_REF_NAME, "")
    if not name and any(c in ref_name for c in "/:@"):
        name = ref_name
    if not name:
        return []
    ref = reference.parse(name)
    return [str(ref)] if ref.tag else []


def _docker_images(archive: _Archive) -> list[_Image]:
    """The images of Docker's manifest.json; a legacy archive has no OCI manifest, so one is made later."""
    entries = archive.json("manifest.json")
    if not isinstance(entries, list):
        raise InvalidArgument("manifest.json is not a list of images")
    images = []
    for entry in entries:
        config, layers, tags = _docker_entry(entry)
        names = [str(reference.parse(tag)) for tag in tags]
        images.append(_Image(names, archive.blob(config), [archive.blob(p) for p in layers], None))
    return images


def _docker_entry(entry: Any) -> tuple[str, list[str], list[str]]:
    if isinstance(entry, dict):
        config, layers, tags = entry.get("Config"), entry.get("Layers"), entry.get("RepoTags") or []
        if isinstance(config, str) and _strings(layers) and _strings(tags):
            return config, layers, tags
    raise InvalidArgument(f"manifest.json has a malformed entry {json.dumps(entry)[:200]}")


def _strings(value: Any) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


@dataclass(frozen=True)
class _Layer:
    digest: Digest
    size: int
    compression: str
    diff_id: Digest
    unpacked_size: int


@dataclass(frozen=True)
class _Verified:
    manifest: bytes
    names: list[str]
    layer_sizes: list[int]


def _verify(store: ImageStore, image: _Image, layer_cache: dict[Digest, _Layer]) -> _Verified:
    """Check every layer against the config's rootfs.diff_ids (config.md: digests of the uncompressed layer
    tars), and give the manifest to commit: the archive's own, or one made for a legacy archive."""
    config = ImageConfig.parse(_read_small(store, image.config, str(image.config)))
    layers = []
    for digest in image.layers:
        if digest not in layer_cache:
            layer_cache[digest] = _inspect_layer(store, digest)
        layers.append(layer_cache[digest])
    if len(config.diff_ids) != len(layers):
        raise CorruptContent(
            f"image {image.config} has {len(layers)} layers but its config lists {len(config.diff_ids)} "
            "diff IDs: the archive is corrupt"
        )
    for n, (layer, diff_id) in enumerate(zip(layers, config.diff_ids, strict=True), 1):
        if layer.diff_id != diff_id:
            raise CorruptContent(
                f"layer {n} ({layer.digest}) of image {image.config} uncompresses to {layer.diff_id}, but the "
                f"config's rootfs.diff_ids says {diff_id}: the archive is corrupt"
            )
    manifest = image.manifest or _manifest_for(store, image.config, layers)
    return _Verified(manifest, image.names, [layer.unpacked_size for layer in layers])


def _inspect_layer(store: ImageStore, digest: Digest) -> _Layer:
    """Decompress one layer blob, its compression sniffed from the magic bytes, for its diff ID and size."""
    with open(store.content.path(digest), "rb") as f:
        compression = detect_compression(f.read(8))
        f.seek(0)
        diff = hashlib.sha256()
        unpacked = 0
        try:
            tar = open_decompressed(f, compression)
            while chunk := tar.read(_CHUNK):
                diff.update(chunk)
                unpacked += len(chunk)
        except _BAD_DATA as e:
            raise CorruptContent(f"layer {digest} is not valid {compression or 'tar'} data ({e})") from None
    return _Layer(digest, store.content.size(digest), compression, Digest(diff.hexdigest()), unpacked)


def _manifest_for(store: ImageStore, config: Digest, layers: list[_Layer]) -> bytes:
    """An OCI manifest for a legacy archive, with layer media types from the compression actually found."""
    return Manifest(
        config=Descriptor(mt.OCI_CONFIG, config, store.content.size(config)),
        layers=tuple(
            Descriptor(_LAYER_TYPES[layer.compression], layer.digest, layer.size) for layer in layers
        ),
    ).to_bytes()
