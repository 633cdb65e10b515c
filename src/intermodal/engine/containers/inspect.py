"""`inspect` for containers: Docker Engine API's `ContainerInspect` (GET /containers/{id}/json), built from
the record and the container's files, so scripts written against `docker inspect` read the same keys."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from intermodal.engine.containers.record import ContainerRecord
from intermodal.engine.containers.service import ContainerService
from intermodal.errors import IntermodalError
from intermodal.image.snapshots import chain_ids
from intermodal.isolation import oci
from intermodal.isolation.microvm import BUNDLE_INFO


def inspect(svc: ContainerService, record: ContainerRecord) -> dict[str, Any]:
    paths = svc.paths(record.id)
    command = list(record.config.get("Entrypoint") or []) + list(record.config.get("Cmd") or [])
    out = {
        "Id": record.id,
        "Created": record.created,
        "Path": command[0] if command else "",
        "Args": command[1:],
        "State": dict(record.state),
        "Image": record.image,
        "ResolvConfPath": str(paths.resolv),
        "HostnamePath": str(paths.hostname),
        "HostsPath": str(paths.hosts),
        "LogPath": str(paths.log),
        "Name": f"/{record.name}",
        "RestartCount": record.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,  # execs are not tracked: each one lives as long as its `exec` command
        "HostConfig": dict(record.host_config),
        "GraphDriver": {"Name": "overlay2", "Data": _graph_data(svc, record)},
        "Mounts": [dict(m) for m in record.mounts],
        "Config": dict(record.config),
        "NetworkSettings": svc.networks.settings(record),
    }
    if record.runtime == oci.VM:  # not Docker's: the micro-VM's accelerator, guest kernel, RAM and vCPUs
        out["VM"] = {"Isolation": "vm"}
        with contextlib.suppress(OSError, ValueError):  # known once it was started
            out["VM"] = json.loads((paths.bundle / BUNDLE_INFO).read_text())
    return out


def _graph_data(svc: ContainerService, record: ContainerRecord) -> dict[str, str]:
    """Docker's overlay2 keys: LowerDir top layer first (the init layer on top, as Docker's "-init")."""
    paths = svc.paths(record.id)
    lowers: list[str] = []
    with contextlib.suppress(IntermodalError):
        config = svc.images.config(svc.images.get(record.image))
        lowers = [str(svc.snapshots.layer_dir(c)) for c in reversed(chain_ids(config.diff_ids))]
    return {
        "LowerDir": ":".join([str(paths.init), *lowers]),
        "MergedDir": str(paths.rootfs),
        "UpperDir": str(paths.upper),
        "WorkDir": str(paths.work),
    }
