"""OCI image layers (image-spec layer.md): unpack a layer tarball into a directory, and write one from a tree.

Layers come from registries and archives, so they are hostile input: `apply_layer` never creates, changes
or deletes anything outside its target, whatever names, links and whiteouts the tarball holds. Every path
is resolved inside the target the way chroot(2) would resolve it (like Go's filepath-securejoin), the final
component is never followed, and files are written with O_NOFOLLOW|O_EXCL after the old entry is removed.
This assumes nothing else modifies the target while a layer is being applied (it is not yet in use).

`write_layer` is the inverse and is reproducible: same tree, same `mtime`, same bytes.
"""

from __future__ import annotations

import errno
import functools
import gzip
import hashlib
import os
import re
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, cast

import zstandard

from intermodal.errors import Conflict, CorruptContent, InvalidArgument, UnsafeContent
from intermodal.image.digest import Digest

__all__ = [
    "LayerInfo",
    "Reader",
    "Writer",
    "apply_layer",
    "detect_compression",
    "open_decompressed",
    "overlay_changes",
    "write_layer",
]

_CHUNK = 1 << 20
_MAX_LINKS = 40  # Linux's MAXSYMLINKS: more links than this in one lookup is a loop (ELOOP)
_WH = ".wh."
_WH_META = ".wh..wh."  # AUFS bookkeeping names (.wh..wh.plnk, ...); Docker skips them too
_OPAQUE = ".wh..wh..opq"
_OVERLAY_XATTRS = "trusted.overlay."
_OVERLAY_OPAQUE = "trusted.overlay.opaque"
_XATTR_PAX = "SCHILY.xattr."
_GZIP_LEVEL = 6  # gzip(1)'s and Go's default, which Docker uses for layers
_ZSTD_LEVEL = 3  # zstd(1)'s default
_PAX_MTIME = re.compile(r"^(-?)(\d+)(?:\.(\d{1,9})\d*)?$")
_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}


class Reader(Protocol):
    """Where layers are read from: anything with read() (a verifying blob reader, a pipe, a decompressor)."""

    def read(self, size: int = -1, /) -> bytes: ...


class Writer(Protocol):
    """Where layers are written to: anything with write() (an ingest writer, a file)."""

    def write(self, data: bytes, /) -> object: ...


def detect_compression(first_bytes: bytes) -> str:
    """'gzip', 'zstd' or '' by magic number; for archives whose layer media types do not match the bytes."""
    for magic, name in _MAGIC.items():
        if first_bytes.startswith(magic):
            return name
    return ""


def open_decompressed(fileobj: Reader, compression: str) -> BinaryIO:
    """Wrap `fileobj` in a streaming decompressor ('gzip', 'zstd' or '' for none); `fileobj` stays open.

    With '' the reader comes back as is: readers only ever need its read().
    """
    # The decompressors only ever call read() on their source, whatever their stubs ask for.
    raw = cast(BinaryIO, fileobj)
    if compression == "gzip":
        return cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb"))
    if compression == "zstd":
        # Several frames back to back are one valid layer (pzstd and chunked writers produce them).
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=False)
    if compression == "":
        return raw
    raise ValueError(f"unknown layer compression {compression!r}")


# --- apply -------------------------------------------------------------------------------------------------


