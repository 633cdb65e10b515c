"""Container records on disk: `$ROOT/containers/<id>/container.json`, written atomically under a per-container
flock. The record is the source of truth (the engine is daemonless); the live status is derived from it and
from the monitor when read (see lifecycle.refresh)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
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
    monitor_token: str = ""  # names conmon's instance to its exit command (ContainerService.cleanup)
    mounts: list[dict[str, Any]] = field(default_factory=list)  # resolved volume mounts (Docker shape)
    explicitly_stopped: bool = (
        False  # `stop`/`kill` by the user: restart policies other than always don't apply
    )
    # --userns=auto: the ID range allocated to this container, as OCI's linux.uidMappings/gidMappings
    id_mappings: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return str(self.state["Status"])

    @property
    def log_driver(self) -> str:
        """k8s-file, or none (--log-driver none: no log is kept)."""
        return str((self.host_config.get("LogConfig") or {}).get("Type") or "k8s-file")


class Paths:
    """Where one container's files live: `$ROOT/containers/<id>/…` (each path made on first use: `ps` makes
    a Paths per container and needs one of them)."""

    def __init__(self, container_dir: Path):
        self.dir = container_dir

    rootfs = property(lambda self: self.dir / "rootfs")
    upper = property(lambda self: self.dir / "diff")
    work = property(lambda self: self.dir / "work")
    bundle = property(lambda self: self.dir / "bundle")
    config = property(lambda self: self.dir / "bundle" / "config.json")
    log = property(lambda self: self.dir / "ctr.log")
    exits = property(lambda self: self.dir / "exits")
    hosts = property(lambda self: self.dir / "hosts")
    hostname = property(lambda self: self.dir / "hostname")
    resolv = property(lambda self: self.dir / "resolv.conf")
    init = property(lambda self: self.dir / "init")
    layers = property(lambda self: self.dir / "layers")  # idmapped views of the lower dirs (--userns=auto)


class ContainerStore:
    def __init__(self, root: Path):
        self.root = root / "containers"
        self._names = root / "container-names"  # <name> -> symlink to the container ID: O(1) uniqueness
        self._names_lock = root / "locks" / "containers.lock"

    def dir(self, cid: str) -> Path:
        return self.root / cid

    def _path(self, cid: str) -> Path:
        return self.root / cid / "container.json"

    @contextlib.contextmanager
    def locked(self, cid: str) -> Iterator[None]:
        """Serialise every state change of one container across processes."""
        with contextlib.ExitStack() as stack:
            try:  # never re-create the directory of a container just removed
                stack.enter_context(file_lock(self.root / cid / "lock", make_parent=False))
            except FileNotFoundError:
                raise NotFound(f"no such container: {cid}") from None
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
        owner = self.name_owner(spec)
        if owner:
            return self.load(owner)
        records = self.all()
        for r in records:
            if r.name == spec:  # a name whose link was lost (crash between save and link)
                return r
        matches = [r for r in records if r.id.startswith(spec)] if re.fullmatch(r"[a-f0-9]+", spec) else []
        if len(matches) > 1:
            raise InvalidArgument(f"container ID prefix {spec!r} is ambiguous: give more characters")
        if matches:
            return matches[0]
        raise NotFound(f"no such container: {spec}")

    def name_owner(self, name: str) -> str | None:
        """The ID of the container called `name`, if any (a link whose container is gone does not count)."""
        try:
            cid = os.readlink(self._names / name)
        except (FileNotFoundError, OSError):
            return None
        try:
            return cid if self.load(cid).name == name else None
        except NotFound:
            return None

    def _link_name(self, name: str, cid: str) -> None:
        self._names.mkdir(parents=True, exist_ok=True)
        tmp = self._names / f".{name}.{cid[:12]}"
        tmp.unlink(missing_ok=True)
        os.symlink(cid, tmp)
        os.replace(tmp, self._names / name)

    def release_name(self, name: str, cid: str) -> None:
        with file_lock(self._names_lock):
            with contextlib.suppress(OSError):
                if os.readlink(self._names / name) == cid:
                    (self._names / name).unlink()

    def add(self, record: ContainerRecord) -> None:
        """Publish a new record; the name must be free (checked and claimed under one lock)."""
        check_name(record.name)
        with file_lock(self._names_lock):
            owner = self.name_owner(record.name)
            if owner:
                raise Conflict(
                    f'the container name "/{record.name}" is already in use by container {owner[:12]}: '
                    "remove or rename that container, or choose another name"
                )
            self.dir(record.id).mkdir(parents=True)
            self.save(record)
            self._link_name(record.name, record.id)

    def rename(self, cid: str, new_name: str) -> None:
        check_name(new_name)
        with file_lock(self._names_lock):
            owner = self.name_owner(new_name)
            if owner and owner != cid:
                raise Conflict(
                    f'the container name "/{new_name}" is already in use by container {owner[:12]}'
                )
            with self.locked(cid):
                record = self.load(cid)
                old = record.name
                record.name = new_name
                self.save(record)
                self._link_name(new_name, cid)
                with contextlib.suppress(OSError):
                    if os.readlink(self._names / old) == cid:
                        (self._names / old).unlink()

    def new_id(self) -> str:
        while True:
            cid = os.urandom(32).hex()
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


def random_name(taken: Callable[[str], bool]) -> str:
    """Docker-style `adjective_scientist` names."""
    while True:
        name = f"{_pick(_ADJECTIVES)}_{_pick(_NOUNS)}"
        if taken(name):
            name = f"{name}{os.urandom(1)[0] % 10}"
        if not taken(name):
            return name


def _pick(words: list[str]) -> str:
    """A random word without importing `secrets`/`random` (they cost milliseconds at every start-up)."""
    return words[int.from_bytes(os.urandom(4), "big") % len(words)]
