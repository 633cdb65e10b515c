"""The OCI runtime bundle of a container: its rootfs (an overlay mount over the image's unpacked layers),
the engine-managed /etc files, resolved volumes, and a config.json from `runtime.spec`. Every isolation
backend (our runtime, crun, runc, the micro-VM) consumes the same bundle."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from intermodal.engine.containers import userns
from intermodal.engine.containers.record import ContainerRecord, Paths
from intermodal.engine.containers.userdb import resolve_groups, resolve_user
from intermodal.engine.networks import Attachment
from intermodal.engine.volumes import (
    MountRequest,
    VolumeStore,
    copy_up,
    image_volumes,
    parse_mount_flag,
    parse_tmpfs_flag,
    parse_volume_flag,
)
from intermodal.errors import InvalidArgument
from intermodal.fsutil import atomic_write_bytes, atomic_write_json
from intermodal.image.snapshots import Snapshotter
from intermodal.image.store import ImageStore
from intermodal.runtime import spec as oci
from intermodal.runtime import sys as linux
from intermodal.runtime import userns as user_namespaces
from intermodal.runtime.rootfs import open_in_root

TINI = "/usr/bin/tini-static"
TINI_TARGET = "/sbin/docker-init"


def is_mounted(path: Path) -> bool:
    return os.fsencode(str(path)) in _mount_points()


def _mount_points() -> set[bytes]:
    with open("/proc/self/mountinfo", "rb") as f:
        return {line.split()[4] for line in f}


def mount_rootfs(images: ImageStore, snapshots: Snapshotter, record: ContainerRecord, paths: Paths) -> None:
    """Unpack the image's layers if needed and mount the container's overlay (idempotent).

    With a private user namespace (--userns=auto) the lower dirs are idmapped views of the shared layers
    (`layers/<n>`: files owned by 0 appear owned by the range's first ID) and the upper dir belongs to that
    ID: the container's root owns its files, and no shared snapshot is ever chowned. (overlayfs itself
    cannot be idmapped, and an idmapped upper dir would leave overlay unable to make its work dir.)"""
    if is_mounted(paths.rootfs):
        return
    image = images.get(record.image)
    lowers = [*snapshots.unpack(images.manifest(image), images.config(image)), paths.init]
    for d in (paths.rootfs, paths.upper, paths.work):
        d.mkdir(exist_ok=True)
    _make_init_layer(record, paths.init)
    owner = userns.host_root(record)
    if owner is not None:
        os.chown(paths.upper, owner, owner)
        lowers = _idmapped_views(lowers, paths.layers, record.id_mappings)
    desc = snapshots.mount(lowers, paths.upper, paths.work)
    options = list(desc.options)
    if record.host_config.get("AutoRemove"):
        options.append("volatile")  # its writes are thrown away: skip overlayfs' sync on unmount
    if owner is None:
        linux.mount(desc.source, str(paths.rootfs), desc.type, 0, ",".join(options))
        return
    here = os.open(".", os.O_PATH | os.O_CLOEXEC)
    try:  # the views are named relative to layers/ (overlay resolves them from our cwd): deep images fit
        os.chdir(paths.layers)
        linux.mount(desc.source, str(paths.rootfs), desc.type, 0, ",".join(options))
    except BaseException:
        _unmount_layers(paths.layers)
        raise
    finally:
        os.fchdir(here)
        os.close(here)


def _idmapped_views(lowers: list[Path], layers: Path, id_mappings: dict[str, Any]) -> list[Path]:
    """Mount each lower dir idmapped through a user namespace with the container's maps on layers/<n>;
    returns the views' names relative to `layers`."""
    layers.mkdir(mode=0o700, exist_ok=True)
    mounted = _mount_points()
    fd = user_namespaces.namespace_fd(id_mappings["uidMappings"], id_mappings["gidMappings"])
    try:
        names = []
        for n, lower in enumerate(lowers):
            view = layers / str(n)
            view.mkdir(exist_ok=True)
            if os.fsencode(str(view)) not in mounted:
                linux.idmapped_bind(str(lower), str(view), fd)
            names.append(Path(str(n)))
        return names
    except BaseException:
        _unmount_layers(layers)
        raise
    finally:
        os.close(fd)