def apply_layer(tar_stream: Reader, target: Path, *, overlay_whiteouts: bool = False) -> int:
    """Unpack the uncompressed layer `tar_stream` into `target`; return the bytes of file content written.

    With `overlay_whiteouts=False` the layer is flattened onto a rootfs: a whiteout deletes what lower layers
    left at its path. With `overlay_whiteouts=True` the layer gets its own directory, to be stacked as an
    overlayfs lower dir: whiteouts become 0/0 char devices and opaque markers the `trusted.overlay.opaque`
    xattr (Documentation/filesystems/overlayfs.rst), as containerd's overlay snapshotter does. In both modes
    a whiteout only hides lower layers, never entries of the same layer (layer.md#whiteouts).

    Device nodes are skipped: a node in an image would hand the container a host device (runtimes create
    /dev from the runtime spec instead), and Docker in rootless mode skips them the same way. Member names
    that climb out of the layer (`../x`) are rejected like Docker does; absolute names are taken relative
    to `target`. `trusted.overlay.*` xattrs in the tarball are dropped: the layer must not forge overlayfs
    metadata (redirects, opaque dirs) behind the whiteout rules.

    The stream is read to EOF, so a verifying reader underneath checks every byte.
    """
    target.mkdir(parents=True, exist_ok=True)
    applier = _Applier(os.path.realpath(target), overlay_whiteouts)
    try:
        # Stream mode ("r|") only ever calls read().
        with tarfile.open(fileobj=cast(BinaryIO, tar_stream), mode="r|", encoding="utf-8") as tf:
            while (member := tf.next()) is not None:
                # A stream never looks back, and keeping every TarInfo of a big layer costs memory.
                tf.members.clear()  # type: ignore[attr-defined]
                try:
                    applier.entry(tf, member)
                except (OverflowError, ValueError) as e:  # absurd ids/times, NUL bytes the checks missed
                    raise InvalidArgument(f"layer entry {member.name!r} is malformed ({e})") from e
        while tar_stream.read(_CHUNK):
            pass
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, zstandard.ZstdError) as e:
        raise CorruptContent(f"layer is not a valid (compressed) tar stream: {e}; re-pull the image") from e
    applier.finish()
    return applier.size


def _clean(name: str, entry: str) -> list[str]:
    """Split a member name into components, dropping `/`, `.` and lexical `..` (like Go's filepath.Clean)."""
    if "\x00" in name:
        raise UnsafeContent(f"layer entry {entry!r} has a NUL byte in a path; refusing to unpack this layer")
    parts: list[str] = []
    for part in name.split("/"):
        if part == "..":
            if not parts:
                raise UnsafeContent(f"layer entry {entry!r} points outside the layer; refusing to unpack it")
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return parts


def _mtime_ns(member: tarfile.TarInfo) -> int:
    """The entry's mtime in ns, exact even for PAX's fractional seconds (a float would round them)."""
    text = member.pax_headers.get("mtime")
    if text is None:
        return int(member.mtime) * 1_000_000_000
    m = _PAX_MTIME.match(text)
    if not m:
        raise InvalidArgument(f"layer entry {member.name!r} has an invalid PAX mtime {text!r}")
    ns = int(m[2]) * 1_000_000_000 + int((m[3] or "").ljust(9, "0"))
    return -ns if m[1] else ns


def _tar_xattrs(member: tarfile.TarInfo) -> Iterator[tuple[str, bytes]]:
    for key, value in member.pax_headers.items():
        if key.startswith(_XATTR_PAX):
            name = key[len(_XATTR_PAX) :]
            if name and "\x00" not in name and not name.startswith(_OVERLAY_XATTRS):
                # tarfile decodes binary values with surrogateescape; this gives back the exact bytes.
                yield name, value.encode("utf-8", "surrogateescape")


