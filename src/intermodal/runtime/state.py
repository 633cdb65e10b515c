"""Per-container runtime state on disk (runtime.md "State"), and the status derived from the live process.

Status is computed, not stored: a container is `created` while its exec fifo exists, `running` once
`start` has consumed it, and `stopped` as soon as its init is gone (or is a zombie, or the PID was reused).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from intermodal import fsutil
from intermodal.errors import Conflict, InvalidArgument, NotFound

DEFAULT_ROOT = Path("/run/intermodal/runtime")
OCI_VERSION = "1.0.2"
CREATING, CREATED, RUNNING, PAUSED, STOPPED = "creating", "created", "running", "paused", "stopped"
_ID = re.compile(r"^[\w+.-]+$")


def check_id(container_id: str) -> str:
    """IDs become directory names, so only runc's character set is allowed (no '/', no '..')."""
    if not _ID.match(container_id) or container_id in (".", ".."):
        raise InvalidArgument(
            f"invalid container id {container_id!r}: use letters, digits, '_', '+', '-', '.'"
        )
    return container_id


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks); None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # comm may contain spaces and ')'
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass
class State:
    id: str
    bundle: str
    pid: int = 0
    pid_start: int = 0
    created: str = ""
    cgroup_path: str = ""
    cgroup_version: int = 1
    paused: bool = False
    annotations: dict[str, str] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.pid > 0 and process_start_time(self.pid) == self.pid_start

    def oci(self, status: str) -> dict[str, Any]:
        """The state object runtime.md specifies for `state` (pid only while the process exists)."""
        out: dict[str, Any] = {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "status": status,
            "bundle": self.bundle,
        }
        if status in (CREATED, RUNNING, PAUSED):
            out["pid"] = self.pid
        out["annotations"] = self.annotations
        return out


class Store:
    """<root>/<id>/{state.json, exec.fifo}; one directory per container."""

    def __init__(self, root: Path = DEFAULT_ROOT) -> None:
        self.root = root

    def dir(self, container_id: str) -> Path:
        return self.root / check_id(container_id)

    def fifo(self, container_id: str) -> Path:
        return self.dir(container_id) / "exec.fifo"

    def reserve(self, container_id: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
        path = self.dir(container_id)
        try:
            path.mkdir(mode=0o711)
        except FileExistsError:
            raise Conflict(
                f"container {container_id!r} already exists: delete it or choose another id"
            ) from None
        return path

    def save(self, state: State) -> None:
        fsutil.atomic_write_json(self.dir(state.id) / "state.json", asdict(state), mode=0o600, durable=False)

    def load(self, container_id: str) -> State:
        data = fsutil.read_json(self.dir(container_id) / "state.json")
        if data is None:
            raise NotFound(f"container {container_id!r} does not exist: see `list` for existing ones")
        return State(**data)

    def status(self, state: State) -> str:
        if state.pid == 0:
            return CREATING
        if not state.alive():
            return STOPPED
        if state.paused:
            return PAUSED
        return CREATED if self.fifo(state.id).exists() else RUNNING

    def remove(self, container_id: str) -> None:
        shutil.rmtree(self.dir(container_id), ignore_errors=True)

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "state.json").exists())

    @contextlib.contextmanager
    def lock(self, container_id: str) -> Iterator[None]:
        """Serialise operations on one container (flock on its directory; released if we die)."""
        try:
            fd = os.open(self.dir(container_id), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(
                f"container {container_id!r} does not exist: see `list` for existing ones"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
