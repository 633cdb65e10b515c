"""Container records on disk: `$ROOT/containers/<id>/container.json`, written atomically under a per-container
flock. The record is the source of truth (the engine is daemonless); the live status is derived from it and
from the monitor when read (see lifecycle.refresh)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from intermodal.errors import Conflict, InvalidArgument, NotFound
from intermodal.fsutil import atomic_write_json, file_lock, read_json

CREATED, RUNNING, PAUSED, RESTARTING, EXITED, DEAD = (
    "created",
    "running",
    "paused",
    "restarting",
    "exited",
    "dead",
)
_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


def empty_state() -> dict[str, Any]:
    return {
        "Status": CREATED,
        "Running": False,
        "Paused": False,
        "Restarting": False,
        "OOMKilled": False,
        "Dead": False,
        "Pid": 0,
        "ExitCode": 0,
        "Error": "",
        "StartedAt": "0001-01-01T00:00:00Z",
        "FinishedAt": "0001-01-01T00:00:00Z",
    }


@dataclass
class ContainerRecord:
    id: str
    name: str
    created: str
    image: str  # image ID (config digest)
    image_name: str  # what the user typed, as Docker shows in `ps`
    config: dict[str, Any]  # Docker's container Config (Cmd, Entrypoint, Env, ...)
    host_config: dict[str, Any]  # Docker's HostConfig (limits, binds, restart policy, ...)
    state: dict[str, Any] = field(default_factory=empty_state)
    restart_count: int = 0
    runtime: str = "intermodal"
    monitor_pid: int = 0  # conmon, or the CLI running the container in the foreground
    monitor_start: int = 0  # its start time in clock ticks, to tell a reused PID from ours
    mounts: list[dict[str, Any]] = field(default_factory=list)  # resolved volume mounts (Docker shape)
    explicitly_stopped: bool = (
        False  # `stop`/`kill` by the user: restart policies other than always don't apply
    )

    @property
    def status(self) -> str:
        return str(self.state["Status"])


class ContainerStore:
    def __init__(self, root: Path):
        self.root = root / "containers"
        self._names_lock = root / "locks" / "containers.lock"

    def dir(self, cid: str) -> Path:
        return self.root / cid

    def _path(self, cid: str) -> Path:
        return self.root / cid / "container.json"

    @contextlib.contextmanager
    def locked(self, cid: str) -> Iterator[None]:
        """Serialise every state change of one container across processes."""
        if not self.dir(cid).is_dir():
            raise NotFound(f"no such container: {cid}")  # never re-create a removed container's directory
        with file_lock(self.root / cid / "lock"):
            yield

    def load(self, cid: str) -> ContainerRecord:
        data = read_json(self._path(cid))
        if data is None:
            raise NotFound(f"no such container: {cid}")
        return ContainerRecord(**data)

    def save(self, record: ContainerRecord) -> None:
        atomic_write_json(self._path(record.id), asdict(record))

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [e.name for e in os.scandir(self.root) if (Path(e.path) / "container.json").exists()]

    def all(self) -> list[ContainerRecord]:
        out = []
        for cid in self.ids():
            with contextlib.suppress(NotFound):
                out.append(self.load(cid))
        return out

    def resolve(self, spec: str) -> ContainerRecord:
        """Docker's lookup order: full ID, exact name, then unique ID prefix."""
        spec = spec.removeprefix("/")
        if not spec:
            raise InvalidArgument("empty container name or ID")
        if re.fullmatch(r"[a-f0-9]{64}", spec) and self._path(spec).exists():
            return self.load(spec)
        records = self.all()
        for r in records:
            if r.name == spec:
                return r
        matches = [r for r in records if r.id.startswith(spec)] if re.fullmatch(r"[a-f0-9]+", spec) else []
        if len(matches) > 1:
            raise InvalidArgument(f"container ID prefix {spec!r} is ambiguous: give more characters")
        if matches:
            return matches[0]
        raise NotFound(f"no such container: {spec}")

    def add(self, record: ContainerRecord) -> None:
        """Publish a new record; the name must be free (checked and written under one lock)."""
        check_name(record.name)
        with file_lock(self._names_lock):
            for other in self.all():
                if other.name == record.name:
                    raise Conflict(
                        f'the container name "/{record.name}" is already in use by container {other.id[:12]}: '
                        "remove or rename that container, or choose another name"
                    )
            self.dir(record.id).mkdir(parents=True)
            self.save(record)

    def rename(self, cid: str, new_name: str) -> None:
        check_name(new_name)
        with file_lock(self._names_lock):
            for other in self.all():
                if other.name == new_name and other.id != cid:
                    raise Conflict(
                        f'the container name "/{new_name}" is already in use by container {other.id[:12]}'
                    )
            with self.locked(cid):
                record = self.load(cid)
                record.name = new_name
                self.save(record)

    def new_id(self) -> str:
        while True:
            cid = secrets.token_hex(32)
            if not self.dir(cid).exists() and not cid[:12].isdigit():
                return cid


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise InvalidArgument(f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")


_ADJECTIVES = [
    "admiring",
    "brave",
    "calm",
    "clever",
    "eager",
    "elated",
    "festive",
    "gallant",
    "happy",
    "jolly",
    "keen",
    "loving",
    "modest",
    "nifty",
    "quirky",
    "sharp",
    "vibrant",
    "wizardly",
    "zealous",
]
_NOUNS = [
    "babbage",
    "curie",
    "darwin",
    "einstein",
    "euler",
    "fermi",
    "galileo",
    "hopper",
    "kepler",
    "lovelace",
    "newton",
    "noether",
    "pascal",
    "ritchie",
    "tesla",
    "turing",
    "wozniak",
]


def random_name(taken: set[str]) -> str:
    """Docker-style `adjective_scientist` names."""
    while True:
        name = f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}"
        if name in taken:
            name = f"{name}{secrets.randbelow(10)}"
        if name not in taken:
            return name