def _set_xattr(target: int | str, name: str, value: bytes) -> None:
    """Set an xattr, skipping only those this filesystem or inode type refuses (user.* on a symlink)."""
    try:
        os.setxattr(target, name, value, follow_symlinks=isinstance(target, int))
    except OSError as e:
        if e.errno not in (errno.ENOTSUP, errno.EPERM):
            raise


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Applier:
    def __init__(self, root: str, overlay: bool):
        self.root = root
        self.overlay = overlay
        self.chown = os.geteuid() == 0
        # Paths this layer wrote, plus their ancestors: what whiteouts and opaque markers must spare.
        self.keep: set[str] = set()
        self.whiteouts: set[str] = set()  # overlay mode: whiteout devices this layer made
        self.dir_times: list[tuple[str, int]] = []
        self.size = 0

    def _abs(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def _mark(self, rel: str) -> None:
        while rel and rel not in self.keep:
            self.keep.add(rel)
            rel = rel.rpartition("/")[0]

    def _dir(self, parts: list[str], entry: str, *, create: bool) -> tuple[str, str] | None:
        """Resolve directory `parts` inside the root as chroot(2) would and return (absolute, relative) path.

        Symlinks met on the way are followed with the root as `/` and `..` stops at the root, so the result
        is always inside the root and free of symlinks. Missing directories are created if `create`, else
        the answer is None (nothing there to whiteout), as it is for a component that is not a directory.
        """
        resolved: list[str] = []
        pending = parts[::-1]
        links = 0
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            rel = "/".join([*resolved, part])
            path = self._abs(rel)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(path)
                os.chmod(path, 0o755)  # Docker's mode for parents a layer implies but does not list
            else:
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > _MAX_LINKS:
                        raise UnsafeContent(f"layer entry {entry!r} goes through a symlink loop; refusing it")
                    link = os.readlink(path)
                    if link.startswith("/"):
                        resolved.clear()
                    pending.extend(reversed(link.split("/")))
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    if not create:
                        return None
                    if not (self.overlay and rel in self.whiteouts):
                        raise InvalidArgument(f"layer entry {entry!r} needs {rel!r} to be a directory")
                    self._replace_whiteout_with_dir(path, rel)
            resolved.append(part)
        rel = "/".join(resolved)
        return self._abs(rel), rel

    def _replace_whiteout_with_dir(self, path: str, rel: str) -> None:
        """Overlay mode: a directory where this layer put a whiteout is a new directory hiding the lower one."""
        os.unlink(path)
        self.whiteouts.discard(rel)
        os.mkdir(path)
        os.chmod(path, 0o755)
        os.setxattr(path, _OVERLAY_OPAQUE, b"y", follow_symlinks=False)

    def _remove(self, path: str, *, keep_dir: bool = False) -> bool:
        """Remove whatever is at `path` (a symlink itself, never its target); True if a kept dir is there."""
        st = _lstat(path)
        if st is None:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(path)  # the fd-based variant: does not follow symlinks inside the tree
        else:
            os.unlink(path)
        return False

    def _set_meta(self, fd: int, member: tarfile.TarInfo) -> None:
        # Order matters: chown clears setuid/setgid and security.capability.
        if self.chown:
            os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, member.mode & 0o7777)
        for name, value in _tar_xattrs(member):
            _set_xattr(fd, name, value)

    def entry(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = member.name
        parts = _clean(name, name)
        if not parts:
            if not member.isdir():
                raise UnsafeContent(f"layer entry {name!r} would replace the root directory; refusing it")
            fd = os.open(self.root, _NOFOLLOW_DIR)
            try:
                self._set_meta(fd, member)
            finally:
                os.close(fd)
            self.dir_times.append(("", _mtime_ns(member)))
            return
        *dir_parts, base = parts
        if base.startswith(_WH):
            self._whiteout(dir_parts, base, name)
            return
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk() or member.isfifo()):
            return  # device nodes (see apply_layer) and types tarfile does not know
        if (member.issym() or member.islnk()) and "\x00" in member.linkname:
            raise UnsafeContent(f"layer entry {name!r} has a NUL byte in its link target; refusing it")
        link_source = self._hardlink_source(member) if member.islnk() else None
        resolved = self._dir(dir_parts, name, create=True)
        assert resolved is not None
        path, rel = f"{resolved[0]}/{base}", f"{resolved[1]}/{base}".lstrip("/")
        if link_source == path:
            return
        was_whiteout = rel in self.whiteouts
        self.whiteouts.discard(rel)
        mtime = _mtime_ns(member)
        if member.isdir():
            if not self._remove(path, keep_dir=True):
                os.mkdir(path, 0o700)
            fd = os.open(path, _NOFOLLOW_DIR)
            try:
                self._set_meta(fd, member)
                if was_whiteout:
                    os.setxattr(fd, _OVERLAY_OPAQUE, b"y")
            finally:
                os.close(fd)
            self.dir_times.append((rel, mtime))  # set last: adding children changes a directory's mtime
        else:
            self._remove(path)
            if link_source is not None:
                os.link(link_source, path, follow_symlinks=False)
            elif member.issym():
                os.symlink(member.linkname, path)
                if self.chown:
                    os.lchown(path, member.uid, member.gid)
                for xname, value in _tar_xattrs(member):
                    _set_xattr(path, xname, value)
                os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
            else:
                self._create(tf, member, path, mtime)
        self._mark(rel)

    def _create(self, tf: tarfile.TarFile, member: tarfile.TarInfo, path: str, mtime: int) -> None:
        """Create a regular file or FIFO at `path`, which was just cleared, without following any link."""
        if member.isfifo():
            os.mkfifo(path, 0o600)
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if member.isreg():
                src = tf.extractfile(member)
                assert src is not None
                while chunk := src.read(_CHUNK):
                    _write_all(fd, chunk)
                    self.size += len(chunk)
            self._set_meta(fd, member)
            os.utime(fd, ns=(mtime, mtime))
        finally:
            os.close(fd)

    def _hardlink_source(self, member: tarfile.TarInfo) -> str:
        """Resolve a hardlink's target in the root: it must already exist (in this layer or a lower one)."""
        parts = _clean(member.linkname, member.name)
        if not parts:
            raise UnsafeContent(
                f"layer entry {member.name!r} is a hardlink to the root directory; refusing it"
            )
        resolved = self._dir(parts[:-1], member.name, create=False)
        source = f"{resolved[0]}/{parts[-1]}" if resolved else ""
        st = _lstat(source) if source else None
        if st is None:
            raise InvalidArgument(
                f"layer entry {member.name!r} is a hardlink to {member.linkname!r}, which is not in the image"
            )
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeContent(f"layer entry {member.name!r} is a hardlink to a directory; refusing it")
        return source

    def _whiteout(self, dir_parts: list[str], base: str, entry: str) -> None:
        if base == _OPAQUE:
            resolved = self._dir(dir_parts, entry, create=self.overlay)
            if resolved is None:
                return
            if self.overlay:
                os.setxattr(resolved[0], _OVERLAY_OPAQUE, b"y", follow_symlinks=False)
                self._mark(resolved[1])
            else:
                for child in os.listdir(resolved[0]):
                    self._purge(resolved[0], resolved[1], child)
            return
        if base.startswith(_WH_META):
            return
        victim = base[len(_WH) :]
        if victim in ("", ".", ".."):
            raise UnsafeContent(f"layer entry {entry!r} is a whiteout of {victim!r}; refusing it")
        resolved = self._dir(dir_parts, entry, create=self.overlay)
        if resolved is None:
            return
        if not self.overlay:
            self._purge(resolved[0], resolved[1], victim)
            return
        self._mark(resolved[1])
        path, rel = f"{resolved[0]}/{victim}", f"{resolved[1]}/{victim}".lstrip("/")
        st = _lstat(path)
        if rel in self.keep and st is not None:
            # Written by this layer, so it stays; a directory still has to hide the lower one's contents.
            if stat.S_ISDIR(st.st_mode):
                os.setxattr(path, _OVERLAY_OPAQUE, b"y", follow_symlinks=False)
            return
        self._remove(path)
        os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        self.whiteouts.add(rel)

    def _purge(self, dir_path: str, dir_rel: str, name: str) -> None:
        """Flatten mode: delete what lower layers left at dir/name, sparing what this layer wrote."""
        stack = [(f"{dir_path}/{name}", f"{dir_rel}/{name}".lstrip("/"))]
        while stack:
            path, rel = stack.pop()
            if rel not in self.keep:
                self._remove(path)
            elif (st := _lstat(path)) is not None and stat.S_ISDIR(st.st_mode):
                stack.extend((f"{path}/{child}", f"{rel}/{child}") for child in os.listdir(path))

    def finish(self) -> None:
        """Set directory mtimes, re-resolving each path: later entries may have replaced a directory."""
        for rel, mtime in self.dir_times:
            if rel:
                *dir_parts, base = rel.split("/")
                resolved = self._dir(dir_parts, rel, create=False)
                if resolved is None:
                    continue
                path = f"{resolved[0]}/{base}"
            else:
                path = self.root
            st = _lstat(path)
            if st is not None and stat.S_ISDIR(st.st_mode):
                os.utime(path, ns=(mtime, mtime), follow_symlinks=False)


