"""`run`/`create` options and how they combine with the image config into Docker's Config and HostConfig.

Validation happens here, before anything is written, so bad input never leaves a half-made container.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any

from intermodal.errors import InvalidArgument
from intermodal.net.ports import parse_publish

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
MIN_MEMORY = 6 * 1024 * 1024  # Docker's minimum: below this the container cannot even start its init


@dataclass
class RunOptions:
    image: str
    command: list[str] = field(default_factory=list)
    entrypoint: str | None = None  # None: the image's; "": reset it
    env: list[str] = field(default_factory=list)
    env_files: list[str] = field(default_factory=list)
    workdir: str = ""
    user: str = ""
    hostname: str = ""
    labels: list[str] = field(default_factory=list)
    name: str = ""
    tty: bool = False
    console_size: tuple[int, int] = (
        0,
        0,
    )  # rows, cols of the client's terminal, for -t (Docker's ConsoleSize)
    interactive: bool = False
    detach: bool = False
    auto_remove: bool = False
    init: bool = False
    stop_signal: str = ""
    stop_timeout: int | None = None
    restart: str = "no"
    memory: str = ""
    memory_swap: str = ""
    cpus: str = ""
    cpu_shares: int = 0
    pids_limit: int = 0
    cpuset_cpus: str = ""
    volumes: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    read_only: bool = False
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    runtime: str = ""
    isolation: str = ""  # "vm": run in a micro-VM (same as --runtime vm)
    vm_accel: str = ""
    vm_kernel: str = ""
    log_opts: list[str] = field(default_factory=list)
    ulimits: list[str] = field(default_factory=list)
    userns: str = ""
    pull: str = "missing"
    network: str = ""
    network_aliases: list[str] = field(default_factory=list)
    publish: list[str] = field(default_factory=list)
    publish_all: bool = False
    dns: list[str] = field(default_factory=list)
    add_hosts: list[str] = field(default_factory=list)
    mac_address: str = ""
    ip: str = ""
    devices: list[str] = field(default_factory=list)
    shm_size: str = ""
    sysctls: list[str] = field(default_factory=list)
    pid: str = ""
    ipc: str = ""
    uts: str = ""
    cgroupns: str = ""
    group_add: list[str] = field(default_factory=list)
    oom_score_adj: int = 0
    oom_kill_disable: bool = False
    memory_reservation: str = ""
    cpu_quota: int = 0
    cpu_period: int = 0
    expose: list[str] = field(default_factory=list)
    label_files: list[str] = field(default_factory=list)
    platform: str = ""
    log_driver: str = ""
    attach: list[str] = field(default_factory=list)


def parse_size(text: str, what: str) -> int:
    """Docker's RAMInBytes: `512m`, `1g`, `100k`, `1024b`, binary units."""
    m = _SIZE.match(text.strip())
    if not m:
        raise InvalidArgument(
            f"invalid {what} {text!r}: use a number with an optional unit (b, k, m, g), e.g. 512m"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _key_value_lines(paths: list[str], flag: str) -> list[str]:
    """The lines of `--env-file`/`--label-file` files, blank lines and # comments skipped (Docker's
    ReadKVStrings)."""
    lines: list[str] = []
    for path in paths:
        try:
            with open(path) as f:
                lines += [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
        except OSError as e:
            raise InvalidArgument(f"cannot read {flag} {path}: {e.strerror}") from None
    return lines


def parse_env(entries: list[str], env_files: list[str]) -> list[str]:
    """`-e K=V`, `-e K` (taken from our environment, dropped if unset) and `--env-file` lines."""
    out = [*_key_value_lines(env_files, "--env-file"), *entries]
    result: list[str] = []
    for entry in out:
        key, sep, _ = entry.partition("=")
        if not key or " " in key:
            raise InvalidArgument(f"invalid environment variable {entry!r}: expected KEY=VALUE")
        if not sep:
            if key in os.environ:
                result.append(f"{key}={os.environ[key]}")
            continue
        result.append(entry)
    return result


def merge_env(image_env: list[str], user_env: list[str]) -> list[str]:
    """User variables override the image's with the same name; order is image first, like Docker."""
    merged = {e.split("=", 1)[0]: e for e in image_env}
    for e in user_env:
        merged[e.split("=", 1)[0]] = e
    return list(merged.values())


def parse_labels(entries: list[str] | tuple[str, ...], what: str = "label") -> dict[str, str]:
    """KEY=VALUE flags (labels, driver options) into a dict; a bare KEY maps to ""."""
    labels = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what} {entry!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def parse_ulimit(flag: str) -> dict[str, Any]:
    """`--ulimit NAME=SOFT[:HARD]` (-1 for unlimited) into Docker's HostConfig.Ulimits entry."""
    from intermodal.runtime.spec import RLIMIT_NAMES

    name, _, values = flag.partition("=")
    soft, _, hard = values.partition(":")
    if name.upper() not in RLIMIT_NAMES:
        names = ", ".join(n.lower() for n in RLIMIT_NAMES)
        raise InvalidArgument(f"invalid --ulimit {flag!r}: unknown resource {name!r}: use one of {names}")
    try:
        limits = int(soft), int(hard or soft)
    except ValueError:
        raise InvalidArgument(
            f"invalid --ulimit {flag!r}: use NAME=SOFT[:HARD], e.g. nofile=1024:2048"
        ) from None
    if -1 not in limits and limits[0] > limits[1]:
        raise InvalidArgument(f"invalid --ulimit {flag!r}: the soft limit is above the hard one")
    return {"Name": name.lower(), "Soft": limits[0], "Hard": limits[1]}


def _log_driver(name: str) -> str:
    """conmon writes CRI's k8s-file format; json-file is taken as its alias, as Podman does. `none` keeps no
    log (and `logs` then refuses, as Docker's does)."""
    if name in ("", "k8s-file", "json-file"):
        return "k8s-file"
    if name == "none":
        return "none"
    raise InvalidArgument(f"invalid --log-driver {name!r}: use k8s-file (json-file is its alias) or none")


def parse_restart(policy: str) -> dict[str, Any]:
    name, _, count = policy.partition(":")
    if name not in ("no", "on-failure", "always", "unless-stopped"):
        raise InvalidArgument(
            f"invalid restart policy {policy!r}: use no, on-failure[:N], always or unless-stopped"
        )
    if count and (name != "on-failure" or not count.isdigit()):
        raise InvalidArgument(
            f"invalid restart policy {policy!r}: only on-failure takes a retry count (on-failure:3)"
        )
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def parse_expose(entries: list[str]) -> list[str]:
    """`--expose PORT[-END][/PROTO]` into ExposedPorts keys ("80/tcp"), as an image's EXPOSE."""
    ports = []
    for entry in entries:
        spec, _, proto = entry.partition("/")
        first, _, last = spec.partition("-")
        if not (first.isdigit() and (not last or last.isdigit()) and proto in ("", "tcp", "udp", "sctp")):
            raise InvalidArgument(f"invalid --expose {entry!r}: use PORT[-END][/tcp|udp|sctp], e.g. 8080/tcp")
        start, end = int(first), int(last or first)
        if not 0 < start <= end <= 65535:
            raise InvalidArgument(f"invalid --expose {entry!r}: ports are 1-65535, the range in order")
        ports += [f"{port}/{proto or 'tcp'}" for port in range(start, end + 1)]
    return ports


def container_config(opts: RunOptions, image_config: dict[str, Any], cid: str) -> dict[str, Any]:
    """Docker's `Config`: image defaults overridden by the user's flags (entrypoint/cmd rules from
    the Dockerfile reference: a new --entrypoint clears the image's CMD)."""
    entrypoint = image_config.get("Entrypoint")
    cmd = image_config.get("Cmd")
    if opts.entrypoint is not None:
        entrypoint = [opts.entrypoint] if opts.entrypoint else None
        cmd = None
    if opts.command:
        cmd = list(opts.command)
    if not (entrypoint or cmd):
        raise InvalidArgument(f"no command specified: image {opts.image} has no CMD or ENTRYPOINT; give one")
    labels = {**(image_config.get("Labels") or {}), **parse_labels(_key_value_lines(opts.label_files, "--label-file")),
              **parse_labels(opts.labels)}  # fmt: skip
    exposed = {**(image_config.get("ExposedPorts") or {}), **{port: {} for port in parse_expose(opts.expose)}}
    attached = {stream.lower() for stream in opts.attach}
    if attached - {"stdin", "stdout", "stderr"}:
        raise InvalidArgument(f"invalid -a {sorted(attached)[0]!r}: attach to stdin, stdout or stderr")
    if attached and opts.detach:
        raise InvalidArgument("conflicting options: -a and -d: a detached container is not attached")
    return {
        "Hostname": opts.hostname or (os.uname().nodename if opts.uts == "host" else cid[:12]),
        "Domainname": "",
        "User": opts.user or image_config.get("User", ""),
        "AttachStdin": opts.interactive and not opts.detach and (not attached or "stdin" in attached),
        "AttachStdout": not opts.detach and (not attached or "stdout" in attached),
        "AttachStderr": not opts.detach and (not attached or "stderr" in attached),
        "ExposedPorts": exposed or None,
        "Tty": opts.tty,
        "OpenStdin": opts.interactive,
        "StdinOnce": opts.interactive and not opts.detach,
        "Env": merge_env(image_config.get("Env") or [], parse_env(opts.env, opts.env_files)),
        "Cmd": cmd,
        "Image": opts.image,
        "Volumes": image_config.get("Volumes"),
        "WorkingDir": opts.workdir or image_config.get("WorkingDir", "") or "",
        "Entrypoint": entrypoint,
        "OnBuild": None,
        "Labels": labels,
        "StopSignal": opts.stop_signal or image_config.get("StopSignal") or "SIGTERM",
        **({"StopTimeout": opts.stop_timeout} if opts.stop_timeout is not None else {}),
    }


def resource_config(opts: RunOptions) -> dict[str, Any]:
    """The cgroup limits of HostConfig (`run` and `update` flags), each checked alone and against the others;
    values in Docker's units: bytes, nano-CPUs, microseconds."""
    memory = parse_size(opts.memory, "memory limit") if opts.memory else 0
    if memory and memory < MIN_MEMORY:
        raise InvalidArgument(f"invalid --memory {opts.memory}: the minimum allowed is 6MB")
    swap = 0
    if opts.memory_swap:
        swap = -1 if opts.memory_swap == "-1" else parse_size(opts.memory_swap, "memory-swap limit")
        if not memory:
            raise InvalidArgument("--memory-swap needs --memory: set a memory limit as well")
        if swap != -1 and swap < memory:
            raise InvalidArgument(
                f"invalid --memory-swap {opts.memory_swap}: it must be larger than --memory (it counts memory + swap)"
            )
    nano_cpus = 0
    if opts.cpus:
        try:
            cpus = float(opts.cpus)
        except ValueError:
            raise InvalidArgument(f"invalid --cpus {opts.cpus!r}: give a number such as 1.5") from None
        available = os.cpu_count() or 1
        if not 0.01 <= cpus <= available:
            raise InvalidArgument(
                f"invalid --cpus {opts.cpus}: the range of CPUs is from 0.01 to {available}.00, "
                f"as there are only {available} CPUs available"
            )
        nano_cpus = int(cpus * 1e9)
    if opts.cpu_shares < 0:
        raise InvalidArgument(f"invalid --cpu-shares {opts.cpu_shares}: must be positive")
    if opts.cpuset_cpus and not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", opts.cpuset_cpus):
        raise InvalidArgument(f"invalid --cpuset-cpus {opts.cpuset_cpus!r}: use a list like 0-1 or 0,1")
    reservation = parse_size(opts.memory_reservation, "memory reservation") if opts.memory_reservation else 0
    if memory and reservation > memory:
        raise InvalidArgument(
            f"invalid --memory-reservation {opts.memory_reservation}: it must be below --memory {opts.memory}"
        )
    if nano_cpus and (opts.cpu_quota or opts.cpu_period):
        raise InvalidArgument(
            "conflicting options: --cpus and --cpu-period/--cpu-quota; give one or the other"
        )
    if opts.cpu_period and not 1000 <= opts.cpu_period <= 1_000_000:
        raise InvalidArgument(f"invalid --cpu-period {opts.cpu_period}: it is 1000-1000000 microseconds")
    if opts.cpu_quota and opts.cpu_quota != -1 and opts.cpu_quota < 1000:
        raise InvalidArgument(f"invalid --cpu-quota {opts.cpu_quota}: at least 1000 microseconds (or -1)")
    return {
        "Memory": memory,
        "MemorySwap": swap,
        "MemoryReservation": reservation,
        "NanoCpus": nano_cpus,
        "CpuShares": opts.cpu_shares,
        "CpuQuota": opts.cpu_quota,
        "CpuPeriod": opts.cpu_period,
        "CpusetCpus": opts.cpuset_cpus,
        "PidsLimit": opts.pids_limit or None,
    }


def host_config(opts: RunOptions) -> dict[str, Any]:
    """Docker's `HostConfig` with every limit validated (values in Docker's units: bytes, nano-CPUs)."""
    log_config = {}
    for opt in opts.log_opts:
        key, sep, value = opt.partition("=")
        if not sep or key not in ("max-size", "max-file"):
            raise InvalidArgument(f"invalid --log-opt {opt!r}: supported are max-size=SIZE and max-file=N")
        log_config[key] = value
    if "max-size" in log_config:
        parse_size(log_config["max-size"], "log max-size")
    if not -1000 <= opts.oom_score_adj <= 1000:
        raise InvalidArgument(f"invalid --oom-score-adj {opts.oom_score_adj}: it is -1000 to 1000")
    restart = parse_restart(opts.restart)
    if opts.auto_remove and restart["Name"] != "no":
        raise InvalidArgument("conflicting options: --restart and --rm cannot be used together")
    return {
        "Binds": list(opts.volumes),
        "Mounts": list(opts.mounts),
        "Tmpfs": list(opts.tmpfs),
        "LogConfig": {"Type": _log_driver(opts.log_driver), "Config": log_config},
        "RestartPolicy": restart,
        "AutoRemove": opts.auto_remove,
        **vm_config(opts),
        "Init": opts.init,
        "ConsoleSize": list(opts.console_size) if opts.tty else [0, 0],
        **resource_config(opts),
        "ReadonlyRootfs": opts.read_only,
        "Privileged": opts.privileged,
        "CapAdd": list(opts.cap_add) or None,
        "CapDrop": list(opts.cap_drop) or None,
        "SecurityOpt": list(opts.security_opt) or None,
        "Ulimits": [parse_ulimit(u) for u in opts.ulimits] or None,
        "UsernsMode": _userns(opts.userns),
        "Devices": [parse_device(d) for d in opts.devices],
        "GroupAdd": list(opts.group_add) or None,
        "OomScoreAdj": opts.oom_score_adj,
        "OomKillDisable": opts.oom_kill_disable,
        **namespace_config(opts),
        **network_config(opts),
    }


def network_config(opts: RunOptions) -> dict[str, Any]:
    """NetworkMode, PortBindings, Dns, ExtraHosts and the primary network's EndpointsConfig (aliases,
    --ip, --mac-address), checked for syntax and for options the network mode cannot take."""
    mode = "bridge" if opts.network in ("", "default") else opts.network
    shared = mode in ("host", "none") or mode.startswith("container:")
    if mode == "container:":
        raise InvalidArgument("invalid --network container:: name the container whose network to join")
    if (opts.publish or opts.publish_all) and mode != "host" and shared:
        raise InvalidArgument(f"conflicting options: port publishing and the network mode {mode}")
    if shared and (opts.network_aliases or opts.ip or opts.mac_address):
        raise InvalidArgument(
            f"--network-alias, --ip and --mac-address need a bridge network, not the network mode {mode}"
        )
    if mode.startswith("container:") and (opts.dns or opts.add_hosts or opts.hostname):
        raise InvalidArgument(f"conflicting options: --dns/--add-host/--hostname and the network mode {mode}")
    if opts.ip and not isinstance(_ip_or_none(opts.ip), ipaddress.IPv4Address):
        raise InvalidArgument(f"invalid --ip {opts.ip!r}: give an IPv4 address such as 10.90.0.10")
    mac = opts.mac_address.lower()
    if mac and (not re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac) or int(mac[:2], 16) & 1):
        raise InvalidArgument(
            f"invalid --mac-address {opts.mac_address!r}: give a unicast MAC like 02:42:ac:11:00:02"
        )
    for server in opts.dns:
        if _ip_or_none(server) is None:
            raise InvalidArgument(f"invalid --dns {server!r}: give the IP address of a DNS server")
    hosts = []
    for entry in opts.add_hosts:
        name, sep, addr = entry.replace("=", ":", 1).partition(":")
        if not name or not sep or not (addr == "host-gateway" or _ip_or_none(addr) is not None):
            raise InvalidArgument(f"invalid --add-host {entry!r}: use NAME:IP (or NAME:host-gateway)")
        hosts.append(f"{name}:{addr}")
    endpoint = {
        "Aliases": list(opts.network_aliases) or None,
        "IPAMConfig": {"IPv4Address": opts.ip} if opts.ip else None,
        "MacAddress": mac,
    }
    return {
        "NetworkMode": mode,
        "PortBindings": parse_publish(opts.publish) if mode != "host" else {},
        "PublishAllPorts": opts.publish_all and mode != "host",
        "Dns": list(opts.dns),
        "ExtraHosts": hosts,
        "EndpointsConfig": {} if shared else {mode: endpoint},
    }


def _ip_or_none(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_device(flag: str) -> dict[str, str]:
    """`--device HOST[:CONTAINER][:PERMISSIONS]`: a host device node given to the container (Docker's
    ParseDevice); the permissions are the cgroup's r(ead), w(rite), m(knod), rwm by default."""
    import stat

    parts = flag.split(":")
    host, target, perms = parts[0], "", "rwm"
    if len(parts) == 3:
        perms = parts[2]
    if len(parts) >= 2:  # the middle part is the permissions if it reads as such, else the target path
        if parts[1] and set(parts[1]) <= set("rwm"):
            perms = parts[1]
        else:
            target = parts[1]
    target = target or host
    if len(parts) > 3 or not perms or not set(perms) <= set("rwm") or not target.startswith("/"):
        raise InvalidArgument(
            f"invalid --device {flag!r}: use HOST[:CONTAINER][:rwm], e.g. /dev/fuse:/dev/fuse:rwm"
        )
    try:
        mode = os.stat(host).st_mode
    except OSError as e:
        raise InvalidArgument(f"invalid --device {flag!r}: {host}: {e.strerror}") from None
    if not (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)):
        raise InvalidArgument(f"invalid --device {flag!r}: {host} is not a device node")
    return {"PathOnHost": host, "PathInContainer": os.path.normpath(target), "CgroupPermissions": perms}


# Namespaced sysctls Docker lets a container set (moby opts.ValidateSysctl): IPC ones need a private IPC
# namespace, net.* a private network namespace.
_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")  # fmt: skip


def namespace_config(opts: RunOptions) -> dict[str, Any]:
    """PidMode, IpcMode, UTSMode and CgroupnsMode (host, private, or for pid another container's:
    container:NAME), ShmSize and Sysctls, which depend on them. `--ipc container:X` is not offered: X's
    /dev/shm would have to be a host-side mount to be shared (Docker's `shareable`), which every container
    would pay an unmount for."""
    modes = {"--pid": (opts.pid, ("", "host", "container:")), "--uts": (opts.uts, ("", "host")),
             "--ipc": (opts.ipc, ("", "private", "shareable", "host", "none")),
             "--cgroupns": (opts.cgroupns, ("", "private", "host"))}  # fmt: skip
    for flag, (value, allowed) in modes.items():
        joins = value.startswith("container:")
        if (joins and ("container:" not in allowed or value == "container:")) or (
            not joins and value not in allowed
        ):
            choices = " or ".join(("container:NAME" if a == "container:" else a) for a in allowed if a)
            raise InvalidArgument(f"invalid {flag} {value!r}: use {choices}")
    if opts.uts == "host" and opts.hostname:
        raise InvalidArgument("conflicting options: --hostname and --uts host (the host's name is used)")
    ipc = opts.ipc if opts.ipc in ("host", "none") else "private"
    shm = parse_size(opts.shm_size, "shm size") if opts.shm_size else 0
    if opts.shm_size and shm <= 0:
        raise InvalidArgument(f"invalid --shm-size {opts.shm_size}: it must be greater than 0")
    if shm and ipc != "private":
        raise InvalidArgument(
            f"conflicting options: --shm-size and --ipc {ipc} (the container has no /dev/shm of its own)"
        )
    if any("=" not in entry for entry in opts.sysctls):
        bad = next(entry for entry in opts.sysctls if "=" not in entry)
        raise InvalidArgument(f"invalid --sysctl {bad!r}: use KEY=VALUE, e.g. net.ipv4.ip_forward=1")
    sysctls = parse_labels(opts.sysctls, "--sysctl")
    network = "bridge" if opts.network in ("", "default") else opts.network
    for key in sysctls:
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if ipc != "private":
                raise InvalidArgument(
                    f"invalid --sysctl {key}: it needs the container's own IPC namespace, not --ipc {ipc}"
                )
        elif key.startswith("net."):
            if network == "host":
                raise InvalidArgument(f"invalid --sysctl {key}: it cannot be set with --network host")
        else:
            raise InvalidArgument(
                f"invalid --sysctl {key}: not a namespaced sysctl (allowed: net.*, fs.mqueue.*, {', '.join(_IPC_SYSCTLS)})"
            )
    return {
        "PidMode": opts.pid,
        "IpcMode": ipc if opts.ipc else "private",
        "UTSMode": opts.uts,
        "CgroupnsMode": opts.cgroupns or "private",
        "ShmSize": shm or 64 << 20,
        "Sysctls": sysctls,
    }


def check_platform(requested: str, image: str, image_config: dict[str, Any]) -> None:
    """`--platform OS/ARCH[/VARIANT]` must name the image's own platform: a pull here fetches the host's
    platform from a multi-platform index, so another one cannot be run (there is no emulation)."""
    aliases = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}
    parts = requested.lower().split("/")
    if "/" not in requested:
        parts = ["linux", *parts]
    os_name, arch, variant = (parts + [""])[:3]
    have = (image_config.get("os", ""), image_config.get("architecture", ""), image_config.get("variant", ""))
    if (os_name, aliases.get(arch, arch)) != have[:2] or (variant and variant != have[2]):
        actual = "/".join(p for p in have if p)
        raise InvalidArgument(
            f"image {image} is for {actual}, not the requested platform {requested}: "
            "only images of the host's platform can run here"
        )


