"""A build step's file system: an overlay of the stage's layers with a fresh upper dir, whose content after
the step *is* the step's layer (write_layer's overlay mode), and the way COPY/ADD write into it.

Copies go through ``image.layer.apply_layer``: the selected entries are streamed as a tar whose names are
rootfs paths, so every path is resolved inside the rootfs like chroot(2) would, exactly as for a pulled
layer. A symlink the image has at ``/app`` can never make COPY write to the host.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import lzma
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from intermodal.engine.build.context import Entry
from intermodal.engine.containers.bundle import Paths, is_mounted
from intermodal.errors import InvalidArgument
from intermodal.image import mediatypes as mt
from intermodal.image.digest import Digest
from intermodal.image.layer import LayerInfo, apply_layer, detect_compression, open_decompressed, write_layer
from intermodal.image.models import Descriptor
from intermodal.image.snapshots import Snapshotter, chain_ids
from intermodal.image.store import ImageStore
from intermodal.runtime import sys as linux
from intermodal.runtime.rootfs import open_in_root

LAYER_MEDIA_TYPE = mt.OCI_LAYER_ZSTD  # zstd: 50 MB in 0.1 s where gzip takes 5 s (see docs/architecture.md)
_CHUNK = 1 << 20
# write_layer reads overlay whiteouts and opaque dirs from the upper dir; redirects and metacopy would
# hide changes in xattrs a layer cannot express, so they are off for build mounts. `volatile` skips the
# sync on unmount (55 ms a step): the step's result is made durable as a layer blob, not as the upper dir.
_OVERLAY_OPTIONS = ("redirect_dir=off", "metacopy=off", "index=off", "volatile")


@dataclass
class Layers:
    """A stack of layers: (blob descriptor, diff ID), bottom first."""

    items: list[tuple[Descriptor, Digest]]

    def plus(self, layer: LayerInfo, media_type: str) -> Layers:
        return Layers([*self.items, (Descriptor(media_type, layer.digest, layer.size), layer.diff_id)])

    @property
    def top_chain(self) -> Digest | None:
        ids = chain_ids([d for _, d in self.items])
        return ids[-1] if ids else None


class StepFs:
    """Mount a stage's layers with a fresh upper dir at `paths.rootfs`; after the step, turn the upper
    dir into a layer blob and hand the directory to the snapshotter as that layer's unpacked form."""

    def __init__(self, store: ImageStore, snapshots: Snapshotter, layers: Layers, paths: Paths):
        self.store = store
        self.snapshots = snapshots
        self.layers = layers
        self.paths = paths
        self.after_unmount: list[Callable[[], None]] = []  # fix-ups of the upper dir (RUN mount stubs)

    def __enter__(self) -> StepFs:
        lowers = self.snapshots.unpack_layers(self.layers.items)
        for d in (self.paths.rootfs, self.paths.upper, self.paths.work):
            d.mkdir(parents=True, exist_ok=True)
        desc = self.snapshots.mount(lowers, self.paths.upper, self.paths.work)
        linux.mount(
            desc.source, str(self.paths.rootfs), desc.type, 0, ",".join([*desc.options, *_OVERLAY_OPTIONS])
        )
        return self

    def __exit__(self, *exc: object) -> None:
        unmount(self.paths.rootfs)

    @property
    def rootfs(self) -> str:
        return str(self.paths.rootfs)

    def commit(self) -> LayerInfo | None:
        """The upper dir as a layer blob (None when the step changed nothing). Call under the store lease."""
        unmount(self.paths.rootfs)
        for fixup in self.after_unmount:
            fixup()
        upper = self.paths.upper
        if not any(upper.iterdir()):
            return None
        with self.store.content.writer() as w:
            # No `mtime`: BuildKit keeps real mtimes in RUN and COPY output unless SOURCE_DATE_EPOCH is set.
            return write_layer(w, upper, overlay_upper=True, compression="zstd")

    def adopt(self, layer: LayerInfo) -> None:
        """Keep the upper dir as the unpacked layer (the next step mounts it instead of unpacking the blob)."""
        chain = self.layers.plus(layer, LAYER_MEDIA_TYPE).top_chain
        assert chain is not None
        if not self.snapshots.adopt(chain, self.paths.upper):
            shutil.rmtree(self.paths.upper, ignore_errors=True)


def unmount(path: Path) -> None:
    if path.exists() and is_mounted(path):
        linux.umount2(str(path), linux.MNT_DETACH)