# --- write -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerInfo:
    """What a manifest and a config need about a written layer."""

    digest: Digest  # of the compressed blob (the manifest's layer descriptor)
    diff_id: Digest  # of the uncompressed tar (the config's rootfs.diff_ids)
    size: int  # compressed bytes
    unpacked_size: int  # regular file content bytes


class _Digesting:
    """Hashes and counts bytes on their way to `out`, so digests need no second pass over the data."""

    def __init__(self, out: Writer):
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)


# One tar entry to write: a path under the source tree with its lstat, or (stat None) an empty whiteout file.
_Entry = tuple[str, os.stat_result | None]


def write_layer(
    out: Writer,
    source: Path,
    *,
    base: Path | None = None,
    overlay_upper: bool = False,
    compression: str = "gzip",
    mtime: int | None = None,
) -> LayerInfo:
    """Write `source` as a layer blob to `out` (not closed) and return its digests and sizes.

    Plain: every entry under `source` (a base layer). With `base`: only what differs from `base`, deletions
    as whiteouts (layer.md#changeset-over-existing-files). With `overlay_upper`: `source` is an overlayfs
    upper dir, whose 0/0 char devices and opaque xattrs become whiteouts; it must have been mounted without
    redirect_dir and metacopy, whose xattrs a layer cannot express.

    Reproducible: entries sorted by path bytes, numeric ids only, PAX headers, xattrs sorted, integer-second
    mtimes (all equal to `mtime` if given), gzip header without name or time, single-threaded zstd. Files
    hardlinked together in the tree become hardlink entries; sockets are left out.
    """
    if base is not None and overlay_upper:
        raise ValueError("write_layer: `base` and `overlay_upper` are exclusive")
    if compression not in ("gzip", "zstd", ""):
        raise ValueError(f"unknown layer compression {compression!r}")
    src = os.fspath(source)
    entries: list[_Entry]
    if base is not None:
        entries = _diff_entries(src, os.fspath(base))
    elif overlay_upper:
        entries = _upper_entries(src)
    else:
        entries = list(_walk(src, ""))
    blob = _Digesting(out)
    raw = cast(BinaryIO, blob)  # both compressors only call write() (and flush() if present) on it
    compressor: gzip.GzipFile | zstandard.ZstdCompressionWriter | None = None
    if compression == "gzip":
        compressor = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=_GZIP_LEVEL, mtime=0)
    elif compression == "zstd":
        compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).stream_writer(raw, closefd=False)
    tar = _Digesting(compressor) if compressor is not None else blob
    unpacked = _write_tar(tar, src, entries, mtime)
    if compressor is not None:
        compressor.close()
    return LayerInfo(Digest(blob.hash.hexdigest()), Digest(tar.hash.hexdigest()), blob.size, unpacked)


