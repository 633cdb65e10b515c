"""`intermodal-vm-runtime`: runc's command line over micro-VMs, so the engine and conmon drive a VM exactly
like a container. `create` prepares the boot (kernel, initramfs, rootfs, accelerator), forks the shim and
writes its PID; the shim's exit status is the workload's.

State: `<root>/<id>/` holds state.json (runtime/state.py's format), vm.json (the plan), exec.fifo (until
`start`), the sockets of QEMU's channels and of the shim, pids.json, the initramfs, logs and, with the ext4
transport, the rootfs image. Shared assets (kernel, initramfs base, accelerator verdict) live in
`$INTERMODAL_VM_DIR`, by default `<root>/.assets`. For `inspect`, create writes `<bundle>/vm.json`."""

from __future__ import annotations

import array
import contextlib
import fcntl
import json
import os
import signal
import socket
import stat
import sys
import termios
import time
import tty
from pathlib import Path
from typing import Any, NoReturn

import click

from intermodal.errors import Conflict, IntermodalError, InvalidArgument, NotFound
from intermodal.isolation.microvm import ANNOTATION_ACCEL, ANNOTATION_KERNEL
from intermodal.runtime.state import CREATED, RUNNING, State, Store, process_start_time

_ROOT = "/run/intermodal/vm-runtime"


def _fail(err: Exception, ctx: click.Context) -> NoReturn:
    log = ctx.obj.get("log")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"level": "error", "msg": str(err)}) + "\n" if ctx.obj["json"] else f"{err}\n")
    click.echo(f"intermodal-vm-runtime: {err}", err=True)
    sys.exit(err.exit_code if isinstance(err, IntermodalError) and err.exit_code != 125 else 1)


def assets_dir(root: Path) -> Path:
    return Path(os.environ.get("INTERMODAL_VM_DIR") or root / ".assets")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", default=_ROOT, show_default=True, help="Directory for VM state.")
@click.option("--log", type=click.Path(dir_okay=False), help="Append errors to this file.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text")
@click.option("--systemd-cgroup", is_flag=True, hidden=True)
@click.option("--debug", is_flag=True, hidden=True)
@click.pass_context
def cli(
    ctx: click.Context, root: str, log: str | None, log_format: str, systemd_cgroup: bool, debug: bool
) -> None:
    """Run OCI bundles in QEMU micro-VMs (runc-compatible)."""
    ctx.obj = {"root": Path(root), "log": log, "json": log_format == "json"}


def _stdin_attached() -> bool:
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


def _open_pty(console_socket: str | None) -> int:
    """A pty whose master goes to the caller; returns the slave, raw (the guest's tty does the line discipline)."""
    if not console_socket:
        raise InvalidArgument("process.terminal is set but no --console-socket was given")
    master, slave = os.openpty()
    tty.setraw(slave)
    _send_fd(console_socket, master)
    os.close(master)
    return slave


def _fork_into(body: Any, slave: int | None, pid_file: str | None) -> int:
    """Fork the long-lived half (shim or detached exec); the child gets its own session, like runc's init."""
    pid = os.fork()
    if pid == 0:
        code = 255
        try:
            os.setsid()
            if slave is not None:
                for fd in (0, 1, 2):
                    os.dup2(slave, fd)
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            code = body()
        except BaseException as e:  # noqa: BLE001 - the child must never return into click
            with contextlib.suppress(OSError):
                os.write(2, f"intermodal-vm-runtime: {e}\n".encode())
        finally:
            os._exit(code)
    if slave is not None:
        os.close(slave)
    if pid_file:
        Path(pid_file).write_text(str(pid))
    return pid


