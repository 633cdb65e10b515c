"""Named and anonymous volumes (`$ROOT/volumes/<name>/_data`, Docker's local driver), and the parsing of
`-v`, `--mount` and `--tmpfs` into Docker-shaped mount records."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intermodal.errors import Conflict, InvalidArgument, NotFound
from intermodal.fsutil import atomic_write_json, file_lock, read_json

_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_BIND_OPTIONS = {
    "ro",
    "rw",
    "z",
    "Z",
    "rprivate",
    "private",
    "rshared",
    "shared",
    "rslave",
    "slave",
    "nocopy",
}


class VolumeStore:
    def __init__(self, root: Path):
        self.root = root / "volumes"
        self._lock = root / "locks" / "volumes.lock"

    def data_dir(self, name: str) -> Path:
        return self.root / name / "_data"

    def exists(self, name: str) -> bool:
        return (self.root / name / "volume.json").exists()

    def create(
        self, name: str = "", labels: dict[str, str] | None = None, anonymous: bool = False
    ) -> dict[str, Any]:
        """Create (or return the existing) volume; Docker's `volume create` is idempotent."""
        name = name or os.urandom(32).hex()
        if not _VOLUME_NAME.match(name):
            raise InvalidArgument(
                f"invalid volume name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-] (at least 2 characters)"
            )
        with file_lock(self._lock):
            if self.exists(name):
                return self.inspect(name)
            self.data_dir(name).mkdir(parents=True, exist_ok=True)
            meta = {
                "CreatedAt": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                "Driver": "local",
                "Labels": labels or {},
                "Name": name,
                "Options": {},
                "Scope": "local",
                "Anonymous": anonymous,
            }
            atomic_write_json(self.root / name / "volume.json", meta)
        return self.inspect(name)

    def inspect(self, name: str) -> dict[str, Any]:
        meta = read_json(self.root / name / "volume.json")
        if meta is None:
            raise NotFound(f"no such volume: {name}")
        anonymous = meta.pop("Anonymous", False)
        meta["Mountpoint"] = str(self.data_dir(name))
        if anonymous:
            meta["Labels"] = {**meta["Labels"], "com.docker.volume.anonymous": ""}
        return dict(meta)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "volume.json").exists())

    def remove(self, name: str, in_use_by: list[str], force: bool = False) -> None:
        if not self.exists(name):
            if force:
                return
            raise NotFound(f"no such volume: {name}")
        if in_use_by:
            raise Conflict(
                f"remove {name}: volume is in use by container(s) {', '.join(c[:12] for c in in_use_by)}; "
                "remove them first"
            )
        with file_lock(self._lock):
            (self.root / name / "volume.json").unlink()
            shutil.rmtree(self.root / name, ignore_errors=True)


@dataclass(frozen=True)
class MountRequest:
    """One user mount before resolution: a bind, a (named or anonymous) volume, or a tmpfs."""

    type: str
    source: str
    destination: str
    readonly: bool = False
    options: tuple[str, ...] = ()
    copy_up: bool = True


def _check_destination(dest: str, spec: str) -> str:
    if not dest.startswith("/"):
        raise InvalidArgument(f"invalid mount {spec!r}: the container path {dest!r} must be absolute")
    normalized = os.path.normpath(dest)
    if normalized == "/":
        raise InvalidArgument(f"invalid mount {spec!r}: cannot mount over the container's root /")
    return normalized


def parse_volume_flag(spec: str) -> MountRequest:
    """`-v [SOURCE:]DEST[:OPTIONS]`: SOURCE absolute → bind, a name → named volume, none → anonymous."""
    parts = spec.split(":")
    if len(parts) == 1:
        return MountRequest("volume", "", _check_destination(parts[0], spec))
    if len(parts) > 3 or not parts[0] or not parts[1]:
        raise InvalidArgument(f"invalid volume specification {spec!r}: use [SOURCE:]DEST[:ro]")
    source, dest = parts[0], parts[1]
    options = tuple(o for o in (parts[2].split(",") if len(parts) == 3 else []) if o)
    unknown = set(options) - _BIND_OPTIONS
    if unknown:
        raise InvalidArgument(f"invalid volume specification {spec!r}: unknown option {sorted(unknown)[0]!r}")
    readonly = "ro" in options
    if source.startswith("/"):
        return MountRequest("bind", source, _check_destination(dest, spec), readonly, options)
    if source.startswith("."):
        raise InvalidArgument(
            f"invalid volume specification {spec!r}: a bind source must be an absolute path"
        )
    return MountRequest(
        "volume", source, _check_destination(dest, spec), readonly, copy_up="nocopy" not in options
    )


def parse_mount_flag(spec: str) -> MountRequest:
    """`--mount type=bind|volume|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…][,volume-nocopy]`."""
    fields: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        fields[key.strip()] = value if sep else "true"
    kind = fields.pop("type", "volume")
    if kind not in ("bind", "volume", "tmpfs"):
        raise InvalidArgument(f"invalid --mount {spec!r}: type must be bind, volume or tmpfs")
    source = fields.pop("source", fields.pop("src", ""))
    target = fields.pop("target", fields.pop("destination", fields.pop("dst", "")))
    if not target:
        raise InvalidArgument(f"invalid --mount {spec!r}: target is required")
    readonly = fields.pop("readonly", fields.pop("ro", "false")) in ("true", "1")
    options: list[str] = []
    if "tmpfs-size" in fields:
        options.append(f"size={fields.pop('tmpfs-size')}")
    if "tmpfs-mode" in fields:
        options.append(f"mode={fields.pop('tmpfs-mode')}")
    nocopy = fields.pop("volume-nocopy", "false") in ("true", "1")
    fields.pop("bind-propagation", None)
    fields.pop("consistency", None)
    if fields:
        raise InvalidArgument(f"invalid --mount {spec!r}: unknown field {sorted(fields)[0]!r}")
    if kind == "bind" and not source.startswith("/"):
        raise InvalidArgument(f"invalid --mount {spec!r}: a bind source must be an absolute host path")
    if kind == "tmpfs" and source:
        raise InvalidArgument(f"invalid --mount {spec!r}: tmpfs mounts take no source")
    return MountRequest(kind, source, _check_destination(target, spec), readonly, tuple(options), not nocopy)


def parse_tmpfs_flag(spec: str) -> MountRequest:
    dest, _, opts = spec.partition(":")
    return MountRequest(
        "tmpfs", "", _check_destination(dest, spec), options=tuple(o for o in opts.split(",") if o)
    )


def image_volumes(volumes: dict[str, Any] | None, taken: set[str]) -> list[MountRequest]:
    """The image's VOLUME paths not already covered by a user mount become anonymous volumes."""
    return [
        MountRequest("volume", "", os.path.normpath(p))
        for p in sorted(volumes or {})
        if os.path.normpath(p) not in taken
    ]


def copy_up(source_dir: str, target: Path) -> None:
    """Docker copies the image's content at a volume's path into a new, empty volume (symlinks kept as links)."""
    if any(target.iterdir()):
        return
    for entry in os.scandir(source_dir):
        src, dst = entry.path, target / entry.name
        if entry.is_dir(follow_symlinks=False):
            shutil.copytree(src, dst, symlinks=True)
        else:
            shutil.copy2(src, dst, follow_symlinks=False)
    with contextlib.suppress(OSError):
        st = os.stat(source_dir)
        os.chown(target, st.st_uid, st.st_gid)
        os.chmod(target, st.st_mode & 0o7777)
