"""`intermodal-vm-runtime`: runc's command line over micro-VMs (lifecycle.py has the operations), so conmon
and the engine drive a VM exactly like a container."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import termios
from pathlib import Path
from typing import NoReturn

import click

from intermodal.errors import IntermodalError, InvalidArgument
from intermodal.isolation.microvm import lifecycle

_ROOT = "/run/intermodal/vm-runtime"


def _fail(err: Exception, ctx: click.Context) -> NoReturn:
    log = ctx.obj.get("log")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"level": "error", "msg": str(err)}) + "\n" if ctx.obj["json"] else f"{err}\n")
    click.echo(f"intermodal-vm-runtime: {err}", err=True)
    sys.exit(err.exit_code if isinstance(err, IntermodalError) and err.exit_code != 125 else 1)


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
    try:
        lifecycle.create(ctx.obj["root"], container_id, Path(bundle), pid_file, console_socket)
    except (IntermodalError, OSError) as e:
        _fail(e, ctx)


@cli.command()
@click.argument("container_id")
@click.pass_context
def start(ctx: click.Context, container_id: str) -> None:
    """Let the shim run the workload."""
    try:
        lifecycle.start(ctx.obj["root"], container_id)
    except (IntermodalError, OSError) as e:
        _fail(e, ctx)


@cli.command()
@click.argument("container_id")
@click.pass_context
def state(ctx: click.Context, container_id: str) -> None:
    """Print the OCI state JSON (the pid is the shim's)."""
    try:
        click.echo(json.dumps(lifecycle.state(ctx.obj["root"], container_id), indent=2))
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

    try:
        lifecycle.kill(ctx.obj["root"], container_id, parse_signal(signal_name))
    except (IntermodalError, OSError) as e:
        _fail(e, ctx)


@cli.command()
@click.argument("container_id")
@click.option("--force", "-f", is_flag=True, help="Kill the VM first if it is running.")
@click.pass_context
def delete(ctx: click.Context, container_id: str, force: bool) -> None:
    """Stop what is left (shim, QEMU, virtiofsd) and remove the state, images and sockets."""
    try:
        lifecycle.delete(ctx.obj["root"], container_id, force)
    except (IntermodalError, OSError) as e:
        _fail(e, ctx)


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
    from intermodal.isolation.microvm.exec import run_exec

    try:
        state_dir, base = lifecycle.running_plan(ctx.obj["root"], container_id)
        if process_file:
            process = json.loads(Path(process_file).read_text())
        else:
            if not command:
                raise InvalidArgument("exec needs a command or --process FILE")
            process = {**base, "args": list(command), "terminal": tty}
            if cwd:
                process["cwd"] = cwd
            if env:
                process["env"] = [*process.get("env", []), *env]
            if user:
                uid, _, gid = user.partition(":")
                process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        slave = lifecycle.open_pty(console_socket) if process.get("terminal") else None
        if detach:
            lifecycle.fork_into(lambda: run_exec(state_dir, process, attach_stdin=False), slave, pid_file)
            return
        if slave is not None:
            # the pty becomes our controlling terminal, so its resizes reach us (SIGWINCH, exec.py)
            with contextlib.suppress(PermissionError):  # already a session leader
                os.setsid()
            with contextlib.suppress(OSError):
                fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            os.close(slave)
        if pid_file:
            Path(pid_file).write_text(str(os.getpid()))
        code = run_exec(
            state_dir, process, attach_stdin=lifecycle.stdin_attached() or bool(process.get("terminal"))
        )
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