@contextlib.contextmanager
def read_only(snapshots: Snapshotter, layers: Layers, mountpoint: Path) -> Iterator[str]:
    """A stage's or image's file system, read-only, for COPY --from and RUN --mount=from=."""
    lowers = snapshots.unpack_layers(layers.items)
    empty = snapshots.root / "empty"
    empty.mkdir(parents=True, exist_ok=True)
    lowers = [empty, *lowers]  # overlayfs needs two lower dirs when there is no upper dir
    mountpoint.mkdir(parents=True, exist_ok=True)
    lowerdir = ":".join(str(p) for p in reversed(lowers))
    linux.mount("overlay", str(mountpoint), "overlay", linux.MS_RDONLY, f"lowerdir={lowerdir}")
    try:
        yield str(mountpoint)
    finally:
        unmount(mountpoint)


def dir_in_root(rootfs: str, path: str, *, create: bool) -> str | None:
    """Host path of directory `path` inside `rootfs` (created if asked), or None when it is not a dir."""
    try:
        fd = open_in_root(rootfs, path, create="dir" if create else None)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ENOTDIR:
            return None
        raise InvalidArgument(f"cannot create directory {path}: {e.strerror or e}") from None
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            return None
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def exists_in_root(rootfs: str, path: str) -> bool:
    try:
        os.close(open_in_root(rootfs, path))
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Placed:
    """An entry and its path in the rootfs (relative, no leading slash)."""

    name: str
    entry: Entry | None  # None: a directory this copy creates (no source entry)
    mode: int = 0o755
    mtime: int = 0


def copy_in(rootfs: str, placed: list[Placed], uid: int, gid: int, chmod: int | None) -> None:
    """Write the entries into the mounted rootfs through apply_layer (see the module docstring)."""
    for p in placed:
        if any(part.startswith(".wh.") for part in p.name.split("/")):
            raise InvalidArgument(f"cannot copy {p.name!r}: names starting with .wh. are layer whiteouts")
    apply_layer(_ChunkReader(_tar_chunks(placed, uid, gid, chmod)), Path(rootfs))


def _tar_chunks(placed: list[Placed], uid: int, gid: int, chmod: int | None) -> Iterator[bytes]:
    for p in placed:
        info = tarfile.TarInfo(p.name)
        info.uid, info.gid = uid, gid
        if p.entry is None:
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, p.mode, p.mtime
            yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            continue
        st = p.entry.st
        info.mode = chmod if chmod is not None else stat.S_IMODE(st.st_mode)
        info.mtime = st.st_mtime_ns // 1_000_000_000
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(st.st_mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(p.entry.path)
            info.mode = 0o777
        else:
            info.size = st.st_size
            yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            yield from _file_chunks(p.entry.path, st.st_size)
            continue
        yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    yield bytes(2 * tarfile.BLOCKSIZE)


def _file_chunks(path: str, size: int) -> Iterator[bytes]:
    """Exactly `size` bytes (what the header promised), then the padding to the next tar block."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        left = size
        while left:
            data = os.read(fd, min(left, _CHUNK))
            if not data:
                raise InvalidArgument(f"{path} shrank while it was being copied; retry the build")
            left -= len(data)
            yield data
    finally:
        os.close(fd)
    if size % tarfile.BLOCKSIZE:
        yield bytes(tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE)


class _ChunkReader:
    """read() over an iterator of byte chunks, so the tar is never held in memory."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buf = b""
        self._pos = 0  # an offset rather than re-slicing: tarfile reads 10 KiB at a time from 1 MiB chunks

    def read(self, n: int = -1) -> bytes:
        parts: list[bytes] = []
        want = n
        while want != 0:
            if self._pos >= len(self._buf):
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._buf, self._pos = chunk, 0
            end = len(self._buf) if want < 0 else min(len(self._buf), self._pos + want)
            parts.append(self._buf[self._pos : end])
            if want > 0:
                want -= end - self._pos
            self._pos = end
        return b"".join(parts)


def _decompressed(raw: BinaryIO, head: bytes) -> BinaryIO:
    if head.startswith(b"BZh"):
        return cast(BinaryIO, bz2.BZ2File(raw))
    if head.startswith(b"\xfd7zXZ\x00"):
        return cast(BinaryIO, lzma.LZMAFile(raw))
    return open_decompressed(raw, detect_compression(head))


def open_archive(path: str) -> BinaryIO | None:
    """ADD's auto-extraction: a tar, plain or gzip/bzip2/xz/zstd compressed, recognised by content (as
    Docker does, whatever the name); None for any other file. The caller closes the stream."""
    raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, or closed below
    head = raw.read(6)
    raw.seek(0)
    try:
        tarfile.TarInfo.frombuf(_decompressed(raw, head).read(tarfile.BLOCKSIZE), "utf-8", "surrogateescape")
    except Exception:  # any decoder's or tarfile's complaint: not an archive, so ADD copies the file as is
        raw.close()
        return None
    raw.seek(0)
    return _decompressed(raw, head)
