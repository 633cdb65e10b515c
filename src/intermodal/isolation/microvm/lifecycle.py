"""The VM runtime's operations (runtime.md "Operations"), shared by its command line and by the engine,
which calls them in-process for foreground runs. `create` prepares the boot (kernel, initramfs, rootfs,
accelerator), forks the shim and records its PID; the shim's exit status is the workload's.

State: `<root>/<id>/` holds state.json (runtime/state.py's format), vm.json (the plan), exec.fifo (until
`start`), the sockets of QEMU's channels and of the shim, pids.json, the initramfs, logs and, with the ext4
transport, the rootfs image. Shared assets (kernel, initramfs base, accelerator verdict) live in
`$INTERMODAL_VM_DIR`, by default `<root>/.assets`. For `inspect`, create writes `<bundle>/vm.json`
(isolation, accelerator, guest kernel, RAM, vCPUs), to which the shim adds ExitReason when the VM dies."""

from __future__ import annotations

import array
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import stat
import termios
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intermodal.errors import Conflict, IntermodalError, InvalidArgument, NotFound
from intermodal.isolation.microvm import ANNOTATION_ACCEL, ANNOTATION_KERNEL, BUNDLE_INFO
from intermodal.runtime.cgroups import open_cgroup
from intermodal.runtime.state import CREATED, RUNNING, State, Store, process_start_time

if TYPE_CHECKING:
    from intermodal.isolation.microvm import shim
    from intermodal.isolation.oci import GuestProcess


def assets_dir(root: Path) -> Path:
    return Path(os.environ.get("INTERMODAL_VM_DIR") or root / ".assets")


def stdin_attached() -> bool:
    """The engine gives a non-interactive container /dev/null; anything else is forwarded to the guest."""
    try:
        st = os.fstat(0)
    except OSError:
        return False
    return not (stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3)


def _send_fd(socket_path: str, fd: int) -> None:
    """runc's console-socket protocol: the pty master as SCM_RIGHTS."""
    from intermodal.isolation.microvm.shim import short_path

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        with short_path(Path(socket_path)) as p:
            sock.connect(p)
        sock.sendmsg([b"console"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])


def open_pty(console_socket: str | None) -> int:
    """A pty whose master goes to the caller; returns the slave, raw (the guest's tty does the line discipline)."""
    if not console_socket:
        raise InvalidArgument("process.terminal is set but no --console-socket was given")
    master, slave = os.openpty()
    tty.setraw(slave)
    _send_fd(console_socket, master)
    os.close(master)
    return slave


def fork_into(
    body: Callable[[], int], slave: int | None, pid_file: str | None, keep: tuple[int, ...] = ()
) -> int:
    """Fork the long-lived half (shim or detached exec) in its own session, like runc's init, holding only
    its stdio and `keep`: an inherited lock or pipe of the caller's (the engine's, conmon's) must not live on
    in it."""
    pid = os.fork()
    if pid == 0:
        code = 255
        try:
            os.setsid()
            if slave is not None:
                for fd in (0, 1, 2):
                    os.dup2(slave, fd)
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            low = 3
            for fd in sorted(keep):
                os.closerange(low, fd)
                low = fd + 1
            os.closerange(low, os.sysconf("SC_OPEN_MAX"))
            code = body()
        except BaseException as e:  # noqa: BLE001 - the child must never return into its caller
            with contextlib.suppress(OSError):
                os.write(2, f"intermodal-vm-runtime: {e}\n".encode())
        finally:
            os._exit(code)
    if slave is not None:
        os.close(slave)
    if pid_file:
        Path(pid_file).write_text(str(pid))
    return pid