@cli.command()
@click.argument("container_id")
@click.option("--bundle", "-b", default=".", type=click.Path(file_okay=False, exists=True))
@click.option("--pid-file", type=click.Path(dir_okay=False))
@click.option("--console-socket", type=click.Path(dir_okay=False))
@click.option("--preserve-fds", type=int, default=0, hidden=True)
@click.option("--no-pivot", is_flag=True, hidden=True)
@click.option("--no-new-keyring", is_flag=True, hidden=True)
@click.pass_context
def create(ctx: click.Context, container_id: str, bundle: str, pid_file: str | None, console_socket: str | None,
           preserve_fds: int, no_pivot: bool, no_new_keyring: bool) -> None:  # fmt: skip
    """Prepare the VM and start its shim; the workload waits for `start`."""
    from intermodal.isolation.microvm import bundle as vmbundle
    from intermodal.isolation.microvm import initramfs, kernel, probe, qemu, shim

    store = Store(ctx.obj["root"])
    try:
        state_dir = store.reserve(container_id)
    except IntermodalError as e:
        _fail(e, ctx)
    try:
        bundle_dir = Path(bundle).resolve()
        spec = vmbundle.load_spec(bundle_dir)
        annotations = spec.get("annotations") or {}
        qemu.binary()
        memory, cpus = vmbundle.resources(spec)
        assets = assets_dir(ctx.obj["root"])
        assets.mkdir(parents=True, exist_ok=True)
        guest = kernel.resolve(assets, annotations.get(ANNOTATION_KERNEL))
        base = initramfs.base_image(guest, assets / "initramfs")
        plan = vmbundle.Plan(
            id=container_id, bundle=str(bundle_dir), rootfs=str(vmbundle.rootfs_path(spec, bundle_dir)),
            rootfs_transport=vmbundle.ROOTFS_TRANSPORT, root_readonly=bool((spec.get("root") or {}).get("readonly")),
            memory_mib=memory, cpus=cpus, kernel=str(guest.vmlinux), kernel_release=guest.release,
            kernel_source=guest.source, process=spec["process"],
        )  # fmt: skip
        if not os.path.isdir(plan.rootfs):
            raise InvalidArgument(f"the bundle's root.path {plan.rootfs} is not a directory")
        plan.accel = probe.resolve(annotations.get(ANNOTATION_ACCEL) or "auto", assets, guest.vmlinux, base)
        config, files = vmbundle.guest_config(spec, plan)
        plan.initrd = str(initramfs.vm_image(base, config, files, state_dir / "initrd.cpio"))
        if plan.rootfs_transport == "ext4":
            plan.rootfs_image = str(state_dir / "rootfs.ext4")
            vmbundle.make_ext4(Path(plan.rootfs), Path(plan.rootfs_image))
        plan.save(state_dir / "vm.json")
        info = {"Isolation": "vm", "Accelerator": plan.accel, "Kernel": plan.kernel_release,
                "KernelImage": plan.kernel, "KernelSource": plan.kernel_source, "MemoryMiB": memory,
                "CPUs": cpus, "RootfsTransport": plan.rootfs_transport}  # fmt: skip
        (bundle_dir / "vm.json").write_text(json.dumps(info))
        os.mkfifo(state_dir / "exec.fifo", 0o600)
        slave = _open_pty(console_socket) if plan.process.get("terminal") else None
        attach = _stdin_attached()
        pid = _fork_into(lambda: shim.Shim(state_dir, plan, attach_stdin=attach).run(), slave, None)
        state = State(id=container_id, bundle=str(bundle_dir), pid=pid, pid_start=process_start_time(pid) or 0,
                      created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      annotations={f"org.intermodal.vm.{k.lower()}": str(v) for k, v in info.items()})  # fmt: skip
        store.save(state)
        if pid_file:
            Path(pid_file).write_text(str(pid))
    except (IntermodalError, OSError) as e:
        _cleanup(state_dir)
        _fail(e, ctx)


