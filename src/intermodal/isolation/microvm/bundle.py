"""From an OCI bundle to a VM: what the guest mounts and runs, and what the host shares with it.

The guest sees its image, the declared volumes and nothing else of the host: directory binds and named
volumes become virtiofs shares (one virtiofsd each, confined to that directory), tmpfs mounts are made in
the guest, and single-file binds (the engine's /etc/hosts, /etc/hostname, /etc/resolv.conf, --init's tini,
`-v FILE:PATH`) are bound on the host, into the rootfs share, in its virtiofsd's own mount namespace
(shim.py): the guest reads and writes the host's file, as a container does, with no mount of its own. Only
a file bind inside a guest-side mount (a tmpfs, a volume, /dev), or into an ext4 rootfs, is copied into the
initramfs and bound from there.
The spec's network namespace is where QEMU runs and the guest's NIC takes the container's address
(network.py); its other namespaces, cgroups, seccomp and capabilities are not applied: the VM boundary
replaces them."""

from __future__ import annotations

import errno
import json
import math
import os
import shlex
import shutil
import stat
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from intermodal.errors import IntermodalError, InvalidArgument
from intermodal.isolation.microvm import agent, qemu
from intermodal.isolation.microvm.agent import NEWROOT
from intermodal.runtime.rootfs import open_in_root

