"""The container init: the forked child that becomes the container's PID 1 and finally execs the process.

Order follows runc's standard_init_linux.go: mounts and pivot_root, console, sysctl and hostname, read-only
and masked paths, rlimits, capabilities around the uid switch, no_new_privs; then it reports "ready", blocks
on the exec fifo until `start`, closes every fd it does not hand over, installs seccomp and execs. Nothing
here returns: every path ends in execve or os._exit.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
from collections.abc import Mapping
from typing import Any, NoReturn

from intermodal.runtime import capabilities, rootfs, seccomp
from intermodal.runtime import sys as _sys

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _env(process: Mapping[str, Any]) -> dict[str, str]:
    env = dict(item.split("=", 1) for item in process.get("env") or [] if "=" in item)
    if "HOME" not in env:  # runc sets HOME from the container's passwd when the spec does not
        env["HOME"] = _home((process.get("user") or {}).get("uid", 0))
    return env


def _home(uid: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) > 5 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def _setup_console(sock_fd: int, size: Mapping[str, Any] | None, bind_console: bool = True) -> None:
    """Allocate a pty from the container's devpts, sized as process.consoleSize says (config.md#process), hand
    the master to the console socket (SCM_RIGHTS, as runc does for conmon), and make the slave our
    controlling terminal, stdio and (for the init) /dev/console."""
    master, slave = os.openpty()
    if size and size.get("height") and size.get("width"):
        import termios

        termios.tcsetwinsize(slave, (int(size["height"]), int(size["width"])))
    name = os.ttyname(slave)
    if bind_console:
        console = rootfs.open_in_root("/", "/dev/console", create="file")
        try:
            _sys.mount(name, f"/proc/self/fd/{console}", None, _sys.MS_BIND)
        finally:
            os.close(console)
    import socket  # only terminals need it; keep the common path's imports small

    with socket.socket(fileno=sock_fd) as sock:
        socket.send_fds(sock, [name.encode()], [master])
    os.close(master)
    os.setsid()
    _sys.set_controlling_tty(slave)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)


def _rlimits(process: Mapping[str, Any]) -> None:
    for rl in process.get("rlimits") or []:
        kind = getattr(resource, rl["type"], None)
        if kind is None:
            raise ValueError(f"unknown rlimit {rl['type']}")

        def lim(v: int) -> int:
            return resource.RLIM_INFINITY if v >= 2**63 else v

        resource.setrlimit(kind, (lim(rl["soft"]), lim(rl["hard"])))


def _switch_user(process: Mapping[str, Any]) -> None:
    """Drop the bounding set, switch uid/gid keeping capabilities, then set the final capability sets."""
    user = process.get("user") or {}
    caps = process.get("capabilities")
    if caps is not None:
        capabilities.apply_bounding(caps)
    _sys.set_keepcaps(True)
    os.setgroups(user.get("additionalGids") or [])
    gid, uid = user.get("gid", 0), user.get("uid", 0)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    _sys.set_keepcaps(False)
    if caps is not None:
        capabilities.apply_sets(caps)


def _exec(args: list[str], env: dict[str, str]) -> NoReturn:
    """execve the process, searching PATH like Go's exec.LookPath; exit 127 if missing, 126 if not runnable."""
    cmd = args[0]
    candidates = (
        [cmd]
        if "/" in cmd
        else [os.path.join(d or ".", cmd) for d in env.get("PATH", DEFAULT_PATH).split(":")]
    )
    refused: OSError | None = None
    for path in candidates:
        try:
            os.execve(path, args, env)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                refused = refused or e
    if refused is not None:
        reason, code = os.strerror(refused.errno or errno.EACCES).lower(), 126
    elif "/" in cmd:
        reason, code = f"stat {cmd}: no such file or directory", 127
    else:
        reason, code = "executable file not found in $PATH", 127
    os.write(2, f'exec: "{cmd}": {reason}\n'.encode())
    os._exit(code)


