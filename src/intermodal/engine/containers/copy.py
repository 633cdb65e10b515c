"""`cp` between a container and the host (or a tar stream on stdin/stdout), with Docker's path rules
(docs "docker container cp": a trailing `/.` copies a directory's content, a missing destination is
created, a directory never replaces a file).

The container's file system is hostile, and it may change while we copy (CVE-2018-15664's symlink race):
* Container paths are resolved inside the rootfs (`open_in_root`: a symlink never leads out of it), and
  what is read from it is read through file descriptors (`os.fwalk`, O_NOFOLLOW), never through a path a
  container process could swap for a symlink to the host.
* Writing into the container goes through `apply_layer` in a child that has chroot(2)ed into the rootfs, so
  no path it touches can resolve outside, however the container races it. The child never imports again:
  the rootfs could plant Python modules where our import path points (and it never looks up user names,
  which would load the container's NSS libraries: CVE-2019-14271).
* Copying out, symlinks are archived as symlinks and `apply_layer` writes them as links on the host, so a
  container's `/x -> /etc/passwd` can neither read nor overwrite the host's file.
A path under a volume, a bind mount or the engine's /etc/hosts, /etc/hostname and /etc/resolv.conf is
copied from or to that mount's source, as the container sees it. A file copied onto a single-file bind
mount (/etc/hosts, `-v FILE:PATH`) is written into the mount's source in place: a new file in its stead would
not be the one the running container has mounted (Docker fails there with EBUSY). A stopped container's rootfs is
mounted for the copy (under its lock) and unmounted afterwards.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import os
import posixpath
import stat
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from intermodal import errors
from intermodal.engine.containers import bundle as bundles
from intermodal.engine.containers import userns
from intermodal.engine.containers.record import ContainerRecord
from intermodal.engine.containers.service import ACTIVE, RUNNING, ContainerService
from intermodal.errors import IntermodalError, InvalidArgument, NotFound
from intermodal.image.layer import apply_layer, set_special_type
from intermodal.runtime import sys as linux
from intermodal.runtime import userns as user_namespaces
from intermodal.runtime.rootfs import open_in_root

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Location:
    """`CONTAINER:PATH`, or a host path (container ""), or `-` for a tar stream."""

    container: str
    path: str


def parse_location(arg: str) -> Location:
    """moby's splitCpArg: absolute and `.`-relative paths are local even with a colon in them."""
    if arg == "-" or arg.startswith(("/", ".")):
        return Location("", arg)
    container, sep, path = arg.partition(":")
    if not sep or not container:
        return Location("", arg)
    return Location(container, path or "/")


def copy(
    svc: ContainerService, source: str, dest: str, *, follow: bool = False, archive: bool = False
) -> None:
    src, dst = parse_location(source), parse_location(dest)
    if src.container and dst.container:
        raise InvalidArgument("copying between containers is not supported: copy to the host first")
    if not src.container and not dst.container:
        raise InvalidArgument("must specify at least one container source: use CONTAINER:PATH on one side")
    if src.container:
        copy_out(svc, src, dst.path, follow=follow, archive=archive)
    else:
        copy_in(svc, src.path, dst, follow=follow, archive=archive)


# -- out of the container ---------------------------------------------------------------------------------


def copy_out(svc: ContainerService, src: Location, dest: str, *, follow: bool, archive: bool) -> None:
    record = svc.get(src.container)
    with container_root(svc, record, src.path) as (rootfs, inner):
        fd = _open_source(rootfs, Location(src.container, inner), follow)
        try:
            is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
            contents = is_dir and _contents_only(src.path)
            name = os.path.basename(src.path.rstrip("/")) or "."
            ids = userns.container_ids(record)
            if dest == "-":  # Docker keeps the container's owners in the stream
                write_tar(sys.stdout.buffer, fd, "" if contents else name, ids=ids)
                sys.stdout.buffer.flush()
                return
            target, arcname = _host_target(dest, is_dir=is_dir, contents=contents, name=name)
            owner = None if archive else (os.getuid(), os.getgid())
            _pump(
                lambda out: write_tar(out, fd, arcname, owner=owner, ids=ids),
                lambda stream: apply_layer(stream, target),
            )
        finally:
            os.close(fd)