def _make_init_layer(record: ContainerRecord, init: Path) -> None:
    """Docker's "-init" layer: the mount points the runtime needs, as the top lower layer, so that it never
    creates them in the upper dir, where `diff` would list them and `commit` would bake them into an image.
    It also shadows whatever the image has there (a symlink at /etc/hosts cannot redirect the mount)."""
    files = ["etc/hosts", "etc/hostname", "etc/resolv.conf"]
    if record.host_config.get("Init"):
        files.append(TINI_TARGET.lstrip("/"))
    for name in ["dev", "proc", "sys", *files]:
        path = init / name
        if name in files:
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            path.touch(mode=0o644, exist_ok=True)
        else:
            path.mkdir(mode=0o755, parents=True, exist_ok=True)


def unmount_rootfs(paths: Paths) -> None:
    if is_mounted(paths.rootfs):
        linux.umount2(str(paths.rootfs), linux.MNT_DETACH)
    _unmount_layers(paths.layers)


def _unmount_layers(layers: Path) -> None:
    """Unmount and remove the idmapped layer views (--userns=auto), if any."""
    if not layers.is_dir():
        return
    mounted = _mount_points()
    for view in layers.iterdir():
        if os.fsencode(str(view)) in mounted:
            linux.umount2(str(view), linux.MNT_DETACH)
        view.rmdir()
    layers.rmdir()


@contextlib.contextmanager
def unmapped_view(directory: Path, view: Path, id_mappings: dict[str, Any]) -> Iterator[Path]:
    """`directory` mounted idmapped on `view` with the container's maps inverted: files owned by the range
    appear owned by the container IDs (0..65535), others by the overflow ID. Unmounted afterwards."""

    def invert(maps: list[dict[str, int]]) -> list[dict[str, int]]:
        return [{"containerID": m["hostID"], "hostID": m["containerID"], "size": m["size"]} for m in maps]

    view.mkdir(mode=0o700, exist_ok=True)
    fd = user_namespaces.namespace_fd(invert(id_mappings["uidMappings"]), invert(id_mappings["gidMappings"]))
    try:
        linux.idmapped_bind(str(directory), str(view), fd)
    finally:
        os.close(fd)
    try:
        yield view
    finally:
        linux.umount2(str(view), linux.MNT_DETACH)
        view.rmdir()


def give_to_container_root(record: ContainerRecord, paths: Paths) -> None:
    """With a private user namespace, the engine-managed /etc files belong to the container's root (as with
    Docker's userns-remap), so it can edit its /etc/hosts; without one they stay root's."""
    owner = userns.host_root(record)
    if owner is not None:
        for path in (paths.hosts, paths.hostname, paths.resolv):
            os.chown(path, owner, owner)


def check_runtime_can_reach(record: ContainerRecord, paths: Paths) -> None:
    """runc resolves the rootfs path from inside the user namespace, as the range's root: every directory
    above it must let others through (o+x). Docker checks the same for its data root; so do we, to fail
    with the reason instead of runc's "permission denied". (Our runtime and crun open it beforehand.)"""
    owner = userns.host_root(record)
    if owner is None:
        return
    for parent in paths.rootfs.parents:
        st = parent.stat()
        if not st.st_mode & 0o001 and st.st_uid != owner:
            raise InvalidArgument(
                f"--userns=auto with {record.runtime}: {parent} does not let the container's remapped root "
                f"(uid {owner}) through; allow o+x on it (chmod o+x {parent}) or use another runtime"
            )


def resolve_mounts(record: ContainerRecord, volumes: VolumeStore, paths: Paths) -> list[dict[str, Any]]:
    """User mounts (-v, --mount, --tmpfs) plus the image's VOLUMEs → Docker-shaped mount records.
    New named or anonymous volumes get the image's content at that path (copy-up), as in Docker."""
    hc = record.host_config
    requests = [parse_volume_flag(v) for v in hc.get("Binds") or []]
    requests += [parse_mount_flag(m) for m in hc.get("Mounts") or []]
    requests += [parse_tmpfs_flag(t) for t in hc.get("Tmpfs") or []]
    seen: set[str] = set()
    for r in requests:
        if r.destination in seen:
            raise InvalidArgument(f"duplicate mount point: {r.destination}")
        seen.add(r.destination)
    requests += image_volumes(record.config.get("Volumes"), seen)
    out = []
    for r in requests:
        out.append(_resolve_one(r, volumes, paths, userns.host_root(record)))
    return out


