"""Build the container's mount namespace from the spec: mounts, /dev, pivot_root, masked and read-only paths.

Runs inside the container init, in its fresh mount namespace, as root. Every destination is resolved inside
the rootfs one component at a time with O_NOFOLLOW (symlinks re-resolved relative to the rootfs, '..' clamped
at it, like filepath-securejoin), and the mount targets the resulting O_PATH fd through /proc/self/fd, as runc
does, so a symlink planted in the image can never redirect a mount onto the host.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Mapping, Sequence
from typing import Any

from intermodal.runtime import sys as _sys

_FLAGS: dict[str, tuple[bool, int]] = {  # option -> (clear?, flag); config-linux.md defers to mount(8)
    "ro": (False, _sys.MS_RDONLY), "rw": (True, _sys.MS_RDONLY),
    "nosuid": (False, _sys.MS_NOSUID), "suid": (True, _sys.MS_NOSUID),
    "nodev": (False, _sys.MS_NODEV), "dev": (True, _sys.MS_NODEV),
    "noexec": (False, _sys.MS_NOEXEC), "exec": (True, _sys.MS_NOEXEC),
    "sync": (False, _sys.MS_SYNCHRONOUS), "async": (True, _sys.MS_SYNCHRONOUS),
    "dirsync": (False, _sys.MS_DIRSYNC), "remount": (False, _sys.MS_REMOUNT),
    "mand": (False, _sys.MS_MANDLOCK), "nomand": (True, _sys.MS_MANDLOCK),
    "noatime": (False, _sys.MS_NOATIME), "atime": (True, _sys.MS_NOATIME),
    "nodiratime": (False, _sys.MS_NODIRATIME), "diratime": (True, _sys.MS_NODIRATIME),
    "relatime": (False, _sys.MS_RELATIME), "norelatime": (True, _sys.MS_RELATIME),
    "strictatime": (False, _sys.MS_STRICTATIME), "nostrictatime": (True, _sys.MS_STRICTATIME),
    "nosymfollow": (False, _sys.MS_NOSYMFOLLOW), "symfollow": (True, _sys.MS_NOSYMFOLLOW),
    "bind": (False, _sys.MS_BIND), "rbind": (False, _sys.MS_BIND | _sys.MS_REC),
}  # fmt: skip
_PROPAGATION = {
    "private": _sys.MS_PRIVATE, "rprivate": _sys.MS_PRIVATE | _sys.MS_REC,
    "shared": _sys.MS_SHARED, "rshared": _sys.MS_SHARED | _sys.MS_REC,
    "slave": _sys.MS_SLAVE, "rslave": _sys.MS_SLAVE | _sys.MS_REC,
    "unbindable": _sys.MS_UNBINDABLE, "runbindable": _sys.MS_UNBINDABLE | _sys.MS_REC,
}  # fmt: skip
# runc's default device nodes (libcontainer/specconv AllowedDevices): name -> (major, minor).
_DEFAULT_DEVICES = {
    "null": (1, 3),
    "zero": (1, 5),
    "full": (1, 7),
    "random": (1, 8),
    "urandom": (1, 9),
    "tty": (5, 0),
}
_DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
              "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}  # fmt: skip
_MAX_SYMLINKS = 40


def parse_options(options: Sequence[str]) -> tuple[int, int, str]:
    """(mount flags, propagation flags, fs data) from OCI mount options."""
    flags, propagation, data = 0, 0, []
    for opt in options:
        if opt in _FLAGS:
            clear, bit = _FLAGS[opt]
            flags = flags & ~bit if clear else flags | bit
        elif opt in _PROPAGATION:
            propagation |= _PROPAGATION[opt]
        elif opt not in ("tmpcopyup", "idmap", "ridmap"):
            data.append(opt)
    return flags, propagation, ",".join(data)


def open_in_root(root: str, unsafe: str, create: str | None = None) -> int:
    """O_PATH fd of `unsafe` resolved inside `root`; missing components are made ('dir' or 'file' last).

    The caller owns the fd. Never returns anything outside `root`: absolute symlinks restart at `root`
    and '..' stops there.
    """
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    stack = [root_fd]  # fds of the directories walked so far; stack[-1] is the current one
    parts = [p for p in unsafe.split("/") if p not in ("", ".")]
    links = 0
    try:
        while parts:
            part = parts.pop(0)
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            try:
                fd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            except FileNotFoundError:
                if create is None:
                    raise
                if parts or create == "dir":
                    os.mkdir(part, 0o755, dir_fd=stack[-1])
                else:
                    os.close(os.open(part, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                     0o644, dir_fd=stack[-1]))  # fmt: skip
                fd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode):
                os.close(fd)
                links += 1
                if links > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, f"too many symlinks resolving {unsafe} in {root}")
                target = os.readlink(part, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                parts[:0] = [p for p in target.split("/") if p not in ("", ".")]
                continue
            if parts and not stat.S_ISDIR(mode):
                os.close(fd)
                raise OSError(errno.ENOTDIR, f"{part} in {unsafe} is not a directory (inside {root})")
            stack.append(fd)
        result = stack.pop() if len(stack) > 1 else os.dup(root_fd)
        return result
    finally:
        for fd in stack:
            os.close(fd)


def _proc_fd(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _mount_one(root: str, m: Mapping[str, Any], in_userns: bool = False) -> None:
    kind, source, dest = m.get("type") or "", m.get("source") or "", m["destination"]
    flags, propagation, data = parse_options(m.get("options") or [])
    is_bind = bool(flags & _sys.MS_BIND) or kind == "bind"
    if kind == "cgroup":
        _mount_cgroup(root, dest, flags)
        return
    if kind == "sysfs" and in_userns:
        try:
            _mount_one(root, m)
        except PermissionError:
            # sysfs needs a network namespace owned by our user namespace; with one the engine made (owned
            # by the host's) bind the host's /sys instead, as runc does.
            _mount_one(
                root, {**m, "type": "bind", "source": "/sys", "options": ["rbind", *(m.get("options") or [])]}
            )
        return
    create = "dir"
    if is_bind and not os.path.isdir(source):
        create = "file"
    fd = open_in_root(root, dest, create=create)
    try:
        if is_bind:
            _sys.mount(source, _proc_fd(fd), None, _sys.MS_BIND | (flags & _sys.MS_REC))
        else:
            _sys.mount(source, _proc_fd(fd), kind, flags, data or None)
    finally:
        os.close(fd)
    # A bind ignores every flag but MS_REC, so ro/nosuid/... need a remount; that and propagation changes
    # apply to the new mount, which only a fresh lookup reaches (the old fd is the directory beneath it).
    extra = flags & ~(_sys.MS_BIND | _sys.MS_REC | _sys.MS_REMOUNT) if is_bind else 0
    if extra or propagation:
        fd = open_in_root(root, dest)
        try:
            if extra:  # keep the flags the source already has: in a user namespace they are locked
                extra |= _mount_flags(_proc_fd(fd))
                _sys.mount(None, _proc_fd(fd), None, _sys.MS_BIND | _sys.MS_REMOUNT | extra)
            if propagation:
                _sys.mount(None, _proc_fd(fd), None, propagation)
        finally:
            os.close(fd)


def _host_cgroup_hierarchies() -> list[str]:
    """v1 hierarchy names ('memory', 'cpu,cpuacct', 'name=systemd') from /proc/self/cgroup; [] on pure v2."""
    with open("/proc/self/cgroup") as f:
        return [line.split(":")[1] for line in f.read().splitlines() if line.split(":")[1]]


def _mount_cgroup(root: str, dest: str, flags: int) -> None:
    """The OCI 'cgroup' mount: the container's own cgroups (it is in a cgroup namespace), read-only if asked.

    v1: a tmpfs with one mount per hierarchy (runc's layout); v2: a single cgroup2 mount.
    """
    base = flags & ~_sys.MS_RDONLY
    hierarchies = _host_cgroup_hierarchies()
    fd = open_in_root(root, dest, create="dir")
    try:
        if not hierarchies:
            _sys.mount("cgroup2", _proc_fd(fd), "cgroup2", flags)
            return
        _sys.mount("tmpfs", _proc_fd(fd), "tmpfs", base, "mode=755")
        os.close(fd)
        fd = open_in_root(root, dest)  # the tmpfs root, not the directory it now covers
        for name in hierarchies:
            dirname = name.removeprefix("name=")
            os.mkdir(dirname, 0o755, dir_fd=fd)
            sub = os.open(dirname, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            try:
                _sys.mount(
                    "cgroup", _proc_fd(sub), "cgroup", flags, name if name == dirname else f"none,{name}"
                )
            finally:
                os.close(sub)
            for alias in dirname.split(",") if "," in dirname else []:
                os.symlink(dirname, alias, dir_fd=fd)
        if flags & _sys.MS_RDONLY:
            _sys.mount(None, _proc_fd(fd), None, _sys.MS_BIND | _sys.MS_REMOUNT | base | _sys.MS_RDONLY)
    finally:
        os.close(fd)


def _make_devices(root: str, devices: Sequence[Mapping[str, Any]], in_userns: bool = False) -> None:
    """Default nodes plus linux.devices, then the /dev symlinks runc creates. A user namespace may not mknod:
    there each node is a bind mount of the host's (runc's bindMountDeviceNode)."""
    nodes = [{"path": f"/dev/{n}", "type": "c", "major": ma, "minor": mi, "fileMode": 0o666}
             for n, (ma, mi) in _DEFAULT_DEVICES.items()]  # fmt: skip
    old_umask = os.umask(0)
    try:
        for dev in [*nodes, *devices]:
            parent, name = os.path.split(dev["path"])
            if in_userns:
                node = open_in_root(root, dev["path"], create="file")
                try:
                    _sys.mount(dev["path"], _proc_fd(node), None, _sys.MS_BIND)
                finally:
                    os.close(node)
                continue
            fd = open_in_root(root, parent, create="dir")
            try:
                kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[
                    dev["type"]
                ]
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)
                mode = dev.get("fileMode", 0o666) & 0o7777
                os.mknod(name, kind | mode, os.makedev(dev.get("major", 0), dev.get("minor", 0)), dir_fd=fd)
                os.chown(name, dev.get("uid", 0), dev.get("gid", 0), dir_fd=fd, follow_symlinks=False)
            finally:
                os.close(fd)
    finally:
        os.umask(old_umask)
    dev_fd = open_in_root(root, "/dev", create="dir")
    try:
        for name, target in _DEV_LINKS.items():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dev_fd)
            os.symlink(target, name, dir_fd=dev_fd)
    finally:
        os.close(dev_fd)


def prepare(spec: Mapping[str, Any], rootfs: str) -> str:
    """Everything before pivot_root: propagation, the rootfs bind, the spec's mounts, /dev. Returns the path
    to pivot into (the rootfs, or in a new user namespace a /proc/self/fd path to it)."""
    linux = spec.get("linux") or {}
    propagation = _PROPAGATION.get(linux.get("rootfsPropagation", ""), _sys.MS_SLAVE | _sys.MS_REC)
    # Stop our mounts from propagating to the host (and pivot_root refuses shared mounts).
    _sys.mount(None, "/", None, propagation)
    _sys.mount(rootfs, rootfs, "bind", _sys.MS_BIND | _sys.MS_REC)
    mounts = list(spec.get("mounts") or [])
    in_userns = any(ns.get("type") == "user" for ns in linux.get("namespaces") or [])
    if in_userns:
        rootfs, mounts = _become_userns_root(rootfs, mounts)
    for m in mounts:
        _mount_one(rootfs, m, in_userns)
    if not any(m["destination"].rstrip("/") == "/dev" and "bind" in (m.get("options") or []) for m in mounts):
        _make_devices(rootfs, linux.get("devices") or [], in_userns)
    return rootfs


def _become_userns_root(rootfs: str, mounts: list[Mapping[str, Any]]) -> tuple[str, list[Mapping[str, Any]]]:
    """In a new user namespace we still have the host's root IDs (unmapped there), so the host's 0700
    directories above the rootfs and the bind sources still let us through as their owner. Pin those paths
    as O_PATH fds now, then become the namespace's root (a mapped ID, which files we create must have);
    from then on every path goes through /proc/self/fd. Like runc's mount source fds, but for the root too.
    The fds are close-on-exec and closed before the process runs anyway."""
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)  # the bind we just made
    pinned: list[Mapping[str, Any]] = []
    for m in mounts:
        flags = parse_options(m.get("options") or [])[0]
        if (m.get("type") == "bind" or flags & _sys.MS_BIND) and (m.get("source") or "").startswith("/"):
            fd = os.open(m["source"], os.O_PATH | os.O_CLOEXEC)
            m = {**m, "source": _proc_fd(fd)}
        pinned.append(m)
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)  # unmapped -> the namespace's root: effective capabilities stay (permitted)
    return _proc_fd(root_fd), pinned


def pivot(rootfs: str) -> None:
    """Make `rootfs` the root and detach the old one (runc's pivot_root(".", ".") without a put_old dir)."""
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new_root)
        _sys.pivot_root(".", ".")
        # The old root is now stacked on "."; go to it explicitly (the kernel gives no cwd guarantee), make
        # sure its unmount cannot propagate anywhere, and lazily detach it.
        os.fchdir(old_root)
        _sys.mount(None, ".", None, _sys.MS_SLAVE | _sys.MS_REC)
        _sys.umount2(".", _sys.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old_root)
        os.close(new_root)