def export(svc: ContainerService, record: ContainerRecord, out: BinaryIO) -> None:
    """`docker export`: the container's merged file system (image layers and its changes) as one tar,
    owners kept; the host's view of the overlay, so volumes and bind mounts are not in it."""
    with mounted_rootfs(svc, record) as rootfs:
        fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            write_tar(out, fd, "", ids=userns.container_ids(record))
        finally:
            os.close(fd)


def _open_source(rootfs: str, src: Location, follow: bool) -> int:
    """O_PATH fd of the source inside the rootfs; its last component is followed only with -L (Docker's
    default copies a symlink as a symlink), and then only inside the rootfs."""
    path = src.path
    try:
        if follow or path.endswith("/") or os.path.basename(path) in ("", ".", ".."):
            return open_in_root(rootfs, path)
        parent = open_in_root(rootfs, os.path.dirname(path))
        try:
            return os.open(os.path.basename(path), os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        finally:
            os.close(parent)
    except OSError as e:
        raise NotFound(f"could not find the file {path} in container {src.container}: {e.strerror}") from None


def _contents_only(path: str) -> bool:
    return path.endswith("/.") or path.strip("/") == ""


def _host_target(dest: str, *, is_dir: bool, contents: bool, name: str) -> tuple[Path, str]:
    """Docker's rules on the host side: the directory to unpack into and the name the source takes there."""
    if os.path.isdir(dest):
        return Path(dest), "" if contents else name
    if os.path.lexists(dest):
        if is_dir:
            raise InvalidArgument(f"cannot copy a directory to a file: {dest} exists and is not a directory")
        return Path(os.path.dirname(dest) or "."), os.path.basename(dest)
    if dest.endswith("/") and not is_dir:
        raise InvalidArgument(f"the destination directory must exist: {dest}")
    trimmed = dest.rstrip("/")
    parent = os.path.dirname(trimmed) or "."
    if not os.path.isdir(parent):
        raise InvalidArgument(f"no such directory: {parent} (the destination's parent must exist)")
    return Path(parent), os.path.basename(trimmed)


# -- into the container -----------------------------------------------------------------------------------


def copy_in(svc: ContainerService, source: str, dst: Location, *, follow: bool, archive: bool) -> None:
    record = svc.get(dst.container)
    parent_fd, name, is_dir = -1, "", True  # a tar on stdin is unpacked into a directory
    if source != "-":
        path = os.path.abspath(
            source
        )  # normalised: `dir/.` is `dir` (its content-only meaning is kept below)
        name = os.path.basename(path) or "."
        try:
            parent_fd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
            is_dir = stat.S_ISDIR(os.stat(name, dir_fd=parent_fd, follow_symlinks=follow).st_mode)
        except FileNotFoundError:
            raise NotFound(f"could not find the file {source} on the host") from None
    mounted_file = None if source == "-" or is_dir else _file_mount(svc, record, dst.path)
    if mounted_file is not None:
        try:
            _overwrite(parent_fd, name, follow, mounted_file)
        finally:
            os.close(parent_fd)
        _changed(svc, record)
        return
    try:
        with container_root(svc, record, dst.path) as (rootfs, inner):
            target, arcname = _container_target(
                rootfs, Location(dst.container, inner), source, is_dir=is_dir, name=name
            )
            maps = record.id_mappings or None
            if source == "-":
                with _unpacker_in_root(rootfs, target, from_stdin=True, id_mappings=maps):
                    pass
                _changed(svc, record)
                return
            top = os.open(name, os.O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW), dir_fd=parent_fd)
            try:
                owner = None if archive else (0, 0)  # Docker: files copied in belong to root
                with _unpacker_in_root(rootfs, target, id_mappings=maps) as out:
                    assert out is not None
                    write_tar(out, top, arcname, owner=owner)
            finally:
                os.close(top)
    finally:
        if parent_fd >= 0:
            os.close(parent_fd)
    _changed(svc, record)


