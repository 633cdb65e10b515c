"""`stats`: live resource usage from the container's cgroup counters, computed as Docker's CLI does
(cli/command/container/stats_helpers.go): CPU % from two samples (container CPU time over host CPU time,
times the number of CPUs), memory without the reclaimable page cache, the limit capped at the host's RAM,
network I/O from the container's own network namespace (its interfaces other than lo).
A micro-VM's cgroup holds its shim, QEMU and virtiofsd: its memory is theirs on the host, its limit the
guest's RAM, and its network namespace is QEMU's (the shim, its PID, stays in the host's)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from intermodal.engine.containers.record import PAUSED, RUNNING, ContainerRecord
from intermodal.errors import IntermodalError
from intermodal.isolation import oci
from intermodal.isolation.microvm import BUNDLE_INFO
from intermodal.runtime.cgroups import Stats, open_cgroup


@dataclass(frozen=True)
class Sample:
    """One reading of a container's counters and of the host's CPU time, for the CPU % between two."""

    stats: Stats
    system_ns: int
    net_rx: int = 0
    net_tx: int = 0
    guest_memory: int = 0  # a micro-VM's RAM, its memory limit


@dataclass(frozen=True)
class Usage:
    cpu_percent: float
    memory: int
    memory_limit: int
    memory_percent: float
    io_read: int
    io_write: int
    pids: int
    net_rx: int
    net_tx: int


def sample(record: ContainerRecord, bundle: Path | None = None) -> Sample:
    """`bundle`: the container's, where a micro-VM's runtime notes its guest RAM."""
    stats, rx, tx = Stats(0, 0, 0), 0, 0
    if record.status in (RUNNING, PAUSED):
        try:
            cgroup = open_cgroup(f"intermodal/{record.id}")
            stats = cgroup.stats()
            if record.host_config.get("NetworkMode") != "host":  # Docker shows none for the host's network
                for member in _netns_members([int(record.state.get("Pid") or 0), *cgroup.pids()]):
                    rx, tx = (a + b for a, b in zip((rx, tx), _network_bytes(member), strict=True))
        except (OSError, ValueError, IntermodalError):
            pass  # it stopped between the status check and the read: all zero, as Docker shows
    return Sample(stats, _system_cpu_ns(), rx, tx, _guest_memory(record, bundle))


def _netns_members(pids: list[int]) -> list[int]:
    """One of `pids` in each network namespace they are in but ours: the container's (with a micro-VM,
    QEMU's; each virtiofsd has one of its own, with only lo)."""
    seen = {os.stat("/proc/self/ns/net").st_ino}
    members = []
    for pid in pids:
        with contextlib.suppress(OSError):
            ns = os.stat(f"/proc/{pid}/ns/net").st_ino if pid else 0
            if ns and ns not in seen:
                seen.add(ns)
                members.append(pid)
    return members


def _guest_memory(record: ContainerRecord, bundle: Path | None) -> int:
    if record.runtime != oci.VM or bundle is None:
        return 0
    try:
        return int(json.loads((bundle / BUNDLE_INFO).read_text())["MemoryMiB"]) << 20
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _network_bytes(pid: int) -> tuple[int, int]:
    """Bytes received and sent by the interfaces of `pid`'s network namespace, loopback left out."""
    rx = tx = 0
    with open(f"/proc/{pid}/net/dev") as f:
        for line in f.readlines()[
            2:
        ]:  # two header lines, then "name: rx_bytes ... (8 rx fields) tx_bytes ..."
            name, _, counters = line.partition(":")
            if name.strip() != "lo":
                fields = counters.split()
                rx, tx = rx + int(fields[0]), tx + int(fields[8])
    return rx, tx


def usage(before: Sample, after: Sample) -> Usage:
    cpu_delta = after.stats.cpu_ns - before.stats.cpu_ns
    system_delta = after.system_ns - before.system_ns
    cpu = (
        cpu_delta / system_delta * (os.cpu_count() or 1) * 100 if cpu_delta > 0 and system_delta > 0 else 0.0
    )
    s = after.stats
    memory = s.memory_bytes - s.inactive_file if s.inactive_file < s.memory_bytes else s.memory_bytes
    host = _host_memory()
    limit = min(s.memory_limit, host) if s.memory_limit else host
    if after.guest_memory:
        limit = after.guest_memory
    return Usage(
        cpu_percent=cpu,
        memory=memory,
        memory_limit=limit,
        memory_percent=memory / limit * 100 if limit else 0.0,
        io_read=s.io_read_bytes,
        io_write=s.io_write_bytes,
        pids=s.pids,
        net_rx=after.net_rx,
        net_tx=after.net_tx,
    )


def measure(records: list[ContainerRecord], bundles: list[Path], interval: float = 1.0) -> list[Usage]:
    """Docker's `--no-stream`: two samples `interval` apart, so the CPU % means something; `bundles`: the
    records' bundle directories."""
    before = [sample(r, bundle) for r, bundle in zip(records, bundles, strict=True)]
    time.sleep(interval)
    return [usage(b, sample(r, bundle)) for b, r, bundle in zip(before, records, bundles, strict=True)]


def _system_cpu_ns() -> int:
    """The host's total CPU time (the first line of /proc/stat, in clock ticks), in ns as Docker's daemon
    reports `system_cpu_usage`."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(v) for v in fields) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def _host_memory() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0
