"""Thin libc wrappers: the one place that calls into libc (ctypes, errno-checked).

Every wrapper raises OSError carrying errno and a message naming the call and its path, so a failure deep in
container set-up tells the user exactly which step failed.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct

_libc = ctypes.CDLL("libc.so.6", use_errno=True)  # not find_library(): it spawns gcc/ldconfig (~30 ms)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

# <linux/sched.h>
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# <sys/mount.h>
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

# <linux/mount.h>: the new mount API, for idmapped mounts (mount_setattr(2))
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x00000001
MOUNT_ATTR_IDMAP = 0x00100000
MOVE_MOUNT_F_EMPTY_PATH = 0x00000004

# <linux/prctl.h>
PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2

# x86_64 syscall numbers for calls glibc does not wrap (or wraps only in newer versions).
_SYS_CAPGET = 125
_SYS_CAPSET = 126
_SYS_PIVOT_ROOT = 155
_SYS_SETNS = 308
_SYS_CLOSE_RANGE = 436
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _check(ret: int, call: str, path: str | bytes = "") -> int:
    if ret < 0:
        err = ctypes.get_errno()
        where = f" {os.fsdecode(path)}" if path else ""
        raise OSError(err, f"{call}{where}: {os.strerror(err)}")
    return ret


def _b(s: str | bytes | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare", hex(flags))


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.syscall(_SYS_SETNS, ctypes.c_int(fd), ctypes.c_int(nstype)), "setns", f"fd {fd}")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    ret = _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data))
    _check(ret, f"mount {source or fstype} on", target)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]  # fmt: skip


def idmapped_bind(source: str, target: str, userns_fd: int) -> None:
    """Bind `source` on `target` with its IDs shifted through the user namespace `userns_fd` (an idmapped
    mount: open_tree(OPEN_TREE_CLONE), mount_setattr(MOUNT_ATTR_IDMAP), move_mount). Files owned by 0 in
    `source` appear owned by whatever host ID the namespace maps 0 to; nothing on disk changes."""
    tree = _check(
        _libc.syscall(_SYS_OPEN_TREE, ctypes.c_int(-100), _b(source), ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)),
        "open_tree", source,
    )  # fmt: skip
    try:
        attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
        _check(
            _libc.syscall(_SYS_MOUNT_SETATTR, ctypes.c_int(tree), b"", ctypes.c_uint(AT_EMPTY_PATH),
                          ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))),
            "mount_setattr (idmap)", source,
        )  # fmt: skip
        _check(
            _libc.syscall(_SYS_MOVE_MOUNT, ctypes.c_int(tree), b"", ctypes.c_int(-100), _b(target),
                          ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)),
            "move_mount to", target,
        )  # fmt: skip
    finally:
        os.close(tree)


def readonly_tree(target: str) -> None:
    """Make the mount at `target` and every mount under it read-only (mount_setattr with AT_RECURSIVE): a
    bind remount changes one mount only."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    _check(
        _libc.syscall(_SYS_MOUNT_SETATTR, ctypes.c_int(-100), _b(target), ctypes.c_uint(AT_RECURSIVE),
                      ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))),
        "mount_setattr (read-only)", target,
    )  # fmt: skip


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), "umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(_SYS_PIVOT_ROOT, _b(new_root), _b(put_old)), "pivot_root", new_root)


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname", name)


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, ctypes.c_size_t(len(raw))), "setdomainname", name)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def set_pdeathsig(sig: int) -> None:
    prctl(PR_SET_PDEATHSIG, sig)


def set_child_subreaper(on: bool = True) -> None:
    """Orphaned descendants (a container init after `create` returns) get re-parented to us, like conmon."""
    prctl(PR_SET_CHILD_SUBREAPER, int(on))


def set_keepcaps(on: bool) -> None:
    prctl(PR_SET_KEEPCAPS, int(on))


def capbset_drop(cap: int) -> None:
    prctl(PR_CAPBSET_DROP, cap)


def ambient_clear() -> None:
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


def ambient_raise(cap: int) -> None:
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of the calling thread as 64-bit masks."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.syscall(_SYS_CAPGET, ctypes.byref(hdr), data), "capget")
    lo, hi = data[0], data[1]
    return (
        lo.effective | hi.effective << 32,
        lo.permitted | hi.permitted << 32,
        lo.inheritable | hi.inheritable << 32,
    )


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        mask = 0xFFFFFFFF
        data[i].effective = (effective >> shift) & mask
        data[i].permitted = (permitted >> shift) & mask
        data[i].inheritable = (inheritable >> shift) & mask
    _check(_libc.syscall(_SYS_CAPSET, ctypes.byref(hdr), data), "capset")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_install(program: bytes) -> None:
    """Install a classic-BPF seccomp filter (8-byte `struct sock_filter` records); needs NNP or CAP_SYS_ADMIN."""
    if len(program) % 8:
        raise ValueError("seccomp program length is not a multiple of 8")
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0), "seccomp")


def close_fds_from(first: int) -> None:
    """Close every fd >= first (close_range(2), falling back to a loop over /proc/self/fd on old kernels)."""
    if (
        _libc.syscall(_SYS_CLOSE_RANGE, ctypes.c_uint(first), ctypes.c_uint(0xFFFFFFFF), ctypes.c_uint(0))
        == 0
    ):
        return
    for name in os.listdir("/proc/self/fd"):
        if int(name) >= first:
            try:
                os.close(int(name))
            except OSError:
                pass


def loopback_up() -> None:
    """Bring `lo` up in a fresh network namespace, as runc's default "loopback" network does."""
    import socket

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), siocgifflags, req))[1]
        fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sH22x", b"lo", flags | iff_up))


def set_controlling_tty(fd: int) -> None:
    """Make the terminal on `fd` the controlling terminal of this (new session leader) process."""
    tiocsctty = 0x540E
    fcntl.ioctl(fd, tiocsctty, 0)