def _resolve_one(
    r: MountRequest, volumes: VolumeStore, paths: Paths, owner: int | None = None
) -> dict[str, Any]:
    base = {
        "Destination": r.destination,
        "Mode": ",".join(r.options),
        "RW": not r.readonly,
        "Propagation": "",
    }
    if r.type == "bind":
        if not os.path.exists(r.source):
            raise InvalidArgument(
                f"invalid mount config: bind source path does not exist: {r.source}; create it first"
            )
        return {"Type": "bind", "Source": os.path.realpath(r.source), **base, "Propagation": "rprivate"}
    if r.type == "tmpfs":
        return {"Type": "tmpfs", "Source": "", **base}
    fresh = not r.source or not volumes.exists(r.source)
    meta = volumes.create(r.source, anonymous=not r.source)
    data = volumes.data_dir(meta["Name"])
    if fresh and r.copy_up:
        _copy_image_content(paths.rootfs, r.destination, data)
    if fresh and owner is not None and data.stat().st_uid == 0:  # a new volume is the container root's
        os.chown(data, owner, owner)
    return {"Type": "volume", "Name": meta["Name"], "Source": str(data), "Driver": "local", **base}


def _copy_image_content(rootfs: Path, destination: str, volume_dir: Path) -> None:
    try:
        fd = open_in_root(str(rootfs), destination)
    except OSError:
        return
    try:
        source = f"/proc/self/fd/{fd}"
        if os.path.isdir(source):
            copy_up(source, volume_dir)
    finally:
        os.close(fd)


def write_etc_files(record: ContainerRecord, paths: Paths, network: Attachment | None = None) -> None:
    """hostname, hosts (the container's addresses, --add-host) and resolv.conf (--dns, else the network's
    resolver on user networks, else the host's). `--network host` starts from the host's files;
    `--network container:X` gets X's three files, as Docker shares them."""
    if network is not None and network.etc_from:
        for target in (paths.hosts, paths.hostname, paths.resolv):
            atomic_write_bytes(target, (Path(network.etc_from) / target.name).read_bytes(), durable=False)
        return
    hostname = record.config["Hostname"]
    hc = record.host_config
    atomic_write_bytes(paths.hostname, f"{hostname}\n".encode(), durable=False)
    host_mode = network is not None and network.namespace is None
    if host_mode:
        hosts = _read("/etc/hosts")
    else:
        hosts = (
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
        )
        hosts += "".join(f"{address}\t{hostname}\n" for address in (network.addresses if network else []))
    for entry in hc.get("ExtraHosts") or []:
        name, _, address = entry.partition(":")
        if address == "host-gateway":
            if not (network and network.gateway):
                raise InvalidArgument(
                    f"--add-host {entry}: host-gateway needs a bridge network (it has no gateway)"
                )
            address = network.gateway
        hosts += f"{address}\t{name}\n"
    atomic_write_bytes(paths.hosts, hosts.encode(), durable=False)
    servers = [*(network.nameservers if network else []), *(hc.get("Dns") or [])]
    atomic_write_bytes(paths.resolv, _resolv_conf(servers, keep_loopback=host_mode).encode(), durable=False)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _resolv_conf(servers: list[str], *, keep_loopback: bool = False) -> str:
    """The host's resolv.conf with `servers` as the nameservers if given; otherwise without loopback
    resolvers, which a container's own network cannot reach."""
    lines = _read("/etc/resolv.conf").splitlines()
    if servers:
        kept = [line for line in lines if not line.startswith("nameserver")]
        kept += [f"nameserver {s}" for s in servers]
        return "\n".join(kept) + "\n"
    kept = [
        line
        for line in lines
        if keep_loopback or not (line.startswith("nameserver") and (" 127." in line or " ::1" in line))
    ]
    if not any(line.startswith("nameserver") for line in kept):
        kept += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(kept) + "\n"


def process_args(record: ContainerRecord) -> list[str]:
    args = list(record.config.get("Entrypoint") or []) + list(record.config.get("Cmd") or [])
    if record.host_config.get("Init"):
        # -s: tini reaps orphans as a subreaper where it is not PID 1 (a micro-VM's guest, whose PID 1 is
        # the agent), and does not warn; as a container's PID 1 it changes nothing
        args = [TINI_TARGET, "-s", "--", *args]
    return args


