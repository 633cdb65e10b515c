"""Control groups: one interface (`Cgroup`), implemented for cgroup v1 (one tree per controller) and v2.

`resources` arguments are OCI `linux.resources` objects (config-linux.md "Control groups"). The filesystem
root is a parameter so v2 can be exercised against a fake tree on a v1 host.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd")
V2_CONTROLLERS = ("cpu", "cpuset", "memory", "pids", "io")
_V1_UNLIMITED = 1 << 62  # memory.limit_in_bytes without a limit: PAGE_COUNTER_MAX pages, about 2^63


@dataclass(frozen=True)
class Stats:
    memory_bytes: int
    cpu_ns: int
    pids: int
    memory_limit: int = 0  # 0: unlimited
    inactive_file: int = 0  # page cache the kernel can reclaim; Docker subtracts it from the usage it shows
    io_read_bytes: int = 0
    io_write_bytes: int = 0


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read().strip()


def _write(path: Path, value: str | int) -> None:
    """One write(2) per value: cgroup files parse each write as one command."""
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as e:
        raise OSError(e.errno, f"write {value!r} to {path}: {os.strerror(e.errno or 0)}") from None


def _keyed(path: Path) -> dict[str, int]:
    """Parse flat-keyed files (`memory.events`, `cpu.stat`, `memory.oom_control`): 'key value' lines."""
    out = {}
    for line in _read(path).splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value)
    return out


def _poll(done: Callable[[], bool], timeout: float) -> bool:
    """Whether `done` came true within `timeout`, asking first at once, then after 0.5 ms, doubling up to
    10 ms: what the kernel finishes for us (a freeze, a dying task's release) mostly takes a millisecond or
    two, and a fixed 10 ms step cost that much per container removal."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
    return True


def _wait_empty(procs_file: Path, timeout: float = 5.0) -> None:
    _poll(lambda: not procs_file.exists() or not _read(procs_file), timeout)


def _rmdir(path: Path, timeout: float = 2.0) -> None:
    """rmdir, retrying EBUSY: the kernel releases a cgroup shortly after its last task is reaped."""

    def removed() -> bool:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            return False
        return True

    if not _poll(removed, timeout):
        raise OSError(errno.EBUSY, f"cgroup {path} is still busy", str(path))


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) -> cpu.weight (1..10000), runc's linear mapping."""
    return 1 + ((shares - 2) * 9999) // 262142 if shares else 0


class Cgroup(ABC):
    """A container's cgroup, named by its cgroupsPath (absolute within the hierarchy)."""

    version: int

    def __init__(self, path: str, root: Path = DEFAULT_ROOT) -> None:
        self.path = "/" + path.strip("/")
        self.root = root

    @abstractmethod
    def create(self, resources: Mapping[str, Any]) -> None: ...

    @abstractmethod
    def set(self, resources: Mapping[str, Any]) -> None: ...

    @abstractmethod
    def add_process(self, pid: int) -> None: ...

    @abstractmethod
    def pids(self) -> list[int]: ...

    @abstractmethod
    def freeze(self) -> None: ...

    @abstractmethod
    def thaw(self) -> None: ...

    @abstractmethod
    def stats(self) -> Stats: ...

    @abstractmethod
    def oom_killed(self) -> bool: ...

    @abstractmethod
    def exists(self) -> bool: ...

    @abstractmethod
    def delete(self) -> None:
        """SIGKILL whatever is left inside, then remove the directories."""


