"""The guest kernel: Debian's cloud kernel, fetched with `apt-get download` (never installed on the host) and
unpacked into the engine's VM directory, or a kernel the user names with `--vm-kernel`.

We boot the uncompressed vmlinux through its PVH entry point: decompressing a bzImage under TCG costs 0.5-6 s
per boot. The cloud kernel has the virtio drivers as modules, so the few the guest needs are kept with it,
together with their dependencies (read from each module's `.modinfo`, since Debian's package has no
modules.dep: depmod makes it at install time, which we skip)."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from intermodal.errors import InvalidArgument, NotFound
from intermodal.fsutil import atomic_write_bytes, file_lock

META_PACKAGE = "linux-image-cloud-amd64"
# virtio_mmio: microvm's transport; virtio_blk/virtio_console: rootfs disk and agent channels; virtiofs: volumes.
GUEST_MODULES = ("virtio_mmio", "virtio_blk", "virtio_console", "virtiofs")
NET_MODULES = ("virtio_net",)  # loaded only by VMs with a network (agent.py: net_setup)
_ELF = b"\x7fELF"
_VERSION = re.compile(rb"Linux version (\S+) ")


@dataclass(frozen=True)
class Kernel:
    vmlinux: Path
    release: str
    modules: tuple[Path, ...]  # in load order: dependencies first
    source: str  # the package or file it came from, for `inspect`
    net_modules: tuple[Path, ...] = ()  # the rest of NET_MODULES' load order


def download_cache() -> Path:
    """Shared by every engine root on the host, so test roots do not download again."""
    return Path(os.environ.get("INTERMODAL_VM_CACHE", "/var/cache/intermodal/vm"))


def resolve(data_dir: Path, override: str | None = None) -> Kernel:
    """The kernel to boot: `override` (a vmlinux, a bzImage or an unpacked kernel package), else the cloud
    kernel unpacked under `data_dir/kernel`, fetching it on first use."""
    if override:
        return _from_path(Path(override), data_dir)
    current = data_dir / "kernel" / "current.json"
    if _is_current(current):
        return _load(current)
    with file_lock(data_dir / "kernel.lock"):
        if _is_current(current):
            return _load(current)
        deb = _fetch_package()
        return _unpack(deb, data_dir / "kernel", current)


def _is_current(manifest: Path) -> bool:
    """Unpacked, and with the modules this version of the agent loads."""
    try:
        return json.loads(manifest.read_text()).get("wanted") == [*GUEST_MODULES, *NET_MODULES]
    except (OSError, ValueError):
        return False


def _load(manifest: Path) -> Kernel:
    meta = json.loads(manifest.read_text())
    base = manifest.parent
    return Kernel(
        vmlinux=base / meta["vmlinux"],
        release=meta["release"],
        modules=tuple(base / m for m in meta["modules"]),
        source=meta["source"],
        net_modules=tuple(base / m for m in meta["net_modules"]),
    )


def _fetch_package() -> Path:
    cache = download_cache()
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob("linux-image-*-cloud-amd64_*.deb"))
    if found:
        return found[-1]
    hint = (
        f"no guest kernel: `apt-get download` of {META_PACKAGE}'s kernel into {cache} failed; "
        "run it by hand (apt-get update first) or pass --vm-kernel PATH"
    )
    try:
        deps = subprocess.run(
            ["apt-cache", "depends", META_PACKAGE], capture_output=True, text=True, check=True
        ).stdout
        package = re.search(r"Depends: (linux-image-\S+-cloud-amd64)", deps)
        if not package:
            raise NotFound(hint)
        subprocess.run(
            ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package.group(1)],
            cwd=cache, capture_output=True, check=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        raise NotFound(hint) from None
    found = sorted(cache.glob("linux-image-*-cloud-amd64_*.deb"))
    if not found:
        raise NotFound(hint)
    return found[-1]


def _unpack(deb: Path, dest: Path, manifest: Path) -> Kernel:
    """`dpkg-deb -x` into a scratch dir, keep vmlinux and the guest's modules, drop the rest (≈100 MB)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".unpack-") as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True, capture_output=True)
        vmlinuz = glob.glob(f"{tmp}/boot/vmlinuz-*")
        releases = os.listdir(f"{tmp}/lib/modules")
        if not vmlinuz or len(releases) != 1:
            raise NotFound(f"{deb} does not look like a Debian kernel package: no vmlinuz or modules")
        release = releases[0]
        target = dest / release
        shutil.rmtree(target, ignore_errors=True)
        (target / "modules").mkdir(parents=True)
        atomic_write_bytes(target / "vmlinux", extract_vmlinux(Path(vmlinuz[0]).read_bytes()))
        modules_dir = Path(tmp) / "lib" / "modules" / release
        modules = load_order(modules_dir, GUEST_MODULES)
        net = [m for m in load_order(modules_dir, (*GUEST_MODULES, *NET_MODULES)) if m not in modules]
        for path in (*modules, *net):
            shutil.copyfile(path, target / "modules" / path.name)
    meta = {
        "vmlinux": f"{release}/vmlinux", "release": release, "source": deb.name,
        "modules": [f"{release}/modules/{p.name}" for p in modules],
        "net_modules": [f"{release}/modules/{p.name}" for p in net],
        "wanted": [*GUEST_MODULES, *NET_MODULES],
    }  # fmt: skip
    atomic_write_bytes(manifest, json.dumps(meta).encode())
    return _load(manifest)


