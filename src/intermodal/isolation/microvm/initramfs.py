"""The guest's initramfs, written by our code as a cpio "newc" archive (the format the kernel unpacks,
Documentation/driver-api/early-userspace/buffer-format.rst): static busybox, the virtio modules and the
agent. It is cached under a hash of those inputs. Each VM appends a second small archive with its own
configuration (and the network modules if it has a NIC); the kernel unpacks concatenated archives in order."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from intermodal.errors import NotFound
from intermodal.fsutil import atomic_write_bytes
from intermodal.isolation.microvm import agent
from intermodal.isolation.microvm.kernel import Kernel

BUSYBOX = "/bin/busybox"
_FORMAT = "4"  # bump when the layout below changes


class Archive:
    """An in-memory newc archive: directories, files and symlinks, owned by root."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, *rdev, len(encoded), 0)
        self._ino += 1
        self._data += b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
        self._data += b"\0" * (-len(self._data) % 4) + data
        self._data += b"\0" * (-len(self._data) % 4)

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o666) -> None:
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return bytes(self._data) + b"\0" * (-len(self._data) % 512)


def base_image(kernel: Kernel, cache_dir: Path) -> Path:
    """The shared initramfs for `kernel`, built once per set of inputs."""
    if not os.path.exists(BUSYBOX):
        raise NotFound(f"{BUSYBOX} is missing: install Debian's busybox-static (the guest's userland)")
    inputs = [Path(BUSYBOX), *kernel.modules]
    # Keyed by the inputs' names and stat, not their content: hashing ≈3 MB costs every boot ≈5 ms.
    digest = hashlib.sha256(_FORMAT.encode() + agent.INIT.encode() + agent.FSTAB.encode())
    digest.update(" ".join(agent.APPLETS).encode())
    for p in inputs:
        st = p.stat()
        digest.update(f"{p}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino};".encode())
    path = cache_dir / f"base-{digest.hexdigest()[:24]}.cpio"
    if path.exists():
        return path
    busybox = Path(BUSYBOX).read_bytes()
    modules = [(m.name, m.read_bytes()) for m in kernel.modules]
    archive = Archive()
    for d in (
        "bin",
        "dev",
        "proc",
        "sys",
        "run",
        "etc",
        "newroot",
        "files",
        "lib",
        "lib/modules",
        "lib/modules/net",
    ):
        archive.directory(d)
    archive.file("bin/busybox", busybox, 0o755)
    for applet in agent.APPLETS:
        archive.symlink(f"bin/{applet}", "busybox")
    for i, (name, data) in enumerate(modules):
        archive.file(f"lib/modules/{i:02d}-{name}", data)
    _oci_dev(archive)
    archive.file("etc/fstab", agent.FSTAB.encode())
    archive.file("init", agent.INIT.encode(), 0o755)
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, archive.finish())
    for stale in cache_dir.glob("base-*.cpio"):
        if stale != path:
            stale.unlink(missing_ok=True)
    return path


def _oci_dev(archive: Archive) -> None:
    """The container's /dev: the default devices and links of runtime-spec config-linux.md#default-devices."""
    archive.directory("dev.oci")
    for name, major, minor in (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
                               ("urandom", 1, 9), ("tty", 5, 0)):  # fmt: skip
        archive.char_device(f"dev.oci/{name}", major, minor)
    for d in ("pts", "shm", "mqueue"):
        archive.directory(f"dev.oci/{d}")
    for name, target in (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):  # fmt: skip
        archive.symlink(f"dev.oci/{name}", target)


def vm_image(
    base: Path,
    config: str,
    files: Iterable[tuple[str, bytes, int]],
    dest: Path,
    net_modules: Sequence[Path] = (),
) -> Path:
    """`base` followed by this VM's archive: /config.sh, the files bound into the rootfs (/files/NAME) and,
    for a VM with a NIC, the network modules (the others' guests need not unpack them)."""
    archive = Archive()
    archive.file("config.sh", config.encode(), 0o644)
    for name, data, mode in files:
        archive.file(f"files/{name}", data, mode)
    for i, module in enumerate(net_modules):
        archive.file(f"lib/modules/net/{i:02d}-{module.name}", module.read_bytes())
    with open(base, "rb") as src, open(dest, "wb") as out:
        try:  # in the kernel (a reflink where the filesystem can): ≈3 MB per boot
            while os.copy_file_range(src.fileno(), out.fileno(), 1 << 24):
                pass
        except OSError:
            src.seek(0)
            out.seek(0)
            out.truncate()
            shutil.copyfileobj(src, out)
        out.write(archive.finish())
    return dest