def _walk(top: str, start: str) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below top/start (relative paths, lstat results), in no particular order."""
    stack = [start]
    while stack:
        rel = stack.pop()
        with os.scandir(f"{top}/{rel}" if rel else top) as it:
            for e in it:
                child = f"{rel}/{e.name}" if rel else e.name
                st = e.stat(follow_symlinks=False)
                yield child, st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(child)


def _scan(top: str, rel: str) -> dict[str, os.stat_result]:
    with os.scandir(f"{top}/{rel}" if rel else top) as it:
        return {e.name: e.stat(follow_symlinks=False) for e in it}


def _parent_of(rel: str, name: str) -> str:
    parent = rel.rpartition("/")[0]
    return f"{parent}/{name}" if parent else name


def _upper_entries(upper: str) -> list[_Entry]:
    entries: list[_Entry] = []
    for rel, st in _walk(upper, ""):
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            entries.append((_parent_of(rel, _WH + rel.rpartition("/")[2]), None))
            continue
        entries.append((rel, st))
        if stat.S_ISDIR(st.st_mode) and _getxattr(f"{upper}/{rel}", _OVERLAY_OPAQUE) == b"y":
            entries.append((f"{rel}/{_OPAQUE}", None))
    return entries


def overlay_changes(upper: Path) -> list[tuple[str, str]]:
    """What an overlayfs upper dir records, as (kind, relative path) in no particular order: "deleted" for
    a whiteout, "opaque" for a directory that hides the lower ones' content, "present" for any other entry.
    The same reading of the upper dir as `write_layer(overlay_upper=True)`'s, for `diff`."""
    out = []
    for rel, st in _upper_entries(os.fspath(upper)):
        parent, _, base = rel.rpartition("/")
        if st is not None:
            out.append(("present", rel))
        elif base == _OPAQUE:
            out.append(("opaque", parent))
        else:
            out.append(("deleted", _parent_of(rel, base[len(_WH) :])))
    return out


def _getxattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP):
            return None
        raise