def _from_path(path: Path, data_dir: Path) -> Kernel:
    if path.is_dir():  # an unpacked kernel package: boot/vmlinuz-* and lib/modules/<release>/
        images = sorted(path.glob("boot/vmlinuz-*"))
        if not images:
            raise InvalidArgument(f"--vm-kernel {path}: no boot/vmlinuz-* in this directory")
        kernel = _from_path(images[-1], data_dir)
        modules_dir = path / "lib" / "modules" / kernel.release
        if not modules_dir.is_dir():
            return Kernel(kernel.vmlinux, kernel.release, (), str(path))
        mods = load_order(modules_dir, GUEST_MODULES)
        net = [m for m in load_order(modules_dir, (*GUEST_MODULES, *NET_MODULES)) if m not in mods]
        return Kernel(kernel.vmlinux, kernel.release, tuple(mods), str(path), tuple(net))
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidArgument(f"--vm-kernel {path}: {e.strerror}") from None
    if not data.startswith(_ELF):
        import hashlib

        extracted = data_dir / "kernel" / "custom" / f"{hashlib.sha256(data).hexdigest()[:16]}.vmlinux"
        if not extracted.exists():
            extracted.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(extracted, extract_vmlinux(data))
        vmlinux, data = extracted, extracted.read_bytes()
    else:
        vmlinux = path
    match = _VERSION.search(data)
    return Kernel(vmlinux, match.group(1).decode() if match else "unknown", (), str(path))


# -- vmlinuz → vmlinux (the logic of the kernel's scripts/extract-vmlinux) -----------------------------------

_MAGICS = (  # (magic, decompressor) as extract-vmlinux tries them
    (b"\x1f\x8b\x08", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
    (b"\x5d\x00\x00\x00", "lzma"),
    (b"\x02\x21\x4c\x18", "lz4"),  # the legacy LZ4 frame the kernel's lz4 compressor writes
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


def extract_vmlinux(image: bytes) -> bytes:
    """Find a compressed payload by its magic and decompress it; the first that yields an ELF wins."""
    if image.startswith(_ELF):
        return image
    for magic, method in _MAGICS:
        start = image.find(magic)
        while start != -1:
            try:
                out = _decompress(method, image[start:])
            except Exception:  # noqa: BLE001 - a false match of the magic: try the next occurrence
                out = b""
            if out.startswith(_ELF):
                return out
            start = image.find(magic, start + 1)
    raise InvalidArgument("not a kernel image: no compressed vmlinux found (gzip/xz/bzip2/lzma/lz4/zstd)")


def _decompress(method: str, data: bytes) -> bytes:
    if method == "gzip":
        import zlib

        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
    if method in ("xz", "lzma"):
        import lzma

        fmt = lzma.FORMAT_XZ if method == "xz" else lzma.FORMAT_ALONE
        return lzma.LZMADecompressor(format=fmt).decompress(data)
    if method == "bzip2":
        import bz2

        return bz2.BZ2Decompressor().decompress(data)
    if method == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return _lz4_legacy(data)


def _lz4_legacy(data: bytes) -> bytes:
    """LZ4 legacy frame (lz4 `-l`, what the kernel uses): magic, then blocks of ≤ 8 MiB each prefixed by its
    little-endian compressed size; it ends at the first size that is not a block (the bzImage trailer)."""
    import lz4.block

    out = bytearray()
    pos = 4
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "little")
        if size == 0x184C2102 or size == 0 or pos + 4 + size > len(data):
            break
        try:
            out += lz4.block.decompress(data[pos + 4 : pos + 4 + size], uncompressed_size=8 << 20)
        except lz4.block.LZ4BlockError:
            break
        pos += 4 + size
    return bytes(out)


# -- module dependencies ------------------------------------------------------------------------------------


def modinfo(path: Path) -> dict[str, str]:
    """The `.modinfo` ELF section of a kernel module: NUL-separated key=value strings."""
    import struct

    data = path.read_bytes()
    if data[:4] != _ELF or data[4] != 2:
        raise InvalidArgument(f"{path} is not a 64-bit kernel module")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _, _, _, offset, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return name, offset, size

    _, str_off, _ = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        if data[str_off + name : data.index(b"\0", str_off + name)] == b".modinfo":
            info: dict[str, str] = {}
            for entry in data[offset : offset + size].split(b"\0"):
                key, sep, value = entry.decode(errors="replace").partition("=")
                if sep:
                    info.setdefault(key, value)
            return info
    return {}


def load_order(modules_dir: Path, wanted: tuple[str, ...]) -> list[Path]:
    """`wanted` and everything they depend on, dependencies first (what modprobe would insmod)."""
    index = {p.name.removesuffix(".ko"): p for p in modules_dir.rglob("*.ko")}
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        key = name.replace("-", "_")
        if key in seen:
            return
        seen.add(key)
        path = index.get(key) or index.get(name)
        if path is None:
            return  # built into this kernel
        for dep in filter(None, modinfo(path).get("depends", "").split(",")):
            visit(dep)
        order.append(path)

    for name in wanted:
        visit(name)
    return order
