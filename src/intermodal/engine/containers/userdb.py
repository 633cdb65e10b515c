"""Resolve `--user name[:group]` against the container's own /etc/passwd and /etc/group, read safely:
the rootfs is untrusted, so its files are opened inside it (symlinks cannot point at the host's)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from intermodal.errors import InvalidArgument
from intermodal.runtime.rootfs import open_in_root


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"


def read_in_root(rootfs: str, path: str, limit: int = 1 << 20) -> str:
    """Text of `path` inside `rootfs`, or '' if it does not exist (never a host file)."""
    try:
        fd = open_in_root(rootfs, path)
    except OSError:
        return ""
    try:
        with open(f"/proc/self/fd/{fd}", "rb") as f:
            return f.read(limit).decode(errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


def _table(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(rootfs: str, spec: str) -> User:
    """Docker's rules: numeric IDs need no entry; names must exist in the image; the primary group comes
    from passwd unless given; supplementary groups are those listing the user in /etc/group."""
    name, _, group = (spec or "0").partition(":")
    passwd = _table(read_in_root(rootfs, "/etc/passwd"))
    entry = next(
        (p for p in passwd if len(p) >= 4 and (p[0] == name or (name.isdigit() and p[2] == name))), None
    )
    if name.isdigit():
        uid = int(name)
    elif entry:
        uid = int(entry[2])
    else:
        raise InvalidArgument(f"unable to find user {name}: no matching entries in the image's /etc/passwd")
    gid = int(entry[3]) if entry and entry[3].isdigit() else 0
    groups = _table(read_in_root(rootfs, "/etc/group"))
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            match = next((g for g in groups if len(g) >= 3 and g[0] == group), None)
            if not match:
                raise InvalidArgument(
                    f"unable to find group {group}: no matching entries in the image's /etc/group"
                )
            gid = int(match[2])
    username = entry[0] if entry else ""
    extra = []
    for g in groups:
        with contextlib.suppress(ValueError, IndexError):
            if username and username in g[3].split(",") and int(g[2]) != gid:
                extra.append(int(g[2]))
    home = entry[5] if entry and len(entry) > 5 and entry[5] else "/"
    return User(uid, gid, tuple(extra), home)


def resolve_groups(rootfs: str, groups: list[str]) -> list[int]:
    """`--group-add`: numeric GIDs as given, names looked up in the image's /etc/group (Docker's rule)."""
    table = _table(read_in_root(rootfs, "/etc/group")) if any(not g.isdigit() for g in groups) else []
    gids = []
    for group in groups:
        match = None if group.isdigit() else next((g for g in table if len(g) >= 3 and g[0] == group), None)
        if not group.isdigit() and not match:
            raise InvalidArgument(
                f"unable to find group {group}: no matching entries in the image's /etc/group"
            )
        gids.append(int(group) if group.isdigit() else int(match[2]))  # type: ignore[index]
    return gids