def _changed(svc: ContainerService, record: ContainerRecord) -> None:
    """A running container's runtime may cache its files away from the host (a VM's guest)."""
    if record.status == RUNNING:
        svc.runtime(record).files_changed(record.id)


def _container_target(rootfs: str, dst: Location, source: str, *, is_dir: bool, name: str) -> tuple[str, str]:
    """Docker's rules on the container side, resolved inside `rootfs`: (directory as a path inside it, the
    name the source takes in it)."""
    where = f"{dst.container}:{dst.path}"
    try:
        fd = open_in_root(rootfs, dst.path)
    except FileNotFoundError:
        fd = -1
    except OSError as e:
        raise InvalidArgument(f"cannot copy to {where}: {e.strerror}") from None
    if fd >= 0:
        try:
            inner = _inside(rootfs, fd)
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                return inner, "" if _contents_only(source) and is_dir else name
        finally:
            os.close(fd)
        if source == "-" or is_dir:
            raise InvalidArgument(
                f"cannot copy {'a tar stream' if source == '-' else 'a directory'} to a file: {where}"
            )
        return os.path.dirname(inner), os.path.basename(inner)
    if source == "-":
        raise NotFound(f"no such directory: {where} (a tar stream is unpacked into an existing directory)")
    if dst.path.endswith("/") and not is_dir:
        raise InvalidArgument(f"the destination directory must exist: {where}")
    trimmed = dst.path.rstrip("/")
    try:
        parent = open_in_root(rootfs, os.path.dirname(trimmed) or "/")
    except OSError:
        raise InvalidArgument(f"no such directory: {where} (the destination's parent must exist)") from None
    try:
        if not stat.S_ISDIR(os.fstat(parent).st_mode):
            raise InvalidArgument(f"cannot copy to {where}: its parent is not a directory")
        return _inside(rootfs, parent), os.path.basename(trimmed)
    finally:
        os.close(parent)


def _inside(rootfs: str, fd: int) -> str:
    """The path of `fd` (resolved inside the rootfs) as the container sees it."""
    full, root = os.readlink(f"/proc/self/fd/{fd}"), os.path.realpath(rootfs)
    if full != root and not full.startswith(root + "/"):
        raise IntermodalError(f"resolved {full} outside the container's rootfs {root}")
    return full[len(root) :] or "/"


@contextlib.contextmanager
def _unpacker_in_root(
    rootfs: str, target: str, *, from_stdin: bool = False, id_mappings: dict[str, Any] | None = None
) -> Iterator[BinaryIO | None]:
    """A child chroot(2)ed into the rootfs runs `apply_layer(tar, target)`; the block writes the tar into
    the pipe it yields (or the child reads our stdin). Re-raises the child's error after the block.
    With `id_mappings` (--userns=auto) the child is first the root of a user namespace with the container's
    maps, so the owners in the tar are the container's IDs, as inside."""
    root_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    userns_fd = (
        user_namespaces.namespace_fd(id_mappings["uidMappings"], id_mappings["gidMappings"])
        if id_mappings
        else -1
    )
    r, w = (os.dup(sys.stdin.fileno()), -1) if from_stdin else os.pipe()
    err_r, err_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(err_r)
            if w >= 0:
                os.close(w)  # or the child would never see the end of its own input
            if userns_fd >= 0:  # before chroot: a chrooted process may not join a user namespace
                linux.setns(userns_fd, linux.CLONE_NEWUSER)
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
            os.fchdir(root_fd)  # the mount itself, even if the container stopped and it was detached
            os.chroot(".")
            os.chdir("/")
            _forbid_imports()
            with os.fdopen(r, "rb") as stream:
                apply_layer(stream, Path(target))
            os._exit(0)
        except BaseException as e:  # noqa: BLE001 - every failure goes back to the parent
            with contextlib.suppress(BaseException):
                os.write(err_w, f"{type(e).__name__}\n{e}".encode(errors="replace"))
            os._exit(1)
    for fd in (r, err_w, root_fd, *([userns_fd] if userns_fd >= 0 else [])):
        os.close(fd)
    try:
        if w < 0:
            yield None
        else:
            with contextlib.suppress(BrokenPipeError), os.fdopen(w, "wb") as out:  # a child's error says why
                yield out
    finally:
        _, status = os.waitpid(pid, 0)
        with os.fdopen(err_r, "rb") as f:
            report = f.read().decode(errors="replace")
    if status != 0:
        kind, _, message = report.partition("\n")
        cls = getattr(errors, kind, None)
        if isinstance(cls, type) and issubclass(cls, IntermodalError):
            raise cls(message)
        raise IntermodalError(f"copying into the container failed: {message or 'the copy process died'}")


