"""`intermodal-runtime`: runc's command line (the subset conmon and containerd-style callers use).

Kept import-light (no engine, no rich): it runs once per container operation.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from intermodal.errors import IntermodalError
from intermodal.exit import code_of, leave

if TYPE_CHECKING:
    from intermodal.runtime.container import Runtime

_ROOT = "/run/intermodal/runtime"


def _runtime(ctx: click.Context) -> Runtime:
    from intermodal.runtime.container import Runtime

    return Runtime(Path(ctx.obj["root"]))


def _fail(err: Exception, ctx: click.Context) -> None:
    msg = str(err)
    log = ctx.obj.get("log")
    if log:
        record = {"level": "error", "msg": msg} if ctx.obj.get("log_format") == "json" else None
        with open(log, "a") as f:
            f.write(json.dumps(record) + "\n" if record else f"error: {msg}\n")
    click.echo(f"intermodal-runtime: {msg}", err=True)
    sys.exit(err.exit_code if isinstance(err, IntermodalError) and err.exit_code != 125 else 1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", default=_ROOT, show_default=True, help="Directory for container state.")
@click.option(
    "--log", type=click.Path(dir_okay=False), help="Append errors to this file (as conmon expects)."
)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text")
@click.option("--systemd-cgroup", is_flag=True, help="Accepted for compatibility; ignored.")
@click.option("--debug", is_flag=True, hidden=True)
@click.pass_context
def cli(
    ctx: click.Context, root: str, log: str | None, log_format: str, systemd_cgroup: bool, debug: bool
) -> None:
    """Run OCI bundles (runc-compatible)."""
    ctx.obj = {"root": root, "log": log, "log_format": log_format}


def _listen_fds() -> int:
    """systemd socket activation: hand our LISTEN_FDS on to the container, as runc does."""
    return (
        int(os.environ.get("LISTEN_FDS", "0") or 0) if os.environ.get("LISTEN_PID") == str(os.getpid()) else 0
    )


def _create_options(f: Callable[..., None]) -> Callable[..., None]:
    f = click.option("--bundle", "-b", default=".", type=click.Path(file_okay=False, exists=True))(f)
    f = click.option("--pid-file", type=click.Path(dir_okay=False))(f)
    f = click.option("--console-socket", type=click.Path(dir_okay=False))(f)
    f = click.option("--preserve-fds", type=int, default=0)(f)
    f = click.option("--no-pivot", is_flag=True, hidden=True)(f)
    f = click.option("--no-new-keyring", is_flag=True, hidden=True)(f)
    return f


def _opt_path(value: str | None) -> Path | None:
    return Path(value) if value else None


@cli.command()
@click.argument("container_id")
@_create_options
@click.pass_context
def create(ctx: click.Context, container_id: str, bundle: str, pid_file: str | None, console_socket: str | None,
           preserve_fds: int, no_pivot: bool, no_new_keyring: bool) -> None:  # fmt: skip
    """Create a container; its process waits until `start`."""
    try:
        _runtime(ctx).create(container_id, Path(bundle), pid_file=_opt_path(pid_file),
                             console_socket=_opt_path(console_socket), preserve_fds=preserve_fds + _listen_fds())  # fmt: skip
    except (IntermodalError, OSError) as e:
        _fail(e, ctx)


@cli.command()
@click.argument("container_id")
@_create_options
@click.option("--detach", "-d", is_flag=True)
@click.pass_context
def run(ctx: click.Context, container_id: str, bundle: str, pid_file: str | None, console_socket: str | None,
        preserve_fds: int, no_pivot: bool, no_new_keyring: bool, detach: bool) -> None:  # fmt: skip
    """Create, start and wait for a container; exits with its exit code."""
    try:
        code = _runtime(ctx).run(container_id, Path(bundle), detach=detach, pid_file=_opt_path(pid_file),
                                 console_socket=_opt_path(console_socket),
                                 preserve_fds=preserve_fds + _listen_fds())  # fmt: skip
    except (IntermodalError, OSError) as e:
        _fail(e, ctx)
    sys.exit(code)


@cli.command("exec", context_settings={"allow_interspersed_args": False})
@click.argument("container_id")
@click.argument("command", nargs=-1)
@click.option("--process", "-p", "process_file", type=click.Path(dir_okay=False, exists=True),
              help="An OCI process JSON (as conmon passes) instead of COMMAND.")  # fmt: skip
@click.option("--tty", "-t", is_flag=True)
@click.option("--console-socket", type=click.Path(dir_okay=False))
@click.option("--pid-file", type=click.Path(dir_okay=False))
@click.option("--detach", "-d", is_flag=True)
@click.option("--cwd")
@click.option("--env", "-e", multiple=True)
@click.option("--user", "-u")
@click.option("--cap", "-c", multiple=True)
@click.option("--no-new-privs", is_flag=True)
@click.option("--preserve-fds", type=int, default=0)
@click.pass_context
def exec_(ctx: click.Context, container_id: str, command: tuple[str, ...], process_file: str | None, tty: bool,
          console_socket: str | None, pid_file: str | None, detach: bool, cwd: str | None, env: tuple[str, ...],
          user: str | None, cap: tuple[str, ...], no_new_privs: bool, preserve_fds: int) -> None:  # fmt: skip
    """Run another process in a container; exits with its exit code."""
    from intermodal.runtime.container import exec_process

    try:
        rt = _runtime(ctx)
        if process_file:
            with open(process_file) as f:
                process = json.load(f)
        else:
            base = rt.spec(container_id)["process"]
            process = exec_process(base, list(command), env=list(env), cwd=cwd, user=user, tty=tty,
                                   caps=list(cap), no_new_privs=no_new_privs)  # fmt: skip
        code = rt.exec(container_id, process, detach=detach, pid_file=_opt_path(pid_file),
                       console_socket=_opt_path(console_socket), preserve_fds=preserve_fds)  # fmt: skip
    except (IntermodalError, OSError, ValueError) as e:
        _fail(e, ctx)
    sys.exit(code)


@cli.command()
@click.argument("container_id")
@click.pass_context
def start(ctx: click.Context, container_id: str) -> None:
    """Start a created container's process."""
    try:
        _runtime(ctx).start(container_id)
    except (IntermodalError, OSError) as e:
        _fail(e, ctx)