# How the rootfs reaches the guest: "virtiofs" (the overlay directory itself, so changes land in the
# container's upper dir as with any runtime) or "ext4" (an image made with mkfs.ext4 -d, changes discarded).
ROOTFS_TRANSPORT = os.environ.get("INTERMODAL_VM_ROOTFS", "virtiofs")
# Mounted by the agent itself (std_mounts), whatever the spec says.
_STANDARD = {"/proc", "/sys", "/sys/fs/cgroup", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"}
_TMPFS_OPTIONS = ("size=", "mode=", "nr_inodes=", "uid=", "gid=")
_TMPFS_FLAGS = {"ro", "rw", "nosuid", "nodev", "noexec", "noatime", "nodiratime", "relatime", "strictatime"}


@dataclass
class Share:
    tag: str
    source: str
    readonly: bool
    # single files bound into the share on the host: [host file, path inside the share (its symlinks
    # resolved there), read-only]
    files: list[list[Any]] = field(default_factory=list)


@dataclass
class Plan:
    """Everything the shim needs, saved as vm.json in the state dir (and read back by `delete`)."""

    id: str
    bundle: str
    rootfs: str  # the bundle's root.path
    rootfs_transport: str
    root_readonly: bool
    memory_mib: int
    cpus: int
    accel: str = "tcg"
    kernel: str = ""
    kernel_release: str = ""
    kernel_source: str = ""
    initrd: str = ""
    rootfs_image: str = ""
    shares: list[Share] = field(default_factory=list)
    root_files: list[list[Any]] = field(default_factory=list)  # Share.files of the rootfs share
    process: dict[str, Any] = field(default_factory=dict)
    netns: str = ""  # the container's network namespace, where QEMU runs to reach the tap
    cgroup: str = ""  # the spec's cgroupsPath: the shim, QEMU and virtiofsd live there (lifecycle.py)
    nic: dict[str, Any] | None = None  # network.Nic

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> Plan:
        data = json.loads(path.read_text())
        data["shares"] = [Share(**s) for s in data["shares"]]
        return cls(**data)


def load_spec(bundle: Path) -> dict[str, Any]:
    try:
        spec: dict[str, Any] = json.loads((bundle / "config.json").read_bytes())
    except FileNotFoundError:
        raise InvalidArgument(f"no config.json in bundle {bundle}: pass the bundle with --bundle") from None
    except ValueError as e:
        raise InvalidArgument(f"{bundle}/config.json is not valid JSON: {e}") from None
    if not (spec.get("process") or {}).get("args"):
        raise InvalidArgument(f"{bundle}/config.json has no process.args: say what to run")
    return spec


def resources(spec: dict[str, Any]) -> tuple[int, int]:
    """Guest RAM (MiB) from the memory limit and vCPUs from the CPU quota (`--memory`, `--cpus`)."""
    res = (spec.get("linux") or {}).get("resources") or {}
    memory = qemu.memory_mib((res.get("memory") or {}).get("limit"))
    cpu = res.get("cpu") or {}
    cpus = 1
    if cpu.get("quota") and cpu.get("period") and cpu["quota"] > 0:
        cpus = math.ceil(cpu["quota"] / cpu["period"])
    return memory, max(1, min(cpus, os.cpu_count() or 1))


def rootfs_path(spec: dict[str, Any], bundle: Path) -> Path:
    root = Path((spec.get("root") or {}).get("path") or "rootfs")
    return root if root.is_absolute() else bundle / root


# The agent's standard mounts (runtime-spec config-linux.md): /proc, /sys and a /dev with the OCI default
# devices only, bound from /dev.oci in the initramfs (initramfs.py), so no mknod at boot. Only /proc, /sys
# and /dev may need creating in the rootfs; /dev's subdirectories are in /dev.oci.
_STD_FSTAB = (
    ("proc", "/proc", "proc", "defaults", "dir"),
    ("sysfs", "/sys", "sysfs", "ro,nosuid,nodev,noexec", "dir"),
    ("/dev.oci", "/dev", "none", "bind", "dir"),
    ("devpts", "/dev/pts", "devpts", "newinstance,ptmxmode=0666,mode=620", ""),
    ("shm", "/dev/shm", "tmpfs", "nosuid,nodev,noexec,size=65536k", ""),
    ("mqueue", "/dev/mqueue", "mqueue", "nofail", ""),  # not every kernel has POSIX message queues
)
_MAX_SYMLINKS = 40


def _fstab_line(source: str, target: str, fstype: str, options: str) -> str:
    """An fstab line, with getmntent(3)'s escapes for whitespace and backslashes."""
    esc = {" ": "\\040", "\t": "\\011", "\n": "\\012", "\\": "\\134"}
    source, target = ("".join(esc.get(c, c) for c in f) for f in (source, target))
    return f"{source} {target} {fstype} {options or 'defaults'} 0 0"


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def resolve_in_root(root: str, path: str) -> str:
    """`path` as seen inside `root`: symlinks among its existing components resolved there (absolute ones
    restart at `root`), '..' stopped at `root`. The guest gets mount points without symlinks, since it
    would resolve them against its initramfs."""
    done: list[str] = []
    parts = [p for p in path.split("/") if p not in ("", ".")]
    links, missing = 0, False
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        if not missing:
            try:
                st = os.lstat(os.path.join(root, *done, part))
            except (FileNotFoundError, NotADirectoryError):
                missing = True
            else:
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > _MAX_SYMLINKS:
                        raise OSError(errno.ELOOP, f"too many symlinks resolving {path} in the rootfs")
                    target = os.readlink(os.path.join(root, *done, part))
                    if target.startswith("/"):
                        done = []
                    parts[:0] = [p for p in target.split("/") if p not in ("", ".")]
                    continue
        done.append(part)
    return "/" + "/".join(done)


def host_executable(spec: dict[str, Any], rootfs: str) -> str | None:
    """args[0] looked up in the process's PATH inside the rootfs, here on the host, with the agent's rule
    (agent._resolve_command: the first directory holding the name, else the first directory, for exec to
    fail there with 127): the guest is spared a lookup through virtiofs per directory (≈2 ms each under
    TCG). None when a mount of the spec's covers one of those directories, which only the guest sees."""
    process = spec.get("process") or {}
    name = (process.get("args") or [""])[0]
    if not name or "/" in name:
        return name or None
    mounts = [
        resolve_in_root(rootfs, os.path.normpath(m.get("destination") or "/"))
        for m in spec.get("mounts") or []
    ]
    dirs = agent.search_path([e for e in process.get("env") or [] if "=" in e])
    for d in dirs:
        where = resolve_in_root(rootfs, d)
        if any(_under(where, m) or _under(m, where) for m in mounts if m not in _STANDARD):
            return None
        if os.path.lexists(os.path.join(rootfs, where.lstrip("/"), name)):
            return f"{d.rstrip('/')}/{name}"
    return f"{dirs[0].rstrip('/')}/{name}"


class _Mounts:
    """The container's mounts as fstab files for the agent's `mounts` (one `mount -a` each, in spec order).

    With `root`, mount points are made on the host, inside the rootfs (the way runc makes them, and with
    their symlinks resolved there), so the guest creates nothing; only a mount point inside an earlier mount
    (a tmpfs, a volume, /dev) must be made by the guest once that is mounted: it is listed for the agent,
    in a new table if the earlier mount is in the current one."""

    def __init__(self, root: str | None, head: list[str]) -> None:
        self.root = root
        self.steps: list[str] = []
        self.files: list[tuple[str, bytes, int]] = []
        self._lines = list(head)
        self._points: list[str] = []  # DIR/ or FILE, for the agent to create when missing
        self._dests: list[str] = []  # this table's
        self._mounted: list[str] = []  # all tables'
        self._read_only: list[str] = []

    def host_file_point(self, dest: str) -> str | None:
        """The mount point for a single-file bind at `dest`, made in the rootfs on the host, when the host can
        bind there: not inside a mount the guest makes. None otherwise."""
        if self.root is None:
            return None
        target = resolve_in_root(self.root, dest)
        if any(_under(target, d) for d in self._mounted):
            return None
        try:
            fd = open_in_root(self.root, target, create="file")
        except OSError as e:
            raise IntermodalError(f"cannot make the mount point {dest} in the rootfs: {e}") from None
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                raise InvalidArgument(f"cannot bind a file onto {dest}: the image has a directory there")
        finally:
            os.close(fd)
        return target

    def add(
        self, source: str, dest: str, fstype: str, options: str, create: str = "", ro_bind: bool = False
    ) -> None:
        """`create`: "dir" or "file", the mount point to make when missing."""
        target = dest
        if create and self.root is not None:
            target = resolve_in_root(self.root, dest)
            if not any(_under(target, d) for d in self._mounted):
                try:
                    os.close(open_in_root(self.root, target, create=create))
                except OSError as e:
                    raise IntermodalError(f"cannot make the mount point {dest} in the rootfs: {e}") from None
                create = ""
        if create:
            if any(_under(target, d) for d in self._dests):
                self.flush()
            self._points.append(f"{target}/" if create == "dir" else target)
        self._lines.append(_fstab_line(source, "/newroot" + target, fstype, options))
        self._dests.append(target)
        self._mounted.append(target)
        if ro_bind:
            self._read_only.append(target)  # mount(8) binds read-write whatever the options: remount

    def flush(self) -> None:
        if not self._lines:
            return
        name = f"fstab{len(self.files)}"
        self.files.append((name, "".join(line + "\n" for line in self._lines).encode(), 0o644))
        self.steps.append(" ".join(["mounts", f"/files/{name}", *(shlex.quote(p) for p in self._points)]))
        self.steps += [f"remount_ro {shlex.quote(d)}" for d in self._read_only]
        self._lines, self._points, self._dests, self._read_only = [], [], [], []


def guest_config(
    spec: dict[str, Any], plan: Plan, *, host_mount_points: bool = False
) -> tuple[str, list[tuple[str, bytes, int]]]:
    """config.sh for the agent (fstab tables of all its mounts: its own /proc, /sys and /dev, the rootfs, then
    the container's in the spec's order) and the files to put in the initramfs (the tables and single-file
    binds); fills `plan.shares`. `host_mount_points`: make the mount points in `plan.rootfs` now, and bind
    single files there on the host (`plan.root_files`) rather than copy them."""
    q = shlex.quote
    ro = "ro" if plan.root_readonly else "rw"
    if host_mount_points and plan.rootfs_transport == "virtiofs":
        # The host makes the share read-only (shim.py), around the files it binds into it: the guest's mount
        # stays read-write, or a read-only superblock would refuse writes to /etc/hosts too.
        ro = "rw"
    if plan.rootfs_transport == "ext4":  # the disk appears after the agent's /dev: mount it on its own
        steps, head = ["mounts /etc/fstab", f"root_ext4 /dev/vda {ro}"], []
    else:  # everything in one `mount -a`
        steps = []
        head = [line for line in agent.FSTAB.splitlines() if line] + [
            _fstab_line("rootfs", NEWROOT, "virtiofs", ro)
        ]
    mounts = _Mounts(plan.rootfs if host_mount_points else None, head)
    for std_source, std_dest, std_type, std_options, std_create in _STD_FSTAB:
        mounts.add(std_source, std_dest, std_type, std_options, std_create)
    binds: list[tuple[str, bytes, int]] = []
    for m in spec.get("mounts") or []:
        dest = os.path.normpath(m.get("destination") or "")
        options = m.get("options") or []
        is_bind = m.get("type") == "bind" or "bind" in options or "rbind" in options
        if dest in _STANDARD or not dest.startswith("/"):
            continue
        if m.get("type") == "tmpfs":
            kept = [o for o in options if o in _TMPFS_FLAGS or o.startswith(_TMPFS_OPTIONS)]
            mounts.add("tmpfs", dest, "tmpfs", ",".join(kept), "dir")
        elif is_bind:
            source = m.get("source") or ""
            readonly = "ro" in options
            if os.path.isdir(source):
                tag = f"vol{len(plan.shares)}"
                plan.shares.append(Share(tag, os.path.realpath(source), readonly))
                mounts.add(tag, dest, "virtiofs", "ro" if readonly else "rw", "dir")
            elif os.path.isfile(source):
                point = mounts.host_file_point(dest) if plan.rootfs_transport == "virtiofs" else None
                if point is not None:
                    plan.root_files.append([os.path.abspath(source), point, readonly])
                    continue
                name = f"f{len(binds)}"
                st = os.stat(source)
                binds.append((name, Path(source).read_bytes(), st.st_mode & 0o777))
                mounts.add(f"/files/{name}", dest, "none", "bind", "file", ro_bind=readonly)
            else:
                raise InvalidArgument(f"mount source {source} for {dest} does not exist or is not a file")
    mounts.flush()
    steps += mounts.steps
    if spec.get("hostname"):
        steps.append(f"set_hostname {q(spec['hostname'])}")
    if plan.nic:
        nic = plan.nic
        steps.append(f"net_setup {q(nic['address'])} {q(nic['gateway'] or '-')} {int(nic['mtu'])}")
    body = "\n".join(f"    {s}" for s in steps)
    config = f"configure() {{\n{body}\n}}\n"
    return config, [*binds, *mounts.files]


def make_ext4(rootfs: Path, image: Path) -> None:
    """An ext4 image of the rootfs directory (mkfs.ext4 -d copies the tree; no journal: it is scratch)."""
    if not shutil.which("mkfs.ext4"):
        raise IntermodalError("mkfs.ext4 not found: install Debian's e2fsprogs")
    used = sum(
        os.lstat(os.path.join(d, f)).st_size for d, _, files in os.walk(rootfs) for f in files
    )  # fmt: skip
    size_mib = max(64, math.ceil(used * 1.5 / (1 << 20)) + 64)
    with open(image, "wb") as f:
        f.truncate(size_mib << 20)
    result = subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-E", "lazy_itable_init=1", "-d", str(rootfs), str(image)],
        capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        image.unlink(missing_ok=True)
        raise IntermodalError(f"cannot build the VM's rootfs image: {result.stderr.strip()}")
