"""Capability names <-> numbers and applying the five OCI capability sets (config.md "capabilities")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from intermodal.errors import InvalidArgument
from intermodal.runtime import sys as _sys

# <linux/capability.h>, in number order.
NAMES = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
]
NUMBERS = {f"CAP_{name}": i for i, name in enumerate(NAMES)}
ALL = tuple(NUMBERS)

# Docker's default set (moby oci/caps/defaults.go).
DOCKER_DEFAULT = tuple(
    f"CAP_{n}"
    for n in [
        "CHOWN",
        "DAC_OVERRIDE",
        "FSETID",
        "FOWNER",
        "MKNOD",
        "NET_RAW",
        "SETGID",
        "SETUID",
        "SETFCAP",
        "SETPCAP",
        "NET_BIND_SERVICE",
        "SYS_CHROOT",
        "KILL",
        "AUDIT_WRITE",
    ]
)


def bounding_set() -> tuple[str, ...]:
    """The capabilities we may hand out at all: `--privileged` means "all of ours", as dockerd gives all of
    its own (a root shell without CAP_SYS_RESOURCE cannot grant it, and capset would fail)."""
    try:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith("CapBnd:"))
    except (OSError, StopIteration):
        return ALL
    bits = int(line.split()[1], 16)
    return tuple(name for name, number in NUMBERS.items() if bits >> number & 1)


def normalize(name: str) -> str:
    """'net_admin', 'NET_ADMIN' and 'CAP_NET_ADMIN' all name the same capability (Docker accepts each)."""
    up = name.upper()
    full = up if up.startswith("CAP_") else f"CAP_{up}"
    if full not in NUMBERS:
        raise InvalidArgument(f"unknown capability {name!r}: use a name like CAP_NET_ADMIN")
    return full


def mask(names: Iterable[str]) -> int:
    bits = 0
    for name in names:
        bits |= 1 << NUMBERS[normalize(name)]
    return bits


def last_cap() -> int:
    """The running kernel's highest capability; newer kernels may know more than our table."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(NAMES) - 1


def apply_bounding(caps: Mapping[str, list[str]]) -> None:
    """Drop from the bounding set everything not listed; must run while we still hold CAP_SETPCAP."""
    keep = mask(caps.get("bounding", []))
    for cap in range(last_cap() + 1):
        if not keep & (1 << cap):
            _sys.capbset_drop(cap)


def apply_sets(caps: Mapping[str, list[str]]) -> None:
    """Set effective/permitted/inheritable, then ambient (ambient caps must be permitted and inheritable)."""
    _sys.capset(
        mask(caps.get("effective", [])), mask(caps.get("permitted", [])), mask(caps.get("inheritable", []))
    )
    _sys.ambient_clear()
    for name in caps.get("ambient", []):
        _sys.ambient_raise(NUMBERS[normalize(name)])