def vm_config(opts: RunOptions) -> dict[str, Any]:
    """Runtime and Isolation (`--isolation=vm` is `--runtime vm`), and the VM's accelerator and kernel."""
    if opts.isolation not in ("", "default", "process", "vm"):
        raise InvalidArgument(f"invalid --isolation {opts.isolation!r}: use default or vm")
    if opts.isolation == "vm" and opts.runtime not in ("", "vm"):
        raise InvalidArgument(f"conflicting options: --isolation=vm and --runtime {opts.runtime}")
    runtime = "vm" if opts.isolation == "vm" else opts.runtime or "intermodal"
    if runtime != "vm" and (opts.vm_accel or opts.vm_kernel):
        raise InvalidArgument("--vm-accel and --vm-kernel need --isolation=vm")
    if opts.vm_accel not in ("", "auto", "kvm", "tcg"):
        raise InvalidArgument(f"invalid --vm-accel {opts.vm_accel!r}: use kvm, tcg or auto")
    unsupported = [flag for flag, given in (
        ("--device", opts.devices), ("--pid", opts.pid), ("--ipc", opts.ipc), ("--uts", opts.uts),
        ("--cgroupns", opts.cgroupns), ("--sysctl", opts.sysctls), ("--shm-size", opts.shm_size),
        ("--group-add", opts.group_add), ("--oom-score-adj", opts.oom_score_adj),
        ("--oom-kill-disable", opts.oom_kill_disable), ("--memory-reservation", opts.memory_reservation),
        ("--cpu-quota", opts.cpu_quota), ("--cpu-period", opts.cpu_period)) if given]  # fmt: skip
    if runtime == "vm" and unsupported:
        raise InvalidArgument(
            f"{', '.join(unsupported)} cannot be used with --isolation=vm: the micro-VM has its own kernel "
            "(give it memory and CPUs with --memory and --cpus)"
        )
    if opts.vm_kernel and not os.path.exists(opts.vm_kernel):
        raise InvalidArgument(f"invalid --vm-kernel {opts.vm_kernel}: no such file or directory")
    return {
        "Runtime": runtime,
        "Isolation": "vm" if runtime == "vm" else "",
        "VmAccel": opts.vm_accel or ("auto" if runtime == "vm" else ""),
        "VmKernel": os.path.abspath(opts.vm_kernel) if opts.vm_kernel else "",
    }


USERNS_MODES = ("host", "auto", "private")


def _userns(mode: str) -> str:
    """Docker's `host` (the host's user namespace; it also opts out of an engine default) and Podman's
    `auto` (a private namespace with its own 65536-ID range from the engine's pool, see containers/userns.py);
    `private` is taken as `auto`. Podman's `keep-id`, `nomap` and `auto:size=N` are not implemented."""
    if mode not in ("", *USERNS_MODES):
        raise InvalidArgument(
            f"invalid --userns {mode!r}: use host, auto or private (keep-id, nomap and auto:OPTIONS are not supported)"
        )
    return mode
