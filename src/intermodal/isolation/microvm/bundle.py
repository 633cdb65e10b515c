"""From an OCI bundle to a VM: what the guest mounts and runs, and what the host shares with it.

The guest sees its image, the declared volumes and nothing else of the host: directory binds and named
volumes become virtiofs shares (one virtiofsd each, confined to that directory), tmpfs mounts are made in
the guest, and single-file binds (the engine's /etc/hosts, /etc/hostname, /etc/resolv.conf, --init's tini)
are copied into the initramfs and bound from there, since virtiofs shares directories only.
The spec's network namespace is where QEMU runs and the guest's NIC takes the container's address
(network.py); its other namespaces, cgroups, seccomp and capabilities are not applied: the VM boundary
replaces them."""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from intermodal.errors import IntermodalError, InvalidArgument
from intermodal.isolation.microvm import qemu

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
    ("proc", "/proc", "proc", "defaults"),
    ("sysfs", "/sys", "sysfs", "ro,nosuid,nodev,noexec"),
    ("/dev.oci", "/dev", "none", "bind"),
    ("devpts", "/dev/pts", "devpts", "newinstance,ptmxmode=0666,mode=620"),
    ("shm", "/dev/shm", "tmpfs", "nosuid,nodev,noexec,size=65536k"),
    ("mqueue", "/dev/mqueue", "mqueue", "nofail"),  # not every kernel has POSIX message queues
)


def _fstab_field(text: str) -> str:
    """getmntent(3)'s escapes for whitespace and backslashes in an fstab field."""
    return "".join({" ": "\\040", "\t": "\\011", "\n": "\\012", "\\": "\\134"}.get(c, c) for c in text)


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


class _Mounts:
    """The container's mounts as fstab files for the agent's `mounts` (one `mount -a` each, in spec order).
    A table's mount points are created before it is mounted, so a mount point under an earlier mount of the
    same table starts a new table (it has to be made inside that mount)."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.files: list[tuple[str, bytes, int]] = []
        self._lines: list[str] = []
        self._points: list[str] = []  # DIR/ or FILE, for the agent to create when missing
        self._dests: list[str] = []
        self._read_only: list[str] = []

    def add(
        self, source: str, dest: str, fstype: str, options: str, *, point: str = "", ro_bind: bool = False
    ) -> None:
        """`point`: the mount point to create (`dest/` for a directory, `dest` for a file to bind)."""
        if point and any(_under(point.rstrip("/") or "/", d) for d in self._dests):
            self.flush()
        self._lines.append(
            f"{_fstab_field(source)} {_fstab_field('/newroot' + dest)} {fstype} {options or 'defaults'} 0 0"
        )
        if point:
            self._points.append(point)
        self._dests.append(dest)
        if ro_bind:
            self._read_only.append(dest)  # mount(8) binds read-write whatever the options: remount

    def flush(self) -> None:
        if not self._lines:
            return
        name = f"fstab{len(self.files)}"
        self.files.append((name, "".join(line + "\n" for line in self._lines).encode(), 0o644))
        self.steps.append(" ".join(["mounts", f"/files/{name}", *(shlex.quote(p) for p in self._points)]))
        self.steps += [f"remount_ro {shlex.quote(d)}" for d in self._read_only]
        self._lines, self._points, self._dests, self._read_only = [], [], [], []


def guest_config(spec: dict[str, Any], plan: Plan) -> tuple[str, list[tuple[str, bytes, int]]]:
    """config.sh for the agent (the rootfs, then fstab files of the other mounts in the spec's order) and
    the files to put in the initramfs (fstabs and single-file binds); fills `plan.shares`."""
    q = shlex.quote
    ro = "ro" if plan.root_readonly else "rw"
    steps = [f"root_ext4 /dev/vda {ro}" if plan.rootfs_transport == "ext4" else f"root_virtiofs rootfs {ro}"]
    mounts = _Mounts()
    for std_source, std_dest, std_type, std_options in _STD_FSTAB:
        mounts.add(
            std_source,
            std_dest,
            std_type,
            std_options,
            point=f"{std_dest}/" if std_dest.count("/") == 1 else "",
        )
    binds: list[tuple[str, bytes, int]] = []
    for m in spec.get("mounts") or []:
        dest = os.path.normpath(m.get("destination") or "")
        options = m.get("options") or []
        is_bind = m.get("type") == "bind" or "bind" in options or "rbind" in options
        if dest in _STANDARD or not dest.startswith("/"):
            continue
        if m.get("type") == "tmpfs":
            kept = [o for o in options if o in _TMPFS_FLAGS or o.startswith(_TMPFS_OPTIONS)]
            mounts.add("tmpfs", dest, "tmpfs", ",".join(kept), point=f"{dest}/")
        elif is_bind:
            source = m.get("source") or ""
            readonly = "ro" in options
            if os.path.isdir(source):
                tag = f"vol{len(plan.shares)}"
                plan.shares.append(Share(tag, os.path.realpath(source), readonly))
                mounts.add(tag, dest, "virtiofs", "ro" if readonly else "rw", point=f"{dest}/")
            elif os.path.isfile(source):
                name = f"f{len(binds)}"
                st = os.stat(source)
                binds.append((name, Path(source).read_bytes(), st.st_mode & 0o777))
                mounts.add(f"/files/{name}", dest, "none", "bind", point=dest, ro_bind=readonly)
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
