"""Offline base images: `busybox` from Debian's busybox-static, `debian:<suite>` with debootstrap.

The busybox image is byte-for-byte reproducible for the same busybox binary: every mtime is the binary's,
every owner root, and the config's `created` is that same instant, so its digest is stable across machines.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from intermodal.errors import InvalidArgument, NotFound
from intermodal.image import reference
from intermodal.image.assemble import HistoryEntry, assemble
from intermodal.image.layer import write_layer
from intermodal.image.store import ImageRecord, ImageStore

BUSYBOX_BINARY = Path("/bin/busybox")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
_GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
tty:x:5:
www-data:x:33:
users:x:100:
nogroup:x:65534:
"""


def bootstrap(store: ImageStore, what: str, tag: str | None = None) -> ImageRecord:
    ref = reference.parse(what)
    repo = ref.familiar_name
    if repo == "busybox":
        return _busybox(store, tag or f"busybox:{ref.tag}")
    if repo == "debian":
        return _debian(store, ref.tag if ref.tag and ref.tag != "latest" else "bookworm", tag or str(ref))
    raise InvalidArgument(
        f"cannot bootstrap {what!r}: choose busybox or debian:<suite> (e.g. debian:bookworm)"
    )


def _busybox(store: ImageStore, name: str) -> ImageRecord:
    binary = BUSYBOX_BINARY
    if not binary.exists():
        raise NotFound(
            f"{binary} not found: install Debian's busybox-static (apt-get install busybox-static)"
        )
    mtime = int(binary.stat().st_mtime)
    applets = subprocess.run([binary, "--list"], capture_output=True, text=True, check=True).stdout.split()
    with tempfile.TemporaryDirectory(dir=_scratch(store)) as tmp:
        root = Path(tmp) / "rootfs"
        for d, mode in [
            ("bin", 0o755),
            ("etc", 0o755),
            ("root", 0o700),
            ("tmp", 0o1777),
            ("home", 0o755),
            ("var", 0o755),
            ("usr", 0o755),
            ("dev", 0o755),
            ("proc", 0o555),
            ("sys", 0o555),
        ]:
            (root / d).mkdir(parents=True)
            os.chmod(root / d, mode)
        shutil.copyfile(binary, root / "bin" / "busybox")
        os.chmod(root / "bin" / "busybox", 0o755)
        for applet in applets:
            if applet != "busybox" and "/" not in applet:
                os.symlink("busybox", root / "bin" / applet)
        (root / "etc" / "passwd").write_text(_PASSWD)
        (root / "etc" / "group").write_text(_GROUP)
        version = subprocess.run([binary], capture_output=True, text=True).stdout.splitlines()[0]
        return _commit_rootfs(
            store,
            root,
            name,
            mtime,
            {"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": ["sh"]},
            f"intermodal image bootstrap busybox ({version.strip()})",
        )


def _debian(store: ImageStore, suite: str, name: str) -> ImageRecord:
    if not shutil.which("debootstrap"):
        raise NotFound("debootstrap not found: install it (apt-get install debootstrap)")
    mirror = os.environ.get("INTERMODAL_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    with tempfile.TemporaryDirectory(dir=_scratch(store)) as tmp:
        root = Path(tmp) / "rootfs"
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", suite, str(root), mirror], capture_output=True, text=True
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise InvalidArgument(f"debootstrap of {suite} from {mirror} failed: {tail[0]}")
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (root / leftover).glob("*"):
                if entry.is_file():
                    entry.unlink()
        mtime = int(dt.datetime.now(dt.UTC).timestamp())
        return _commit_rootfs(
            store,
            root,
            name,
            mtime,
            {"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": ["bash"]},
            f"intermodal image bootstrap debian:{suite} (debootstrap --variant=minbase)",
        )


def _commit_rootfs(
    store: ImageStore, root: Path, name: str, mtime: int, config: dict[str, object], created_by: str
) -> ImageRecord:
    created = dt.datetime.fromtimestamp(mtime, dt.UTC).isoformat().replace("+00:00", "Z")
    with store.lease():
        with store.content.writer() as w:
            layer = write_layer(w, root, compression="gzip", mtime=mtime)
        return assemble(
            store, [layer], config, [HistoryEntry(created_by=created_by)], created=created, names=[name]
        )


def _scratch(store: ImageStore) -> Path:
    """Work space on the store's file system, so nothing big lands in a small /tmp."""
    path = store.root / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path