def linux_resources(hc: dict[str, Any]) -> dict[str, Any]:
    """The OCI `linux.resources` for a HostConfig's limits (also what `update` hands the runtime)."""
    resources = oci.resources(
        memory=hc.get("Memory") or None,
        memory_swap=hc.get("MemorySwap") or None,
        memory_reservation=hc.get("MemoryReservation") or None,
        cpu_shares=hc.get("CpuShares") or None,
        cpus=(hc["NanoCpus"] / 1e9) if hc.get("NanoCpus") else None,
        cpu_quota=hc.get("CpuQuota") or None,
        cpu_period=hc.get("CpuPeriod") or None,
        cpuset_cpus=hc.get("CpusetCpus") or None,
        pids_limit=hc.get("PidsLimit") or None,
    )
    if hc.get("OomKillDisable"):
        resources.setdefault("memory", {})["disableOOMKiller"] = True
    return resources


def build_spec(
    record: ContainerRecord,
    paths: Paths,
    mounts: list[dict[str, Any]],
    netns: str | None = "",
    joined: dict[str, int] | None = None,
) -> dict[str, Any]:
    """config.json for this container: Docker's secure defaults plus the record's flags. `netns`: the network
    namespace to join (made by the engine's networks), None for the host's, "" for a new one. `joined`: for
    --pid container:X, the namespace kind -> the PID of X's init, whose namespace to join."""
    cfg, hc = record.config, record.host_config
    user = resolve_user(str(paths.rootfs), cfg.get("User") or "0")
    env = dict(e.split("=", 1) for e in cfg.get("Env") or [] if "=" in e)
    env.setdefault("HOSTNAME", cfg["Hostname"])
    env.setdefault("HOME", user.home)
    oci_mounts = [
        oci.bind_mount(str(paths.hosts), "/etc/hosts"),
        oci.bind_mount(str(paths.hostname), "/etc/hostname"),
        oci.bind_mount(str(paths.resolv), "/etc/resolv.conf"),
    ]
    if hc.get("Init"):
        if not os.path.exists(TINI):
            raise InvalidArgument(f"--init needs {TINI}: install Debian's tini package")
        oci_mounts.append(oci.bind_mount(TINI, TINI_TARGET, readonly=True))
    for m in mounts:
        if m["Type"] == "tmpfs":
            opts = ["nosuid", "nodev", *([o for o in m["Mode"].split(",") if o] or ["size=65536k"])]
            oci_mounts.append(
                {"destination": m["Destination"], "type": "tmpfs", "source": "tmpfs", "options": opts}
            )
        else:
            oci_mounts.append(oci.bind_mount(m["Source"], m["Destination"], readonly=not m["RW"]))
    # Docker mounts parents before children whatever the flags' order (daemon/volumes.go sortMounts: by the
    # number of path components, stable), so a bind under a --tmpfs or a volume under /etc stays visible.
    oci_mounts.sort(key=lambda m: len(Path(m["destination"]).parts))
    seccomp_profile: Any = "default"
    no_new_privs = True
    for opt in hc.get("SecurityOpt") or []:
        key, _, value = opt.replace(":", "=", 1).partition("=")
        if key == "seccomp":
            seccomp_profile = None if value == "unconfined" else _load_seccomp(value)
        elif key == "no-new-privileges":
            no_new_privs = value in ("", "true")
        elif key not in ("label", "apparmor"):
            raise InvalidArgument(
                f"invalid --security-opt {opt!r}: supported are seccomp=…, no-new-privileges"
            )
    resources = linux_resources(hc)
    namespaces: dict[str, str | None] = {"network": netns} if netns != "" else {}
    for kind, mode in (
        ("pid", "PidMode"),
        ("ipc", "IpcMode"),
        ("uts", "UTSMode"),
        ("cgroup", "CgroupnsMode"),
    ):
        if hc.get(mode) == "host":
            namespaces[kind] = None  # the host's: no namespace of its own
        elif str(hc.get(mode)).startswith("container:"):
            namespaces[kind] = f"/proc/{(joined or {})[kind]}/ns/{kind}"
    spec = oci.default_spec(
        process_args(record),
        env=env,
        cwd=cfg.get("WorkingDir") or "/",
        uid=user.uid,
        gid=user.gid,
        additional_gids=[*user.additional_gids, *resolve_groups(str(paths.rootfs), hc.get("GroupAdd") or [])],
        hostname=cfg["Hostname"] if hc.get("UTSMode") != "host" else None,
        terminal=bool(cfg.get("Tty")),
        rootfs=str(paths.rootfs),
        read_only=bool(hc.get("ReadonlyRootfs")),
        privileged=bool(hc.get("Privileged")),
        cap_add=hc.get("CapAdd") or (),
        cap_drop=hc.get("CapDrop") or (),
        no_new_privileges=no_new_privs,
        seccomp_profile=seccomp_profile,
        ulimits={u["Name"]: (u["Soft"], u["Hard"]) for u in hc.get("Ulimits") or []},
        mounts=oci_mounts,
        linux_resources=resources,
        cgroups_path=f"/intermodal/{record.id}",  # absolute: runc puts relative paths under its own cgroup
        namespaces=namespaces or None,
        annotations={"org.opencontainers.image.ref.name": record.image_name, **_vm_annotations(hc)},
        id_mappings=record.id_mappings or None,
    )
    oci.set_shm(spec, hc.get("IpcMode") or "private", hc.get("ShmSize") or 64 << 20)
    rows, cols = (list(hc.get("ConsoleSize") or []) + [0, 0])[:2]
    if cfg.get("Tty") and rows and cols:  # config.md#process: the terminal's size at creation
        spec["process"]["consoleSize"] = {"height": int(rows), "width": int(cols)}
    if hc.get("Sysctls"):
        spec["linux"]["sysctl"] = dict(hc["Sysctls"])
    if hc.get("OomScoreAdj"):
        spec["process"]["oomScoreAdj"] = hc["OomScoreAdj"]
    for device in hc.get("Devices") or []:
        _add_host_device(spec, device)
    if record.id_mappings and netns != "":
        # sysfs can only be mounted by the owner of the network namespace; the engine's pinned namespace
        # (or the host's) belongs to the host's user namespace, so bind the host's /sys read-only instead,
        # as Podman does (runc 1.1 has no fallback of its own).
        for m in spec["mounts"]:
            if m["destination"] == "/sys" and m["type"] == "sysfs":
                m.update(type="bind", source="/sys", options=["rbind", "nosuid", "noexec", "nodev", "ro"])
    return spec