def create(root: Path, cid: str, bundle: Path, pid_file: str | None, console_socket: str | None) -> int:
    """Validate, build the boot, fork the shim (it boots QEMU at once) and return its PID."""
    from intermodal.isolation.microvm import agent, initramfs, kernel, network, probe, qemu, shim
    from intermodal.isolation.microvm import bundle as vmbundle

    store = Store(root)
    state_dir = store.reserve(cid)
    try:
        bundle_dir = bundle.resolve()
        spec = vmbundle.load_spec(bundle_dir)
        annotations = spec.get("annotations") or {}
        qemu.binary()
        memory, cpus = vmbundle.resources(spec)
        assets = assets_dir(root)
        assets.mkdir(parents=True, exist_ok=True)
        guest = kernel.resolve(assets, annotations.get(ANNOTATION_KERNEL))
        base = initramfs.base_image(guest, assets / "initramfs")
        plan = vmbundle.Plan(
            id=cid, bundle=str(bundle_dir), rootfs=str(vmbundle.rootfs_path(spec, bundle_dir)),
            rootfs_transport=vmbundle.ROOTFS_TRANSPORT, root_readonly=bool((spec.get("root") or {}).get("readonly")),
            memory_mib=memory, cpus=cpus, kernel=str(guest.vmlinux), kernel_release=guest.release,
            kernel_source=guest.source, process=spec["process"],
        )  # fmt: skip
        if not os.path.isdir(plan.rootfs):
            raise InvalidArgument(f"the bundle's root.path {plan.rootfs} is not a directory")
        plan.cgroup = (spec.get("linux") or {}).get("cgroupsPath") or ""
        cpu = ((spec.get("linux") or {}).get("resources") or {}).get("cpu") or {}
        plan.netns = network.netns_path(spec)
        nic = network.prepare(plan.netns) if plan.netns else None
        plan.nic = nic.as_dict() if nic else None
        plan.accel = probe.resolve(annotations.get(ANNOTATION_ACCEL) or "auto", assets, guest.vmlinux, base)
        config, files = vmbundle.guest_config(spec, plan, host_mount_points=True)
        attach, nonce = stdin_attached(), agent.new_nonce()
        terminal = bool(plan.process.get("terminal"))
        exe = vmbundle.host_executable(spec, plan.rootfs)
        config += agent.start_config(
            plan.process, attach_stdin=attach, nonce=nonce, terminal=terminal, exe=exe
        )
        net_modules = guest.net_modules if plan.nic else ()
        plan.initrd = str(initramfs.vm_image(base, config, files, state_dir / "initrd.cpio", net_modules))
        if plan.rootfs_transport == "ext4":
            plan.rootfs_image = str(state_dir / "rootfs.ext4")
            vmbundle.make_ext4(Path(plan.rootfs), Path(plan.rootfs_image))
        plan.save(state_dir / "vm.json")
        info = {"Isolation": "vm", "Accelerator": plan.accel, "Kernel": plan.kernel_release,
                "KernelImage": plan.kernel, "KernelSource": plan.kernel_source, "MemoryMiB": memory,
                "CPUs": cpus, "RootfsTransport": plan.rootfs_transport}  # fmt: skip
        (bundle_dir / BUNDLE_INFO).write_text(json.dumps(info))
        os.mkfifo(state_dir / "exec.fifo", 0o600)
        fifo = os.open(state_dir / "exec.fifo", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        fifo_keep = os.open(state_dir / "exec.fifo", os.O_WRONLY | os.O_CLOEXEC)
        slave = open_pty(console_socket) if terminal else None
        try:
            pid = fork_into(
                lambda: _shim_main(shim.Shim(state_dir, plan, attach_stdin=attach, nonce=nonce, start_fifo=(fifo, fifo_keep)), cpu),
                slave, None, keep=(fifo, fifo_keep),
            )  # fmt: skip
        finally:
            os.close(fifo)
            os.close(fifo_keep)
        state = State(id=cid, bundle=str(bundle_dir), pid=pid, pid_start=process_start_time(pid) or 0,
                      created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      annotations={f"org.intermodal.vm.{k.lower()}": str(v) for k, v in info.items()})  # fmt: skip
        store.save(state)
        if pid_file:
            Path(pid_file).write_text(str(pid))
        return pid
    except BaseException:
        cleanup(state_dir)
        raise


def _shim_main(vm: shim.Shim, cpu: dict[str, Any]) -> int:
    """The shim in the container's cgroup, so `stats` and `pause` work on the VM's processes. Only the CPU
    limits apply there (`--cpus` throttles QEMU): the memory limit is the guest's RAM, which QEMU exceeds."""
    if vm.plan.cgroup:
        with contextlib.suppress(OSError, IntermodalError):
            group = open_cgroup(vm.plan.cgroup)
            group.create({"cpu": cpu} if cpu else {})
            group.add_process(os.getpid())
    return vm.run()


def _remove_cgroup(state_dir: Path) -> None:
    with contextlib.suppress(OSError, ValueError, KeyError, IntermodalError):
        path = json.loads((state_dir / "vm.json").read_text())["cgroup"]
        if path:
            group = open_cgroup(path)
            if group.exists():
                group.delete()


def start(root: Path, cid: str) -> None:
    """Let the shim run the workload (one byte into the exec fifo, as runc does)."""
    store = Store(root)
    state = store.load(cid)
    if store.status(state) != CREATED:
        raise Conflict(f"container {cid} is not in the created state")
    fd = os.open(store.fifo(cid), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        os.write(fd, b"1")
    finally:
        os.close(fd)


def state(root: Path, cid: str) -> dict[str, Any]:
    store = Store(root)
    current = store.load(cid)
    return current.oci(store.status(current))


def kill(root: Path, cid: str, signum: int) -> None:
    """Signal the shim, which forwards the signal to the workload through the agent."""
    current = Store(root).load(cid)
    if not current.alive():
        raise Conflict(f"container {cid} is not running")
    os.kill(current.pid, signum)


def delete(root: Path, cid: str, force: bool) -> None:
    """Stop what is left (shim, QEMU, virtiofsd) and remove the state, images and sockets."""
    store = Store(root)
    try:
        current = store.load(cid)
    except NotFound:
        if not force:
            raise
        cleanup(store.dir(cid))  # a create that died half-way leaves no state.json
        return
    if current.alive():
        if not force:
            raise Conflict(f"container {cid} is {store.status(current)}: stop it or use --force")
        os.kill(current.pid, signal.SIGKILL)
    cleanup(store.dir(cid))


def drop_guest_caches(root: Path, cid: str, timeout: float = 10.0) -> None:
    """Have the guest forget what it cached of its rootfs (shim.py: the rootfs share is cache=always), and
    wait until it has, so that what the host just wrote is what the container reads next."""
    from intermodal.isolation.microvm.shim import connect

    store = Store(root)
    if store.status(store.load(cid)) != RUNNING:
        return
    with connect(store.dir(cid) / "shim.sock") as sock:
        sock.settimeout(timeout)
        sock.sendall(b"drop_caches\n")
        sock.recv(64)


def guest_processes(root: Path, cid: str, timeout: float = 10.0) -> list[GuestProcess]:
    """The container's processes in the guest (`top`): the agent's `ps` report (agent.py), with times made
    absolute by the host's clock from the guest's uptime."""
    from intermodal.isolation.microvm.shim import connect
    from intermodal.isolation.oci import GuestProcess

    store = Store(root)
    if store.status(store.load(cid)) != RUNNING:
        raise Conflict(f"container {cid} is not running")
    report = b""
    with connect(store.dir(cid) / "shim.sock") as sock:
        sock.settimeout(timeout)
        sock.sendall(b"ps\n")
        while b"ps-end " not in report or not report.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise IntermodalError("the VM ended before it listed its processes")
            report += chunk
    now = time.time()
    lines = report.decode(errors="replace").splitlines()
    uptime = float(lines[-1].split()[1])
    processes = []
    for line in lines[:-1]:
        fields = line.split(None, 8)
        pid, ppid, uid, start, utime, stime, tty_nr = (int(f) for f in fields[1:8])
        processes.append(GuestProcess(
            pid=pid, ppid=ppid, uid=uid, started=now - uptime + start / _GUEST_HZ,
            cpu_seconds=(utime + stime) / _GUEST_HZ, tty=_tty_name(tty_nr), command=fields[8].strip(),
        ))  # fmt: skip
    return sorted(processes, key=lambda p: p.pid)


_GUEST_HZ = 100  # USER_HZ, the unit of /proc/PID/stat's times: 100 on x86 whatever the kernel's HZ


def _tty_name(tty_nr: int) -> str:
    """/proc/PID/stat's tty_nr as ps names it (Documentation/admin-guide/devices.txt): the guest's consoles
    (hvc, major 229), ptys (136-143) and serial ports (4, from minor 64)."""
    major, minor = (tty_nr >> 8) & 0xFFF, (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if tty_nr == 0:
        return "?"
    if major == 229:
        return f"hvc{minor}"
    if 136 <= major <= 143:
        return f"pts/{(major - 136) * 256 + minor}"
    if major == 4 and minor >= 64:
        return f"ttyS{minor - 64}"
    if (major, minor) == (5, 1):
        return "console"
    return f"{major}:{minor}"


def running_plan(root: Path, cid: str) -> tuple[Path, dict[str, Any]]:
    """The state dir and OCI process of a running VM, for `exec`."""
    store = Store(root)
    if store.status(store.load(cid)) != RUNNING:
        raise Conflict(f"container {cid} is not running")
    from intermodal.isolation.microvm.bundle import Plan

    return store.dir(cid), Plan.load(store.dir(cid) / "vm.json").process


def cleanup(state_dir: Path) -> None:
    """Kill QEMU and the helpers by their recorded PIDs (checked against their command line, against PID
    reuse), wait for them, then remove the directory."""
    try:
        pids = json.loads((state_dir / "pids.json").read_text())
    except (OSError, ValueError):
        pids = {}
    mine = [p for p in [pids.get("qemu", 0), *pids.get("helpers", [])] if p and _started_here(p)]
    for pid in mine:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(process_start_time(p) for p in mine) and time.monotonic() < deadline:
        time.sleep(0.01)
    _remove_cgroup(state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)


def _started_here(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"qemu-system" in cmdline or b"virtiofsd" in cmdline
