"""`system reset`: give a state root back empty, host state included (Podman's `system reset`).

Every container is removed first (its processes, mounts and cgroups go the usual way), then the root's
networks take their bridges, nftables table and resolver down, then everything under the root is deleted
except the engine config. Mounts still under the root are unmounted before anything is deleted."""

from __future__ import annotations

from pathlib import Path

from intermodal.engine.containers.service import ContainerService
from intermodal.engine.networks import NetworkService
from intermodal.engine.teardown import remove_tree
from intermodal.errors import IntermodalError

KEEP = ("config.json",)


def reset(root: Path) -> None:
    if not root.is_dir():
        return
    containers = ContainerService(root)
    errors = containers.for_each([r.id for r in containers.containers(all_containers=True)],
                                 lambda cid: containers.remove(cid, force=True))  # fmt: skip
    if errors:
        raise IntermodalError(f"system reset: {errors[0]}; nothing else was removed, run it again")
    NetworkService(root).reset()
    for entry in sorted(root.iterdir()):
        if entry.name in KEEP:
            continue
        if entry.is_dir() and not entry.is_symlink():
            if not remove_tree(entry):
                raise IntermodalError(
                    f"system reset: {entry} still has mounts under it: unmount them and retry"
                )
        else:
            entry.unlink()
