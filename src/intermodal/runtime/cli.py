"""`intermodal-runtime`: runc's command line (the subset conmon and containerd-style callers use).

Kept import-light (no engine, no rich, argparse rather than click): conmon starts it for every detached
container and every exec, and click's import alone took about half of its start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from intermodal.errors import IntermodalError
from intermodal.exit import code_of, leave

if TYPE_CHECKING:
    from intermodal.runtime.container import Runtime

_ROOT = "/run/intermodal/runtime"


def _runtime(args: argparse.Namespace) -> Runtime:
    from intermodal.runtime.container import Runtime

    return Runtime(Path(args.root))


def _fail(err: Exception, args: argparse.Namespace) -> None:
    """Report an error as runc does: on stderr, and in --log (JSON with --log-format json) for conmon."""
    msg = str(err)
    if args.log:
        record = {"level": "error", "msg": msg} if args.log_format == "json" else None
        with open(args.log, "a") as f:
            f.write(json.dumps(record) + "\n" if record else f"error: {msg}\n")
    print(f"intermodal-runtime: {msg}", file=sys.stderr)
    sys.exit(err.exit_code if isinstance(err, IntermodalError) and err.exit_code != 125 else 1)


def _listen_fds() -> int:
    """systemd socket activation: hand our LISTEN_FDS on to the container, as runc does."""
    return (
        int(os.environ.get("LISTEN_FDS", "0") or 0) if os.environ.get("LISTEN_PID") == str(os.getpid()) else 0
    )


def _opt_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _existing(kind: str) -> Callable[[str], str]:
    """An argparse type for a path that must exist as a directory or a file (runc refuses others too)."""

    def check(value: str) -> str:
        if not (os.path.isdir(value) if kind == "directory" else os.path.isfile(value)):
            raise argparse.ArgumentTypeError(f"{value!r}: no such {kind}")
        return value

    return check


def create(args: argparse.Namespace) -> int:
    """Create a container; its process waits until `start`."""
    _runtime(args).create(args.container_id, Path(args.bundle), pid_file=_opt_path(args.pid_file),
                          console_socket=_opt_path(args.console_socket),
                          preserve_fds=args.preserve_fds + _listen_fds())  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:
    """Create, start and wait for a container; exits with its exit code."""
    return _runtime(args).run(args.container_id, Path(args.bundle), detach=args.detach,
                              pid_file=_opt_path(args.pid_file), console_socket=_opt_path(args.console_socket),
                              preserve_fds=args.preserve_fds + _listen_fds())  # fmt: skip


def exec_(args: argparse.Namespace) -> int:
    """Run another process in a container; exits with its exit code."""
    from intermodal.runtime.container import exec_process

    rt = _runtime(args)
    if args.process:
        with open(args.process) as f:
            process = json.load(f)
    else:
        base = rt.spec(args.container_id)["process"]
        process = exec_process(base, args.command, env=args.env, cwd=args.cwd, user=args.user, tty=args.tty,
                               caps=args.cap, no_new_privs=args.no_new_privs)  # fmt: skip
    return rt.exec(args.container_id, process, detach=args.detach, pid_file=_opt_path(args.pid_file),
                   console_socket=_opt_path(args.console_socket), preserve_fds=args.preserve_fds)  # fmt: skip


def start(args: argparse.Namespace) -> int:
    """Start a created container's process."""
    _runtime(args).start(args.container_id)
    return 0


def state(args: argparse.Namespace) -> int:
    """Print the OCI state JSON."""
    print(json.dumps(_runtime(args).state(args.container_id), indent=2))
    return 0


def kill(args: argparse.Namespace) -> int:
    """Send a signal (name or number) to the container's init."""
    _runtime(args).kill(args.container_id, args.signal, all_processes=args.all)
    return 0


def delete(args: argparse.Namespace) -> int:
    """Delete a container's cgroup and state."""
    _runtime(args).delete(args.container_id, force=args.force)
    return 0


def update(args: argparse.Namespace) -> int:
    """Change a container's cgroup limits from an OCI linux.resources JSON (a file, or - for stdin)."""
    text = sys.stdin.read() if args.resources == "-" else Path(args.resources).read_text()
    _runtime(args).update(args.container_id, json.loads(text))
    return 0