def _add_host_device(spec: dict[str, Any], device: dict[str, str]) -> None:
    """`--device`: the host node's type, numbers, mode and owner, as Docker copies them (DeviceFromPath)."""
    try:
        st = os.stat(device["PathOnHost"])
    except OSError as e:
        raise InvalidArgument(
            f"--device {device['PathOnHost']}: {e.strerror}: the device is gone from the host"
        ) from None
    oci.add_device(spec, device["PathInContainer"], kind="b" if stat.S_ISBLK(st.st_mode) else "c",
                   major=os.major(st.st_rdev), minor=os.minor(st.st_rdev), file_mode=st.st_mode & 0o7777,
                   uid=st.st_uid, gid=st.st_gid, access=device["CgroupPermissions"])  # fmt: skip


def _vm_annotations(hc: dict[str, Any]) -> dict[str, str]:
    from intermodal.isolation.microvm import ANNOTATION_ACCEL, ANNOTATION_KERNEL

    values = {ANNOTATION_ACCEL: hc.get("VmAccel") or "", ANNOTATION_KERNEL: hc.get("VmKernel") or ""}
    return {k: v for k, v in values.items() if v}


def _load_seccomp(path: str) -> dict[str, Any]:
    import json

    from intermodal.runtime import seccomp

    try:
        with open(path) as f:
            profile = json.load(f)
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"cannot load seccomp profile {path}: {e}") from None
    return (
        seccomp.from_docker_profile(profile)
        if "syscalls" in profile and "defaultAction" in profile
        else profile
    )


def write_bundle(spec: dict[str, Any], paths: Paths) -> None:
    paths.bundle.mkdir(exist_ok=True)
    atomic_write_json(paths.config, spec, durable=False)


def remove_files(paths: Paths) -> None:
    """Delete the container's directory. Another command may create its lock file while the tree is being
    deleted (conmon's exit command for a container just killed), which leaves the directory non-empty
    once: deleting again then finishes it, as the lock is never created in a directory that is gone."""
    for _ in range(3):
        shutil.rmtree(paths.dir, ignore_errors=True)
        if not paths.dir.exists():
            return


def stop_signal_number(name: str) -> int:
    """`SIGTERM`, `TERM` or `15` → 15."""
    text = name.upper()
    if text.isdigit():
        return int(text)
    try:
        return int(signal.Signals[text if text.startswith("SIG") else f"SIG{text}"])
    except KeyError:
        raise InvalidArgument(f"invalid signal {name!r}: use a name like SIGTERM or a number") from None