def _diff_entries(source: str, base: str) -> list[_Entry]:
    """What changed from `base` to `source`, plus the parent directories of every change.

    Parents are included (as containerd's differ does) so that applying the diff also restores their
    mtimes and modes; a directory whose only change is its mtime is otherwise not a change.
    """
    found: dict[str, os.stat_result | None] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        new, old = _scan(source, rel), _scan(base, rel)
        for name in old.keys() - new.keys():
            found[f"{rel}/{_WH}{name}" if rel else _WH + name] = None
        for name, st in new.items():
            child = f"{rel}/{name}" if rel else name
            was = old.get(name)
            if was is None or (stat.S_ISDIR(st.st_mode) and not stat.S_ISDIR(was.st_mode)):
                found[child] = st
                if stat.S_ISDIR(st.st_mode):
                    found.update(_walk(source, child))
            elif _changed(f"{source}/{child}", st, f"{base}/{child}", was):
                found[child] = st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(child)
            elif stat.S_ISDIR(st.st_mode):
                stack.append(child)
    for rel in list(found):
        parent = rel.rpartition("/")[0]
        while parent and parent not in found:
            found[parent] = os.lstat(f"{source}/{parent}")
            parent = parent.rpartition("/")[0]
    return list(found.items())


def _changed(path: str, st: os.stat_result, base_path: str, was: os.stat_result) -> bool:
    """Type, mode, owner, xattrs, link target, device, size; content only when sizes match but mtimes don't."""
    if (st.st_mode, st.st_uid, st.st_gid) != (was.st_mode, was.st_uid, was.st_gid):
        return True
    if _xattrs(path) != _xattrs(base_path):
        return True
    if stat.S_ISLNK(st.st_mode):
        return os.readlink(path) != os.readlink(base_path)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return st.st_rdev != was.st_rdev
    if not stat.S_ISREG(st.st_mode):
        return False
    if st.st_size != was.st_size:
        return True
    return st.st_mtime_ns != was.st_mtime_ns and not _same_content(path, base_path)


def _same_content(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            chunk = fa.read(_CHUNK)
            if chunk != fb.read(_CHUNK):
                return False
            if not chunk:
                return True


def _xattrs(path: str) -> dict[str, str]:
    """The xattrs a layer carries, as PAX records. SELinux labels are host policy and overlay's are internal."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno == errno.ENOTSUP:
            return {}
        raise
    return {
        _XATTR_PAX + name: os.getxattr(path, name, follow_symlinks=False).decode("utf-8", "surrogateescape")
        for name in sorted(names)
        if not name.startswith(_OVERLAY_XATTRS) and name != "security.selinux"
    }


def _write_tar(sink: _Digesting, source: str, entries: list[_Entry], mtime: int | None) -> int:
    """Write the entries as a tar stream (PAX headers, then Go's two-block trailer); return file bytes."""
    entries.sort(key=lambda e: os.fsencode(e[0]))
    first_link: dict[tuple[int, int], str] = {}
    unpacked = 0
    for rel, st in entries:
        info = tarfile.TarInfo(rel)
        if st is None:  # a whiteout: an empty file, mode as Docker writes them
            info.mode = 0o600
            info.mtime = mtime or 0
            sink.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            continue
        path = f"{source}/{rel}"
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = st.st_mtime_ns // 1_000_000_000 if mtime is None else mtime
        info.pax_headers = _xattrs(path)
        if stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in first_link:
                info.type, info.linkname = tarfile.LNKTYPE, first_link[key]
            else:
                if st.st_nlink > 1:
                    first_link[key] = rel
                info.size = st.st_size
                sink.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
                _copy_file(sink, path, st.st_size)
                unpacked += st.st_size
                continue
        elif not set_special_type(info, st, functools.partial(os.readlink, path)):
            continue
        sink.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
    sink.write(bytes(2 * tarfile.BLOCKSIZE))
    return unpacked


def set_special_type(info: tarfile.TarInfo, st: os.stat_result, link_target: Callable[[], str]) -> bool:
    """Fill in a non-regular member's type (dir, symlink, fifo, device) from `st`; False for a socket,
    which is a live endpoint of some process, not content."""
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, link_target()
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    else:
        return False
    return True


def _copy_file(sink: _Digesting, path: str, size: int) -> None:
    """Copy exactly `size` bytes (what the header promised) and pad to the next tar block."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        remaining = size
        while remaining:
            data = os.read(fd, min(remaining, _CHUNK))
            if not data:
                raise Conflict(f"{path} shrank while it was being archived; retry when nothing writes to it")
            sink.write(data)
            remaining -= len(data)
    finally:
        os.close(fd)
    if size % tarfile.BLOCKSIZE:
        sink.write(bytes(tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))