def pause(args: argparse.Namespace) -> int:
    """Freeze every process of the container."""
    _runtime(args).pause(args.container_id)
    return 0


def resume(args: argparse.Namespace) -> int:
    """Thaw a paused container."""
    _runtime(args).resume(args.container_id)
    return 0


def list_(args: argparse.Namespace) -> int:
    """List containers in the state root."""
    items = _runtime(args).list()
    if args.quiet:
        sys.stdout.write("".join(f"{c['id']}\n" for c in items))
    elif args.format == "json":
        print(json.dumps(items))
    else:
        print(f"{'ID':<20} {'PID':<8} {'STATUS':<10} {'BUNDLE':<40} CREATED")
        for c in items:
            print(f"{c['id']:<20} {c.get('pid', 0):<8} {c['status']:<10} {c['bundle']:<40} {c['created']}")
    return 0


def parser() -> argparse.ArgumentParser:
    """runc's syntax: global options, the command, its options, the container ID (then, for exec, argv)."""
    top = argparse.ArgumentParser(prog="intermodal-runtime", description="Run OCI bundles (runc-compatible).")
    top.add_argument("--root", default=_ROOT, help=f"Directory for container state (default {_ROOT}).")
    top.add_argument("--log", help="Append errors to this file (as conmon expects).")
    top.add_argument("--log-format", choices=["text", "json"], default="text")
    top.add_argument("--systemd-cgroup", action="store_true", help="Accepted for compatibility; ignored.")
    top.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    commands = top.add_subparsers(dest="command_name", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=handler.__doc__, description=handler.__doc__)
        sub.set_defaults(handler=handler)
        return sub

    def creating(name: str, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sub = command(name, handler)
        sub.add_argument("--bundle", "-b", default=".", type=_existing("directory"))
        sub.add_argument("--pid-file")
        sub.add_argument("--console-socket")
        sub.add_argument("--preserve-fds", type=int, default=0)
        sub.add_argument("--no-pivot", action="store_true", help=argparse.SUPPRESS)
        sub.add_argument("--no-new-keyring", action="store_true", help=argparse.SUPPRESS)
        sub.add_argument("container_id")
        return sub

    creating("create", create)
    creating("run", run).add_argument("--detach", "-d", action="store_true")
    ex = command("exec", exec_)
    ex.add_argument("--process", "-p", type=_existing("file"),
                    help="An OCI process JSON (as conmon passes) instead of COMMAND.")  # fmt: skip
    ex.add_argument("--tty", "-t", action="store_true")
    ex.add_argument("--console-socket")
    ex.add_argument("--pid-file")
    ex.add_argument("--detach", "-d", action="store_true")
    ex.add_argument("--cwd")
    ex.add_argument("--env", "-e", action="append", default=[])
    ex.add_argument("--user", "-u")
    ex.add_argument("--cap", "-c", action="append", default=[])
    ex.add_argument("--no-new-privs", action="store_true")
    ex.add_argument("--preserve-fds", type=int, default=0)
    ex.add_argument("container_id")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    for name, handler in (("start", start), ("state", state), ("pause", pause), ("resume", resume)):
        command(name, handler).add_argument("container_id")
    k = command("kill", kill)
    k.add_argument("--all", "-a", action="store_true", help="Signal every process in the container.")
    k.add_argument("container_id")
    k.add_argument("signal", nargs="?", default="SIGTERM")
    up = command("update", update)
    up.add_argument("--resources", "-r", required=True, help="linux.resources JSON: a file, or - for stdin.")
    up.add_argument("container_id")
    d = command("delete", delete)
    d.add_argument("--force", "-f", action="store_true", help="Kill the container first if it is running.")
    d.add_argument("container_id")
    ls = command("list", list_)
    ls.add_argument("--format", "-f", choices=["table", "json"], default="table")
    ls.add_argument("--quiet", "-q", action="store_true")
    return top


def main() -> None:
    try:
        args = parser().parse_args()
        try:
            code = args.handler(args)
        except (IntermodalError, OSError, ValueError) as e:
            _fail(e, args)
    except SystemExit as e:
        code = code_of(e)
    leave(code)
