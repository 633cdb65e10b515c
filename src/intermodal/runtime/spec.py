"""Build Docker-like OCI runtime configs (config.md, config-linux.md). Pure: no libc, no I/O but getrlimit.

Every `docker run` flag the engine supports maps to one keyword of `default_spec`, so the engine never edits
the JSON by hand.
"""

from __future__ import annotations

import resource
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from intermodal.errors import InvalidArgument
from intermodal.runtime import capabilities, seccomp

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RLIM_INFINITY = 2**64 - 1

MASKED_PATHS = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
NAMESPACES = ("pid", "network", "ipc", "uts", "mount", "cgroup")

# Device nodes every container may use (runc libcontainer/specconv AllowedDevices); `mknod` of any is allowed.
_ALLOWED_DEVICES = [
    ("c", None, None, "m"), ("b", None, None, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"), ("c", 1, 8, "rwm"), ("c", 1, 9, "rwm"),
    ("c", 5, 0, "rwm"), ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"), ("c", 136, None, "rwm"),
]  # fmt: skip

RLIMIT_NAMES = ("AS", "CORE", "CPU", "DATA", "FSIZE", "MEMLOCK", "MSGQUEUE", "NICE", "NOFILE", "NPROC",
            "RSS", "RTPRIO", "SIGPENDING", "STACK")  # fmt: skip


def _oci_limit(value: int) -> int:
    return RLIM_INFINITY if value == resource.RLIM_INFINITY or value < 0 else value


def caller_rlimits(overrides: Mapping[str, tuple[int, int]] | None = None) -> list[dict[str, Any]]:
    """The caller's current limits (a container inherits them, like a process), with `--ulimit` overrides.

    Copying them rather than inventing values (Docker's old nofile=1048576) keeps the runtime from asking
    for more than the caller's hard limit, which fails without CAP_SYS_RESOURCE.
    """
    over = {k.upper().removeprefix("RLIMIT_"): v for k, v in (overrides or {}).items()}
    unknown = set(over) - set(RLIMIT_NAMES)
    if unknown:
        raise InvalidArgument(
            f"unknown ulimit {sorted(unknown)[0]!r}: use one of {', '.join(RLIMIT_NAMES).lower()}"
        )
    out = []
    for name in RLIMIT_NAMES:
        soft, hard = over.get(name) or resource.getrlimit(getattr(resource, f"RLIMIT_{name}"))
        out.append({"type": f"RLIMIT_{name}", "soft": _oci_limit(soft), "hard": _oci_limit(hard)})
    return out


def default_mounts(*, privileged: bool = False, cgroup: bool = True) -> list[dict[str, Any]]:
    """Docker's default mounts (moby oci/defaults.go)."""
    ro = [] if privileged else ["ro"]
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", *ro]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    ]  # fmt: skip
    if cgroup:
        mounts.insert(4, {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                          "options": ["nosuid", "noexec", "nodev", "relatime", *ro]})  # fmt: skip
    return mounts


def bind_mount(source: str, destination: str, *, readonly: bool = False) -> dict[str, Any]:
    """A `-v source:destination[:ro]` volume: recursive bind, like Docker's default (rprivate)."""
    opts = ["rbind", "rprivate", *(["ro"] if readonly else [])]
    return {"destination": destination, "type": "bind", "source": source, "options": opts}


def resolve_caps(
    cap_add: Iterable[str] = (), cap_drop: Iterable[str] = (), *, privileged: bool = False
) -> list[str]:
    """Docker's --cap-add/--cap-drop arithmetic: 'ALL' is allowed on either side; drops win over defaults."""
    adds = {c.upper() for c in cap_add}
    drops = {c.upper() for c in cap_drop}
    if privileged or "ALL" in adds:
        base = set(capabilities.bounding_set())
    elif "ALL" in drops:
        base = set()
    else:
        base = set(capabilities.DOCKER_DEFAULT)
    base |= {capabilities.normalize(c) for c in adds - {"ALL"}}
    base -= {capabilities.normalize(c) for c in drops - {"ALL"}}
    return sorted(base, key=capabilities.NUMBERS.__getitem__)


def resources(
    *,
    memory: int | None = None,
    memory_swap: int | None = None,
    memory_reservation: int | None = None,
    cpu_shares: int | None = None,
    cpus: float | None = None,
    cpu_quota: int | None = None,
    cpu_period: int | None = None,
    cpuset_cpus: str | None = None,
    cpuset_mems: str | None = None,
    pids_limit: int | None = None,
    devices: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """`linux.resources` from Docker's flags. memory_swap is Docker's --memory-swap: memory + swap, -1 = no limit;
    unset with --memory means swap equal to memory (total 2x), as Docker does."""
    res: dict[str, Any] = {"devices": list(devices) if devices is not None else _device_rules()}
    mem: dict[str, int] = {}
    if memory is not None:
        mem["limit"] = memory
        mem["swap"] = memory_swap if memory_swap is not None else 2 * memory
    elif memory_swap is not None:
        raise InvalidArgument("--memory-swap needs --memory: set both, or only --memory")
    if memory_reservation is not None:
        mem["reservation"] = memory_reservation
    if mem:
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    if cpus is not None:
        cpu_period = cpu_period or 100_000
        cpu_quota = int(cpus * cpu_period)
    for key, value in (("shares", cpu_shares), ("quota", cpu_quota), ("period", cpu_period),
                       ("cpus", cpuset_cpus), ("mems", cpuset_mems)):  # fmt: skip
        if value is not None:
            cpu[key] = value
    if cpu:
        res["cpu"] = cpu
    if pids_limit is not None:
        res["pids"] = {"limit": pids_limit}
    return res


def _device_rules(privileged: bool = False) -> list[dict[str, Any]]:
    if privileged:
        return [{"allow": True, "access": "rwm"}]
    rules: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for kind, major, minor, access in _ALLOWED_DEVICES:
        rule: dict[str, Any] = {"allow": True, "type": kind, "access": access}
        if major is not None:
            rule["major"] = major
        if minor is not None:
            rule["minor"] = minor
        rules.append(rule)
    return rules


def default_spec(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str = "/",
    uid: int = 0,
    gid: int = 0,
    additional_gids: Sequence[int] = (),
    hostname: str | None = None,
    terminal: bool = False,
    rootfs: str = "rootfs",
    read_only: bool = False,
    privileged: bool = False,
    cap_add: Iterable[str] = (),
    cap_drop: Iterable[str] = (),
    no_new_privileges: bool = True,
    seccomp_profile: Mapping[str, Any] | None | str = "default",
    ulimits: Mapping[str, tuple[int, int]] | None = None,
    mounts: Sequence[Mapping[str, Any]] = (),
    linux_resources: Mapping[str, Any] | None = None,
    cgroups_path: str | None = None,
    namespaces: Mapping[str, str | None] | None = None,
    annotations: Mapping[str, str] | None = None,
    id_mappings: Mapping[str, Sequence[Mapping[str, int]]] | None = None,
) -> dict[str, Any]:
    """A complete config.json for `args`, secure by default like `docker run` (caps, seccomp, masked paths).

    `seccomp_profile`: "default" (Docker-like), None (unconfined) or an OCI `linux.seccomp` object.
    `namespaces`: type -> path to join an existing one (`--network container:X`), or None to drop it.
    `linux_resources`: the output of `resources(...)`.
    `id_mappings`: {"uidMappings": [...], "gidMappings": [...]} (config-linux.md "User namespace mappings":
    containerID, hostID, size) puts the container in a new user namespace with those maps.
    """
    if not args:
        raise InvalidArgument("no command given: pass the program to run, e.g. ['sh']")
    environ = {"PATH": DEFAULT_PATH, **(env or {})}
    if terminal:
        environ.setdefault("TERM", "xterm")
    caps = resolve_caps(cap_add, cap_drop, privileged=privileged)
    res = dict(linux_resources or resources())
    if privileged:
        res["devices"] = _device_rules(privileged=True)
    ns_list = []
    for kind in NAMESPACES:
        path = (namespaces or {}).get(kind, "")
        if path is None:
            continue
        ns_list.append({"type": kind, **({"path": path} if path else {})})
    for kind, path in (namespaces or {}).items():
        if kind not in NAMESPACES and path is not None:
            ns_list.append({"type": kind, **({"path": path} if path else {})})
    linux: dict[str, Any] = {"namespaces": ns_list, "resources": res}
    if id_mappings:
        ns_list.insert(0, {"type": "user"})
        linux["uidMappings"] = [dict(m) for m in id_mappings.get("uidMappings") or []]
        linux["gidMappings"] = [dict(m) for m in id_mappings.get("gidMappings") or []]
    if cgroups_path:
        linux["cgroupsPath"] = cgroups_path
    if not privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        if seccomp_profile is not None:
            linux["seccomp"] = (
                seccomp.default_profile() if isinstance(seccomp_profile, str) else dict(seccomp_profile)
            )
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": terminal,
            "user": {
                "uid": uid,
                "gid": gid,
                **({"additionalGids": list(additional_gids)} if additional_gids else {}),
            },
            "args": list(args),
            "env": [f"{k}={v}" for k, v in environ.items()],
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": caller_rlimits(ulimits),
            "noNewPrivileges": no_new_privileges,
        },
        "root": {"path": rootfs, "readonly": read_only},
        "mounts": [*default_mounts(privileged=privileged), *mounts],
        "linux": linux,
    }
    if hostname:
        spec["hostname"] = hostname
    if annotations:
        spec["annotations"] = dict(annotations)
    return spec