class V1(Cgroup):
    version = 1

    def _dirs(self) -> dict[str, Path]:
        return {c: self.root / c / self.path.lstrip("/") for c in V1_CONTROLLERS if (self.root / c).is_dir()}

    def _file(self, controller: str, name: str) -> Path:
        return self.root / controller / self.path.lstrip("/") / name

    def create(self, resources: Mapping[str, Any]) -> None:
        for path in self._dirs().values():
            path.mkdir(parents=True, exist_ok=True)
        self._inherit_cpuset()
        self.set(resources)

    def _inherit_cpuset(self) -> None:
        """A new v1 cpuset starts empty and refuses tasks; copy cpus/mems down from the nearest ancestor."""
        top = self.root / "cpuset"
        if not top.is_dir():
            return
        node = top
        for part in Path(self.path.lstrip("/")).parts:
            child = node / part
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not _read(child / name):
                    _write(child / name, _read(node / name))
            node = child

    def set(self, resources: Mapping[str, Any]) -> None:
        dirs = self._dirs()
        mem = resources.get("memory") or {}
        if "memory" in dirs and mem:
            limit, swap = mem.get("limit"), mem.get("swap")
            memsw = self._file("memory", "memory.memsw.limit_in_bytes")
            # memory <= memory+swap must hold after every write, so the order depends on the direction.
            raising = limit is not None and (
                limit == -1 or limit > int(_read(self._file("memory", "memory.limit_in_bytes")))
            )
            if raising and swap is not None and memsw.exists():
                _write(memsw, swap)
            if limit is not None:
                _write(self._file("memory", "memory.limit_in_bytes"), limit)
            if not raising and swap is not None and memsw.exists():
                _write(memsw, swap)
            if mem.get("reservation") is not None:
                _write(self._file("memory", "memory.soft_limit_in_bytes"), mem["reservation"])
            if mem.get("swappiness") is not None:
                _write(self._file("memory", "memory.swappiness"), mem["swappiness"])
            if mem.get("disableOOMKiller"):  # cgroup v2 has no such switch: runc ignores it there, as we do
                _write(self._file("memory", "memory.oom_control"), 1)
        cpu = resources.get("cpu") or {}
        if "cpu" in dirs:
            for key, name in (
                ("shares", "cpu.shares"),
                ("period", "cpu.cfs_period_us"),
                ("quota", "cpu.cfs_quota_us"),
            ):
                if cpu.get(key) is not None:
                    _write(self._file("cpu", name), cpu[key])
        if "cpuset" in dirs:
            for key in ("cpus", "mems"):
                if cpu.get(key):
                    _write(self._file("cpuset", f"cpuset.{key}"), cpu[key])
        limit = (resources.get("pids") or {}).get("limit")
        if "pids" in dirs and limit is not None:
            _write(self._file("pids", "pids.max"), "max" if limit <= 0 else limit)
        weight = (resources.get("blockIO") or {}).get("weight")
        if weight is not None and self._file("blkio", "blkio.weight").exists():
            _write(self._file("blkio", "blkio.weight"), weight)
        if "devices" in dirs:
            for rule in resources.get("devices") or []:
                self._device_rule(rule)

    def _device_rule(self, rule: Mapping[str, Any]) -> None:
        kind = rule.get("type", "a")
        major = "*" if rule.get("major") is None else rule["major"]
        minor = "*" if rule.get("minor") is None else rule["minor"]
        access = rule.get("access") or "rwm"
        line = "a" if kind == "a" else f"{kind} {major}:{minor} {access}"
        _write(self._file("devices", "devices.allow" if rule.get("allow") else "devices.deny"), line)

    def add_process(self, pid: int) -> None:
        """A single-threaded caller moving itself writes "0" to `tasks`: the kernel then migrates the calling
        thread without taking the global threadgroup lock whose RCU grace period a `cgroup.procs` write waits
        for (cgroup_procs_write_start in kernel/cgroup/cgroup.c), about 10 ms per container start here."""
        if pid == os.getpid() and len(os.listdir("/proc/self/task")) == 1:
            name, value = "tasks", 0
        else:
            name, value = "cgroup.procs", pid
        for path in self._dirs().values():
            _write(path / name, value)

    def pids(self) -> list[int]:
        for ctrl in ("pids", "memory", "freezer"):
            procs = self._file(ctrl, "cgroup.procs")
            if procs.exists():
                return [int(p) for p in _read(procs).split()]
        return []

    def freeze(self) -> None:
        self._freezer("FROZEN")

    def thaw(self) -> None:
        self._freezer("THAWED")

    def _freezer(self, target: str, timeout: float = 5.0) -> None:
        state = self._file("freezer", "freezer.state")

        def reached() -> bool:
            if _read(state) == target:
                return True
            _write(state, target)  # a FREEZING cgroup is asked again (runc's freezer does the same)
            return False

        _write(state, target)
        if not _poll(reached, timeout):
            raise OSError(errno.EBUSY, f"cgroup {self.path} did not become {target}")

    def stats(self) -> Stats:
        def num(ctrl: str, name: str) -> int:
            path = self._file(ctrl, name)
            return int(_read(path)) if path.exists() else 0

        memory_stat = self._file("memory", "memory.stat")
        limit = num("memory", "memory.limit_in_bytes")
        io = {"Read": 0, "Write": 0}
        for name in ("blkio.io_service_bytes_recursive", "blkio.throttle.io_service_bytes_recursive"):
            path = self._file("blkio", name)
            lines = _read(path).splitlines() if path.exists() else []
            for line in lines:  # "8:0 Read 4096" ... "Total 8192"
                fields = line.split()
                if len(fields) == 3 and fields[1] in io:
                    io[fields[1]] += int(fields[2])
            if any(io.values()):  # the throttle counters only when the I/O scheduler keeps none
                break
        return Stats(
            num("memory", "memory.usage_in_bytes"),
            num("cpuacct", "cpuacct.usage"),
            num("pids", "pids.current"),
            memory_limit=0 if limit >= _V1_UNLIMITED else limit,
            inactive_file=_keyed(memory_stat).get("total_inactive_file", 0) if memory_stat.exists() else 0,
            io_read_bytes=io["Read"],
            io_write_bytes=io["Write"],
        )

    def oom_killed(self) -> bool:
        path = self._file("memory", "memory.oom_control")
        return path.exists() and _keyed(path).get("oom_kill", 0) > 0

    def exists(self) -> bool:
        return any(p.is_dir() for p in self._dirs().values())

    def delete(self) -> None:
        if not self.exists():
            return
        # Freeze first so nothing forks between listing the tasks and killing them (runc does the same); an
        # empty cgroup has nothing to freeze, and freezing one whose last task is still being released
        # waits for that (≈10 ms after every container).
        if self.pids():
            frozen = self._file("freezer", "freezer.state").exists()
            if frozen:
                self.freeze()
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if frozen:
                self.thaw()
        for path in self._dirs().values():
            _wait_empty(path / "cgroup.procs")
            _rmdir(path)