@cli.command()
@click.argument("container_id")
@click.pass_context
def start(ctx: click.Context, container_id: str) -> None:
    """Let the shim run the workload (one byte into the exec fifo, as runc does)."""
    store = Store(ctx.obj["root"])
    try:
        state = store.load(container_id)
        if store.status(state) != CREATED:
            raise Conflict(f"container {container_id} is not in the created state")
        fd = os.open(store.fifo(container_id), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            os.write(fd, b"1")
        finally:
            os.close(fd)
    except (IntermodalError, OSError) as e:
        _fail(e, ctx)


@cli.command()
@click.argument("container_id")
@click.pass_context
def state(ctx: click.Context, container_id: str) -> None:
    """Print the OCI state JSON (the pid is the shim's)."""
    store = Store(ctx.obj["root"])
    try:
        current = store.load(container_id)
        click.echo(json.dumps(current.oci(store.status(current)), indent=2))
    except (IntermodalError, OSError) as e:
        _fail(e, ctx)


@cli.command()
@click.argument("container_id")
@click.argument("signal_name", metavar="SIGNAL", default="SIGTERM")
@click.option("--all", "-a", "all_processes", is_flag=True, help="Accepted for runc compatibility.")
@click.pass_context
def kill(ctx: click.Context, container_id: str, signal_name: str, all_processes: bool) -> None:
    """Signal the workload (through the shim, which forwards it to the guest agent)."""
    from intermodal.runtime.container import parse_signal

    store = Store(ctx.obj["root"])
    try:
        current = store.load(container_id)
        if not current.alive():
            raise Conflict(f"container {container_id} is not running")
        os.kill(current.pid, parse_signal(signal_name))
    except (IntermodalError, OSError) as e:
        _fail(e, ctx)


@cli.command()
@click.argument("container_id")
@click.option("--force", "-f", is_flag=True, help="Kill the VM first if it is running.")
@click.pass_context
def delete(ctx: click.Context, container_id: str, force: bool) -> None:
    """Stop what is left (shim, QEMU, virtiofsd) and remove the state, images and sockets."""
    store = Store(ctx.obj["root"])
    try:
        current = store.load(container_id)
        if current.alive():
            if not force:
                raise Conflict(f"container {container_id} is {store.status(current)}: stop it or use --force")
            os.kill(current.pid, signal.SIGKILL)
        _cleanup(store.dir(container_id))
    except NotFound:
        if force:
            _cleanup(store.dir(container_id))
            return
        _fail(NotFound(f"container {container_id!r} does not exist"), ctx)
    except (IntermodalError, OSError) as e:
        _fail(e, ctx)


def _cleanup(state_dir: Path) -> None:
    """Kill QEMU and the helpers by their recorded PIDs (checked against their command line, against PID
    reuse), wait for them, then remove the directory."""
    import shutil

    try:
        pids = json.loads((state_dir / "pids.json").read_text())
    except (OSError, ValueError):
        pids = {}
    mine = [p for p in [pids.get("qemu", 0), *pids.get("helpers", [])] if p and _started_here(p, state_dir)]
    for pid in mine:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(process_start_time(p) for p in mine) and time.monotonic() < deadline:
        time.sleep(0.01)
    shutil.rmtree(state_dir, ignore_errors=True)


def _started_here(pid: int, state_dir: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"qemu" in cmdline or b"virtiofsd" in cmdline or str(state_dir).encode() in cmdline


@cli.command("exec", context_settings={"allow_interspersed_args": False})
@click.argument("container_id")
@click.argument("command", nargs=-1)
@click.option("--process", "-p", "process_file", type=click.Path(dir_okay=False, exists=True))
@click.option("--tty", "-t", is_flag=True)
@click.option("--console-socket", type=click.Path(dir_okay=False))
@click.option("--pid-file", type=click.Path(dir_okay=False))
@click.option("--detach", "-d", is_flag=True)
@click.option("--cwd")
@click.option("--env", "-e", multiple=True)
@click.option("--user", "-u")
@click.option("--preserve-fds", type=int, default=0, hidden=True)
@click.pass_context
def exec_(ctx: click.Context, container_id: str, command: tuple[str, ...], process_file: str | None, tty: bool,
          console_socket: str | None, pid_file: str | None, detach: bool, cwd: str | None, env: tuple[str, ...],
          user: str | None, preserve_fds: int) -> None:  # fmt: skip
    """Run another process in the guest; exits with its exit code."""
    from intermodal.isolation.microvm.bundle import Plan
    from intermodal.isolation.microvm.exec import run_exec

    store = Store(ctx.obj["root"])
    try:
        current = store.load(container_id)
        if store.status(current) != RUNNING:
            raise Conflict(f"container {container_id} is not running")
        plan = Plan.load(store.dir(container_id) / "vm.json")
        if process_file:
            process = json.loads(Path(process_file).read_text())
        else:
            if not command:
                raise InvalidArgument("exec needs a command or --process FILE")
            process = {**plan.process, "args": list(command), "terminal": tty}
            if cwd:
                process["cwd"] = cwd
            if env:
                process["env"] = [*process.get("env", []), *env]
            if user:
                uid, _, gid = user.partition(":")
                process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        slave = _open_pty(console_socket) if process.get("terminal") else None
        state_dir = store.dir(container_id)
        if detach:
            _fork_into(lambda: run_exec(state_dir, process, attach_stdin=False), slave, pid_file)
            return
        if slave is not None:
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            os.close(slave)
        if pid_file:
            Path(pid_file).write_text(str(os.getpid()))
        code = run_exec(state_dir, process, attach_stdin=_stdin_attached() or bool(process.get("terminal")))
    except (IntermodalError, OSError, ValueError) as e:
        _fail(e, ctx)
    sys.exit(code)


@cli.command()
@click.argument("container_id")
@click.pass_context
def pause(ctx: click.Context, container_id: str) -> None:
    """Not supported for VMs."""
    _fail(InvalidArgument("pause is not supported with --isolation=vm"), ctx)


@cli.command()
@click.argument("container_id")
@click.pass_context
def resume(ctx: click.Context, container_id: str) -> None:
    """Not supported for VMs."""
    _fail(InvalidArgument("resume is not supported with --isolation=vm"), ctx)


def main() -> None:
    cli(prog_name="intermodal-vm-runtime")