def _mount_flags(path: str) -> int:
    """Flags already on the mount at `path`: a bind remount must repeat them or fail (locked flags)."""
    f_flag = os.statvfs(path).f_flag
    keep = (
        _sys.MS_NOSUID
        | _sys.MS_NODEV
        | _sys.MS_NOEXEC
        | _sys.MS_NOATIME
        | _sys.MS_NODIRATIME
        | _sys.MS_RELATIME
    )
    return f_flag & keep  # statvfs ST_* bits equal the MS_* bits for these


def readonly_path(path: str) -> None:
    try:
        _sys.mount(path, path, None, _sys.MS_BIND | _sys.MS_REC)
    except FileNotFoundError:
        return
    _sys.mount(
        None, path, None, _sys.MS_BIND | _sys.MS_REMOUNT | _sys.MS_RDONLY | _sys.MS_REC | _mount_flags(path)
    )


def mask_path(path: str) -> None:
    """Hide `path`: /dev/null over a file, an empty read-only tmpfs over a directory."""
    try:
        if os.path.isdir(path):
            _sys.mount("tmpfs", path, "tmpfs", _sys.MS_RDONLY)
        else:
            _sys.mount("/dev/null", path, None, _sys.MS_BIND)
    except FileNotFoundError:
        pass


def finalize(spec: Mapping[str, Any]) -> None:
    """After pivot_root: read-only and masked paths, then the read-only root (config.md "Root")."""
    linux = spec.get("linux") or {}
    for path in linux.get("readonlyPaths") or []:
        readonly_path(path)
    for path in linux.get("maskedPaths") or []:
        mask_path(path)
    if (spec.get("root") or {}).get("readonly"):
        _sys.mount(None, "/", None, _sys.MS_BIND | _sys.MS_REMOUNT | _sys.MS_RDONLY | _mount_flags("/"))