@cli.command()
@click.argument("container_id")
@click.pass_context
def state(ctx: click.Context, container_id: str) -> None:
    """Print the OCI state JSON."""
    try:
        click.echo(json.dumps(_runtime(ctx).state(container_id), indent=2))
    except (IntermodalError, OSError) as e:
        _fail(e, ctx)


@cli.command()
@click.argument("container_id")
@click.argument("signal", default="SIGTERM")
@click.option("--all", "-a", "all_processes", is_flag=True, help="Signal every process in the container.")
@click.pass_context
def kill(ctx: click.Context, container_id: str, signal: str, all_processes: bool) -> None:
    """Send a signal (name or number) to the container's init."""
    try:
        _runtime(ctx).kill(container_id, signal, all_processes=all_processes)
    except (IntermodalError, OSError) as e:
        _fail(e, ctx)


@cli.command()
@click.argument("container_id")
@click.option("--force", "-f", is_flag=True, help="Kill the container first if it is running.")
@click.pass_context
def delete(ctx: click.Context, container_id: str, force: bool) -> None:
    """Delete a container's cgroup and state."""
    try:
        _runtime(ctx).delete(container_id, force=force)
    except (IntermodalError, OSError) as e:
        _fail(e, ctx)


@cli.command()
@click.argument("container_id")
@click.pass_context
def pause(ctx: click.Context, container_id: str) -> None:
    """Freeze every process of the container."""
    try:
        _runtime(ctx).pause(container_id)
    except (IntermodalError, OSError) as e:
        _fail(e, ctx)


@cli.command()
@click.argument("container_id")
@click.pass_context
def resume(ctx: click.Context, container_id: str) -> None:
    """Thaw a paused container."""
    try:
        _runtime(ctx).resume(container_id)
    except (IntermodalError, OSError) as e:
        _fail(e, ctx)


@cli.command("list")
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--quiet", "-q", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, fmt: str, quiet: bool) -> None:
    """List containers in the state root."""
    items = _runtime(ctx).list()
    if quiet:
        click.echo("".join(f"{c['id']}\n" for c in items), nl=False)
    elif fmt == "json":
        click.echo(json.dumps(items))
    else:
        click.echo(f"{'ID':<20} {'PID':<8} {'STATUS':<10} {'BUNDLE':<40} CREATED")
        for c in items:
            click.echo(
                f"{c['id']:<20} {c.get('pid', 0):<8} {c['status']:<10} {c['bundle']:<40} {c['created']}"
            )


def main() -> None:
    try:
        cli(prog_name="intermodal-runtime")  # standalone mode: always ends in SystemExit
        code = 0
    except SystemExit as e:
        code = code_of(e)
    leave(code)