def _forbid_imports() -> None:
    """Only built-in and frozen modules from now on: everything else would be read from the container."""
    sys.meta_path[:] = [
        f
        for f in sys.meta_path
        if f in (importlib.machinery.BuiltinImporter, importlib.machinery.FrozenImporter)
    ]
    sys.path_hooks.clear()
    sys.path_importer_cache.clear()
    sys.path[:] = []


# -- shared -----------------------------------------------------------------------------------------------


def _mount_table(svc: ContainerService, record: ContainerRecord) -> list[tuple[str, str, str]]:
    """(destination, source, type) of the container's mounts, the engine's /etc files too, deepest first."""
    paths = svc.paths(record.id)
    mounts = [(m["Destination"], m["Source"], m["Type"]) for m in record.mounts]
    mounts += [("/etc/hosts", str(paths.hosts), "bind"), ("/etc/hostname", str(paths.hostname), "bind"),
               ("/etc/resolv.conf", str(paths.resolv), "bind")]  # fmt: skip
    return sorted(mounts, key=lambda m: len(m[0]), reverse=True)


def _file_mount(svc: ContainerService, record: ContainerRecord, path: str) -> str | None:
    """The source of the single-file bind mount at `path` exactly, if there is one."""
    if path.endswith(("/", "/.")):
        return None
    normal = posixpath.normpath("/" + path.lstrip("/"))  # (POSIX keeps a leading "//")
    for destination, source, kind in _mount_table(svc, record):
        if normal == destination:
            return source if kind != "tmpfs" and os.path.isfile(source) else None
    return None


