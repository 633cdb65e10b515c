"""`exec`: another process in a running container, through the OCI runtime's own `exec --process FILE`.

The process object starts from the container's (bundle/config.json), so capabilities, rlimits, no_new_privs
and AppArmor are the container's, as with Docker; args, env, cwd, user and terminal are the exec's own.
The user is resolved against the container's /etc/passwd read inside its rootfs (userdb). The runtime runs
in the foreground with our stdio (or a pty from its console socket with -t); its own failures go to a
`--log` file so they can be told from the process's exit code and mapped to Docker's 126/127.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intermodal.engine.containers.attach import proxy_terminal, reap, receive_console
from intermodal.engine.containers.options import merge_env, parse_env
from intermodal.engine.containers.record import PAUSED, RUNNING, ContainerRecord
from intermodal.engine.containers.service import ContainerService
from intermodal.engine.containers.userdb import resolve_user
from intermodal.errors import Conflict, InvalidArgument
from intermodal.isolation.oci import OciRuntime, runtime_error
from intermodal.runtime import sys as linux
from intermodal.runtime.container import exec_process
from intermodal.runtime.spec import resolve_caps


@dataclass
class ExecOptions:
    command: list[str]
    interactive: bool = False
    tty: bool = False
    detach: bool = False
    env: list[str] = field(default_factory=list)
    env_files: list[str] = field(default_factory=list)
    workdir: str = ""
    user: str = ""
    privileged: bool = False
    console_size: tuple[int, int] = (0, 0)  # rows, cols of the client's terminal, for -t


def running(svc: ContainerService, spec: str) -> ContainerRecord:
    """The container, which must be running (Docker refuses exec into stopped and paused ones)."""
    record = svc.get(spec)
    if record.status == PAUSED:
        raise Conflict(f"container {spec} is paused, unpause the container before exec")
    if record.status != RUNNING:
        raise Conflict(f"container {spec} is not running")
    return record


def build_process(svc: ContainerService, record: ContainerRecord, opts: ExecOptions) -> dict[str, Any]:
    """The OCI process object for this exec, derived from the container's own."""
    if not opts.command:
        raise InvalidArgument("exec needs a command: give the program to run after the container name")
    paths = svc.paths(record.id)
    base = json.loads(paths.config.read_text())["process"]
    user = resolve_user(str(paths.rootfs), opts.user or record.config.get("User") or "0")
    # Docker: the container's Env, HOSTNAME, HOME of the exec's user, TERM with -t; then -e/--env-file.
    env = merge_env(
        [
            f"HOSTNAME={record.config['Hostname']}",
            f"HOME={user.home}",
            *(["TERM=xterm"] if opts.tty else []),
            *(record.config.get("Env") or []),
        ],
        parse_env(opts.env, opts.env_files),
    )
    base.pop("consoleSize", None)  # the container's, from its creation
    process = exec_process(
        {**base, "env": env},
        opts.command,
        cwd=opts.workdir or record.config.get("WorkingDir") or "/",
        tty=opts.tty and not opts.detach,  # nobody would hold a detached process's terminal
        caps=resolve_caps(privileged=True) if opts.privileged else (),
    )
    rows, cols = opts.console_size
    if process["terminal"] and rows and cols:
        process["consoleSize"] = {"height": rows, "width": cols}
    process["user"] = {
        "uid": user.uid,
        "gid": user.gid,
        **({"additionalGids": list(user.additional_gids)} if user.additional_gids else {}),
    }
    return process


def exec_in(svc: ContainerService, spec: str, opts: ExecOptions) -> int:
    """Run the exec and return Docker's exit code: the process's own, 126/127 when it cannot be started,
    0 at once with `detach` (the runtime leaves it running)."""
    record = running(svc, spec)
    process = build_process(svc, record, opts)
    runtime = svc.runtime(record)
    runtime.state_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="intermodal-exec-") as tmp:
        process_file, log = Path(tmp) / "process.json", Path(tmp) / "runtime.log"
        process_file.write_text(json.dumps(process))
        if process["terminal"]:
            code = _run_tty(runtime, record.id, process_file, log, opts.interactive)
        else:
            argv = runtime.exec_argv(
                record.id, process_file, tty=False, detach=opts.detach, pid_file=None, log=log
            )
            stdin = sys.stdin if opts.interactive and not opts.detach else subprocess.DEVNULL
            sink = subprocess.DEVNULL if opts.detach else None
            code = subprocess.run(argv, stdin=stdin, stdout=sink, stderr=sink).returncode
        if code != 0 and log.exists() and log.stat().st_size:
            # The runtime failed to start the process (and said so on our stderr already): map its words.
            return runtime_error(runtime.name, "exec", log.read_text(errors="replace")).exit_code
    return code


def _run_tty(runtime: OciRuntime, cid: str, process_file: Path, log: Path, interactive: bool) -> int:
    """-t: the runtime starts the process detached and sends its pty master over a console socket (runc
    accepts a console socket only when detaching); we proxy the pty, and reap the process as its subreaper
    (as conmon does for exec)."""
    linux.set_child_subreaper(True)
    pid_file = process_file.with_name("pid")
    procs: list[subprocess.Popen[bytes]] = []

    def launch(sock: Path) -> None:
        argv = runtime.exec_argv(
            cid, process_file, tty=True, detach=True, pid_file=pid_file, log=log, console_socket=sock
        )
        procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL))

    try:
        master = receive_console(launch, alive=lambda: procs[0].poll() is None)
    except OSError:  # the runtime failed before sending a terminal: its log says why
        return procs[0].wait()
    code = procs[0].wait()
    if code != 0:
        os.close(master)
        return code
    pid = int(pid_file.read_text())
    proxy_terminal(master, interactive=interactive)
    return reap(pid)
