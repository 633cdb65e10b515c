"""User namespaces: writing a namespace's ID maps, and a namespace fd for idmapped mounts.

The maps are config-linux.md "User namespace mappings" (`linux.uidMappings` / `gidMappings`: containerID,
hostID, size). A process cannot map IDs other than its own into a namespace it is in, so the runtime's
parent (host root, in the parent namespace) writes /proc/<child>/uid_map and gid_map after the child has
unshared, as runc's nsexec does. setgroups stays "allow": only a rootless runtime without newgidmap has to
deny it, and we run as root.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from intermodal.runtime import sys as _sys

IdMap = Mapping[str, Any]


def map_text(mappings: Sequence[IdMap]) -> str:
    """[{"containerID": 0, "hostID": 100000, "size": 65536}] -> "0 100000 65536\\n" (uid_map's format)."""
    return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings)


def write_maps(pid: int, uid_mappings: Sequence[IdMap], gid_mappings: Sequence[IdMap]) -> None:
    """Give the user namespace of `pid` its maps (each file can be written once)."""
    for name, mappings in (("uid_map", uid_mappings), ("gid_map", gid_mappings)):
        if mappings:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(map_text(mappings))


def to_host(container_id: int, mappings: Sequence[IdMap]) -> int | None:
    """The host ID a container ID maps to, or None if it is not mapped."""
    for m in mappings:
        if m["containerID"] <= container_id < m["containerID"] + m["size"]:
            return int(m["hostID"]) + container_id - int(m["containerID"])
    return None


def namespace_fd(uid_mappings: Sequence[IdMap], gid_mappings: Sequence[IdMap]) -> int:
    """An fd of a new user namespace with these maps (for mount_setattr's MOUNT_ATTR_IDMAP).

    A child unshares CLONE_NEWUSER and says so; we write its maps, open /proc/<child>/ns/user and let it go.
    The fd keeps the namespace alive after the child is gone. The caller closes it."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready_r)
            os.close(done_w)
            _sys.unshare(_sys.CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(done_r, 1)  # EOF once the parent has opened our namespace
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError("the user namespace helper died before unsharing")
        write_maps(pid, uid_mappings, gid_mappings)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)  # the child reads EOF and exits
        os.waitpid(pid, 0)
