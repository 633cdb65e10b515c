"""Removing what nothing uses: unused volumes, and everything at once for `system prune`.

Docker's order (daemon prune routes): stopped containers first, so that what only they used becomes
unused; then networks, volumes (only with --volumes, and only anonymous ones as in Docker 23+), images
(dangling, or every unused one with -a) and the build cache (dangling entries, or all with -a)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intermodal.engine.containers.service import ContainerService
from intermodal.errors import IntermodalError
from intermodal.fsutil import tree_size

ANONYMOUS = "com.docker.volume.anonymous"


@dataclass
class Pruned:
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    build_cache: int = 0
    reclaimed: int = 0


def unused_volumes(
    containers: ContainerService,
    *,
    all_volumes: bool,
    matches: Callable[[dict[str, Any]], bool] = lambda m: True,
) -> tuple[list[str], int]:
    """Remove the volumes no container (even a stopped one) uses: anonymous ones only unless `all_volumes`.
    Returns their names and the bytes reclaimed."""
    removed, reclaimed = [], 0
    for name in containers.volumes.names():
        meta = containers.volumes.inspect(name)
        if not all_volumes and ANONYMOUS not in meta["Labels"]:
            continue
        if containers.volume_users(name) or not matches(meta):
            continue
        size = tree_size(containers.volumes.data_dir(name))
        try:
            containers.volumes.remove(name, in_use_by=containers.volume_users(name))
        except IntermodalError:
            continue  # taken by a container meanwhile
        removed.append(name)
        reclaimed += size
    return removed, reclaimed


def system(root: Path, *, all_images: bool, volumes: bool) -> Pruned:
    from intermodal.engine.build.cache import BuildCache
    from intermodal.engine.images import ImageService
    from intermodal.engine.networks import NetworkService
    from intermodal.image.store import ImageStore

    containers = ContainerService(root)
    pruned = Pruned(containers=containers.prune())
    networks = NetworkService(root)
    networks.gc()
    pruned.networks = networks.prune()
    if volumes:
        pruned.volumes, pruned.reclaimed = unused_volumes(containers, all_volumes=False)
    pruned.images, image_bytes = ImageService(root).prune(all_images=all_images)
    pruned.build_cache, cache_bytes = BuildCache(root, ImageStore(root / "images")).prune(
        all_entries=all_images
    )
    pruned.reclaimed += image_bytes + cache_bytes
    return pruned