class V2(Cgroup):
    version = 2

    @property
    def dir(self) -> Path:
        return self.root / self.path.lstrip("/")

    def create(self, resources: Mapping[str, Any]) -> None:
        """mkdir each level, enabling our controllers in every ancestor's subtree_control on the way down."""
        node = self.root
        for part in Path(self.path.lstrip("/")).parts:
            available = set(_read(node / "cgroup.controllers").split())
            enabled = set(_read(node / "cgroup.subtree_control").split())
            wanted = [c for c in V2_CONTROLLERS if c in available and c not in enabled]
            if wanted:
                _write(node / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
            node = node / part
            node.mkdir(exist_ok=True)
        self.set(resources)

    def set(self, resources: Mapping[str, Any]) -> None:
        mem = resources.get("memory") or {}
        limit, swap = mem.get("limit"), mem.get("swap")
        if limit is not None:
            _write(self.dir / "memory.max", "max" if limit == -1 else limit)
        if swap is not None:
            # OCI swap is memory+swap (the v1 memsw meaning); v2 limits swap alone.
            only_swap = "max" if swap == -1 or limit in (None, -1) else max(swap - limit, 0)
            _write(self.dir / "memory.swap.max", only_swap)
        if mem.get("reservation") is not None:
            _write(self.dir / "memory.low", mem["reservation"])
        cpu = resources.get("cpu") or {}
        if cpu.get("shares"):
            _write(self.dir / "cpu.weight", shares_to_weight(cpu["shares"]))
        if cpu.get("quota") is not None or cpu.get("period") is not None:
            quota = cpu.get("quota")
            _write(
                self.dir / "cpu.max",
                f"{'max' if quota is None or quota <= 0 else quota} {cpu.get('period') or 100000}",
            )
        for key in ("cpus", "mems"):
            if cpu.get(key):
                _write(self.dir / f"cpuset.{key}", cpu[key])
        pids = (resources.get("pids") or {}).get("limit")
        if pids is not None:
            _write(self.dir / "pids.max", "max" if pids <= 0 else pids)

    def add_process(self, pid: int) -> None:
        _write(self.dir / "cgroup.procs", pid)

    def pids(self) -> list[int]:
        procs = self.dir / "cgroup.procs"
        return [int(p) for p in _read(procs).split()] if procs.exists() else []

    def freeze(self) -> None:
        self._freeze("1")

    def thaw(self) -> None:
        self._freeze("0")

    def _freeze(self, value: str, timeout: float = 5.0) -> None:
        _write(self.dir / "cgroup.freeze", value)
        events = self.dir / "cgroup.events"
        if not _poll(
            lambda: not events.exists() or str(_keyed(events).get("frozen", value)) == value, timeout
        ):
            raise OSError(errno.EBUSY, f"cgroup {self.path}: cgroup.freeze={value} did not take effect")

    def stats(self) -> Stats:
        def num(name: str) -> int:
            path = self.dir / name
            return int(_read(path)) if path.exists() else 0

        cpu = self.dir / "cpu.stat"
        usage = _keyed(cpu).get("usage_usec", 0) * 1000 if cpu.exists() else 0
        limit = self.dir / "memory.max"
        memory_stat = self.dir / "memory.stat"
        read = written = 0
        if (self.dir / "io.stat").exists():
            for line in _read(self.dir / "io.stat").splitlines():  # "8:0 rbytes=4096 wbytes=0 rios=1 ..."
                fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
                read += int(fields.get("rbytes", 0))
                written += int(fields.get("wbytes", 0))
        return Stats(
            num("memory.current"),
            usage,
            num("pids.current"),
            memory_limit=int(_read(limit)) if limit.exists() and _read(limit) != "max" else 0,
            inactive_file=_keyed(memory_stat).get("inactive_file", 0) if memory_stat.exists() else 0,
            io_read_bytes=read,
            io_write_bytes=written,
        )

    def oom_killed(self) -> bool:
        events = self.dir / "memory.events"
        return events.exists() and _keyed(events).get("oom_kill", 0) > 0

    def exists(self) -> bool:
        return self.dir.is_dir()

    def delete(self) -> None:
        if not self.exists():
            return
        if (self.dir / "cgroup.kill").exists():  # Linux 5.14+: kills the whole subtree atomically
            _write(self.dir / "cgroup.kill", 1)
        else:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        _wait_empty(self.dir / "cgroup.procs")
        _rmdir(self.dir)


def detect(root: Path = DEFAULT_ROOT) -> type[Cgroup]:
    """cgroup v2 when the root is the unified hierarchy (it has cgroup.controllers), else v1."""
    return V2 if (root / "cgroup.controllers").exists() else V1


def open_cgroup(path: str, root: Path = DEFAULT_ROOT, version: int | None = None) -> Cgroup:
    cls = {1: V1, 2: V2}[version] if version else detect(root)
    return cls(path, root)
