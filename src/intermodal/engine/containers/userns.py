"""`--userns=auto`: a private user namespace per container with its own range of host IDs.

Podman takes ranges from the "containers" entries of /etc/subuid and /etc/subgid; we use a fixed engine pool
instead: range k is host IDs POOL_START + k*RANGE_SIZE .. +RANGE_SIZE-1 (uid and gid alike), container IDs
0..65535 map onto it. The allocation is stored in the container record (`id_mappings`, in OCI's
linux.uidMappings/gidMappings shape) and picked under `locks/userns.lock` while the record is published, so
two existing containers never hold the same range; `rm` deletes the record and so frees the range.

The image's unpacked layers are shared, root-owned and never chowned: the container's overlay is mounted on
idmapped views of them (bundle.mount_rootfs), and only the container's own upper dir, /etc files and fresh
volumes are given to the range's root.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from intermodal.engine.containers.record import ContainerRecord, ContainerStore
from intermodal.errors import Conflict
from intermodal.fsutil import file_lock

POOL_START = 100_000
RANGE_SIZE = 65_536
POOL_RANGES = (2**32 - 1 - POOL_START) // RANGE_SIZE  # every range below the invalid ID 4294967295
PRIVATE_MODES = ("auto", "private")


def mappings(host_start: int) -> dict[str, Any]:
    one = [{"containerID": 0, "hostID": host_start, "size": RANGE_SIZE}]
    return {"uidMappings": one, "gidMappings": [dict(m) for m in one]}


def host_root(record: ContainerRecord) -> int | None:
    """The host ID the container's root maps to (None: the container shares the host's user namespace)."""
    uid_maps = record.id_mappings.get("uidMappings") or []
    return int(uid_maps[0]["hostID"]) if uid_maps else None


def container_ids(record: ContainerRecord) -> Callable[[int], int] | None:
    """Host ID -> the ID the container sees (the overflow ID 65534 outside its range); None without a
    private user namespace. For archives of its files (`cp` out, `export`), which keep the owners it sees."""
    first = host_root(record)
    if first is None:
        return None
    return lambda host_id: host_id - first if first <= host_id < first + RANGE_SIZE else 65534


@contextlib.contextmanager
def allocate(root: Path, store: ContainerStore, record: ContainerRecord) -> Iterator[None]:
    """Give `record` the lowest free range; the caller publishes it inside the block (under the pool lock)."""
    with file_lock(root / "locks" / "userns.lock"):
        used = {host_root(r) for r in store.all()}
        for k in range(POOL_RANGES):
            start = POOL_START + k * RANGE_SIZE
            if start not in used:
                break
        else:
            raise Conflict(f"no free user namespace range: all {POOL_RANGES} are in use; remove containers")
        record.id_mappings = mappings(start)
        yield