def _overwrite(parent_fd: int, name: str, follow: bool, target: str) -> None:
    """The host file `name` (in `parent_fd`) written over `target`'s content, which keeps its inode."""
    flags = os.O_RDONLY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        src = os.open(name, flags, dir_fd=parent_fd)
    except OSError as e:
        raise InvalidArgument(
            f"cannot copy {name}: {e.strerror} (a file mount takes a regular file)"
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            raise InvalidArgument(f"cannot copy {name} onto a file mount: it is not a regular file")
        dst = os.open(target, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            while os.sendfile(dst, src, None, 1 << 24):
                pass
        finally:
            os.close(dst)
    finally:
        os.close(src)


@contextlib.contextmanager
def container_root(svc: ContainerService, record: ContainerRecord, path: str) -> Iterator[tuple[str, str]]:
    """(root, path inside it) for a container path, as the container sees it: under a volume or bind mount
    (or one of the engine's /etc files) that mount's source, else the container's file system. A trailing
    `/` or `/.` is kept; symlinks are resolved later, inside the root this returns."""
    normal = posixpath.normpath("/" + path.lstrip("/"))  # (POSIX keeps a leading "//")
    suffix = "/." if path.endswith("/.") else "/" if path.endswith("/") else ""
    for destination, source, kind in _mount_table(svc, record):
        if normal == destination or normal.startswith(destination.rstrip("/") + "/"):
            if kind == "tmpfs":
                raise InvalidArgument(
                    f"cannot copy to or from {path}: it is on a tmpfs mount of the container"
                )
            if os.path.isdir(source):
                yield source, (normal[len(destination) :] or "/") + suffix
            else:  # a file mounted on its own: its directory is the root
                yield os.path.dirname(source), "/" + os.path.basename(source)
            return
    with mounted_rootfs(svc, record) as rootfs:
        yield rootfs, path


@contextlib.contextmanager
def mounted_rootfs(svc: ContainerService, record: ContainerRecord) -> Iterator[str]:
    """The container's merged file system: the live mount, or (stopped) one mounted for the block, under
    the container's lock so that it cannot start meanwhile."""
    paths = svc.paths(record.id)
    if record.status in ACTIVE and bundles.is_mounted(paths.rootfs):
        yield str(paths.rootfs)
        return
    with svc.store.locked(record.id):
        current = svc.refresh(svc.store.load(record.id), locked=True)
        if current.status in ACTIVE:
            yield str(paths.rootfs)
            return
        bundles.mount_rootfs(svc.images.store, svc.snapshots, current, paths)
        try:
            yield str(paths.rootfs)
        finally:
            bundles.unmount_rootfs(paths)


def _pump(produce: Callable[[BinaryIO], None], consume: Callable[[BinaryIO], object]) -> None:
    """Run a tar producer (in a thread) into a consumer through a pipe; the first error wins."""
    r, w = os.pipe()
    failure: list[BaseException] = []

    def producer() -> None:
        try:
            with os.fdopen(w, "wb") as out:
                produce(out)
        except BrokenPipeError:
            pass  # the consumer stopped early: its own error says why
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            failure.append(e)

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    try:
        with os.fdopen(r, "rb") as stream:
            consume(stream)
    finally:
        thread.join()
    if failure:
        raise failure[0]


def write_tar(out: BinaryIO, top: int, arcname: str, *, owner: tuple[int, int] | None = None,
              ids: Callable[[int], int] | None = None) -> None:  # fmt: skip
    """Archive the entry `top` (an O_PATH fd) as `arcname`, or only a directory's content if `arcname` is
    "". Everything is read relative to file descriptors and never followed; `owner` replaces uid/gid, `ids`
    maps host IDs to a container's. Names are numeric only: no user database is consulted."""
    hardlinks: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:

        def add(name: str, st: os.stat_result, dir_fd: int | None, entry: str) -> None:
            if os.path.basename(name).startswith(".wh."):
                # apply_layer would read it as a whiteout and delete a sibling at the destination.
                raise InvalidArgument(f"cannot copy {name!r}: names starting with .wh. are layer whiteouts")
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = stat.S_IMODE(st.st_mode), st.st_mtime
            info.uid, info.gid = owner or (
                (ids(st.st_uid), ids(st.st_gid)) if ids else (st.st_uid, st.st_gid)
            )
            if stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in hardlinks:
                    info.type, info.linkname = tarfile.LNKTYPE, hardlinks[key]
                    tf.addfile(info)
                    return
                if st.st_nlink > 1:
                    hardlinks[key] = name
                info.size = st.st_size
                # Children: O_NOFOLLOW in their directory; the top: its O_PATH fd reopened through /proc.
                nofollow = os.O_NOFOLLOW if dir_fd is not None else 0
                fd = os.open(entry, os.O_RDONLY | nofollow | os.O_CLOEXEC, dir_fd=dir_fd)
                with os.fdopen(fd, "rb") as f:
                    tf.addfile(info, f)
                return
            if not set_special_type(info, st, lambda: os.readlink(entry, dir_fd=dir_fd)):
                return
            tf.addfile(info)

        st = os.fstat(top)
        if arcname:
            if stat.S_ISREG(st.st_mode):
                add(arcname, st, None, f"/proc/self/fd/{top}")
            else:
                add(arcname, st, top, "")  # readlinkat(top, "") reads a symlink's own target
        if not stat.S_ISDIR(st.st_mode):
            return
        prefix = f"{arcname}/" if arcname else ""
        for dirpath, dirnames, filenames, dir_fd in os.fwalk(".", dir_fd=top):
            rel = dirpath[2:]  # fwalk's paths start with "./"
            for entry in sorted(dirnames + filenames):
                child = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
                add(f"{prefix}{rel}/{entry}" if rel else f"{prefix}{entry}", child, dir_fd, entry)