def _report_failure(sync: int, e: BaseException) -> NoReturn:
    """Tell `create`/`exec` why set-up failed, then die (never returns)."""
    try:
        os.write(sync, json.dumps({"error": str(e) or type(e).__name__}).encode() + b"\n")
    finally:
        os._exit(1)


def run(
    spec: Mapping[str, Any], root: str, fifo: str, sync: int, console: int | None, preserve: int
) -> NoReturn:
    """Container PID 1 (never returns). `sync` gets one JSON line: {"ready": true} or {"error": msg}."""
    process = spec["process"]
    linux = spec.get("linux") or {}
    namespaces = {ns["type"]: ns for ns in linux.get("namespaces") or []}
    try:
        fifo_fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)  # O_RDWR: never blocks, never sees EOF
        if "network" in namespaces and not namespaces["network"].get("path"):
            _sys.loopback_up()
        root = rootfs.prepare(spec, root)
        rootfs.pivot(root)
        os.makedirs(process.get("cwd") or "/", mode=0o755, exist_ok=True)
        if console is not None:
            _setup_console(console, process.get("consoleSize"))
        if spec.get("hostname"):
            _sys.sethostname(spec["hostname"])
        if spec.get("domainname"):
            _sys.setdomainname(spec["domainname"])
        for key, value in (linux.get("sysctl") or {}).items():
            with open(f"/proc/sys/{key.replace('.', '/')}", "w") as f:
                f.write(value)
        rootfs.finalize(spec)
        if process.get("oomScoreAdj") is not None:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(process["oomScoreAdj"]))
    except BaseException as e:
        _report_failure(sync, e)
    finish(process, linux.get("seccomp"), sync, preserve, fifo_fd)


def exec_in(process: Mapping[str, Any], profile: Mapping[str, Any] | None, sync: int, console: int | None,
            preserve: int) -> NoReturn:  # fmt: skip
    """An `exec` process, already inside the container's namespaces and cgroup (never returns)."""
    try:
        if console is not None:
            _setup_console(console, process.get("consoleSize"), bind_console=False)
    except BaseException as e:
        _report_failure(sync, e)
    finish(process, profile, sync, preserve, None)


def finish(process: Mapping[str, Any], profile: Mapping[str, Any] | None, sync: int, preserve: int,
           fifo_fd: int | None) -> NoReturn:  # fmt: skip
    """The process-level steps shared by the init and `exec`: rlimits, user and capabilities, cwd,
    no_new_privs; then "ready", the wait for `start` (init only), fd clean-up, seccomp and execve."""
    cwd = process.get("cwd") or "/"
    try:
        _rlimits(process)
        nnp = bool(process.get("noNewPrivileges"))
        program = seccomp.compile_bpf(profile) if profile is not None else None
        if program is not None and not nnp:
            _sys.seccomp_install(program)  # without NNP this needs CAP_SYS_ADMIN, so before dropping caps
        _switch_user(process)
        os.umask((process.get("user") or {}).get("umask", 0o022))
        os.chdir(cwd)
        if os.getcwd().startswith("(unreachable)"):  # CVE-2024-21626: never leave cwd outside the root
            raise OSError(errno.EPERM, f"cwd {cwd} is outside the container")
        if nnp:
            _sys.set_no_new_privs()
        env = _env(process)
        args = list(process["args"])
        os.write(sync, b'{"ready": true}\n')
        os.close(sync)
    except BaseException as e:
        _report_failure(sync, e)
    if fifo_fd is not None:
        os.read(fifo_fd, 1)  # `start` writes one byte
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these; ignored dispositions survive execve
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for fd in range(3, 3 + preserve):
        os.set_inheritable(fd, True)
    _sys.close_fds_from(3 + preserve)
    if program is not None and nnp:
        _sys.seccomp_install(program)  # as late as possible: the fewest syscalls run under the filter
    _exec(args, env)