def add_device(spec: dict[str, Any], path: str, *, kind: str, major: int, minor: int, file_mode: int,
               uid: int, gid: int, access: str) -> None:  # fmt: skip
    """A device node in the container (config-linux.md "Devices") and the cgroup rule that lets it be used
    with `access` (r, w, m), as `--device` does."""
    linux = spec["linux"]
    linux.setdefault("devices", []).append(
        {
            "path": path,
            "type": kind,
            "major": major,
            "minor": minor,
            "fileMode": file_mode,
            "uid": uid,
            "gid": gid,
        }
    )
    linux["resources"].setdefault("devices", []).append(
        {"allow": True, "type": kind, "major": major, "minor": minor, "access": access}
    )


def set_shm(spec: dict[str, Any], ipc_mode: str, size: int, shared: str = "/dev/shm") -> None:
    """/dev/shm as Docker makes it: a tmpfs of `size` bytes in a private IPC namespace, none with --ipc none,
    and a bind of `shared` (the host's /dev/shm, or the joined container's) with --ipc host|container:X."""
    mounts = spec["mounts"]
    at = next(i for i, m in enumerate(mounts) if m["destination"] == "/dev/shm")
    if ipc_mode == "host" or ipc_mode.startswith("container:"):
        mounts[at] = {
            "destination": "/dev/shm",
            "type": "bind",
            "source": shared,
            "options": ["rbind", "rprivate"],
        }
    elif ipc_mode == "none":
        del mounts[at]
    else:
        mounts[at]["options"] = [
            *(o for o in mounts[at]["options"] if not o.startswith("size=")),
            f"size={size // 1024}k",
        ]
