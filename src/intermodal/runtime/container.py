"""The OCI runtime lifecycle (runtime.md "Lifecycle" and "Operations"): create, start, state, kill, delete.

`create` forks twice: the first child joins the cgroup and the namespaces (unshare(CLONE_NEWPID) only
affects children), the second is the container's PID 1 and waits on the exec fifo for `start`. The first
child exits at once, so the init is re-parented to the nearest subreaper (conmon, or `run`) like runc's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from intermodal import fsutil
from intermodal.errors import Conflict, IntermodalError, InvalidArgument
from intermodal.runtime import cgroups, init, userns
from intermodal.runtime import sys as _sys
from intermodal.runtime.state import (
    CREATED,
    PAUSED,
    RUNNING,
    STOPPED,
    State,
    Store,
    check_id,
    process_start_time,
)

_NS_FLAGS = {
    "pid": _sys.CLONE_NEWPID, "network": _sys.CLONE_NEWNET, "ipc": _sys.CLONE_NEWIPC, "uts": _sys.CLONE_NEWUTS,
    "mount": _sys.CLONE_NEWNS, "cgroup": _sys.CLONE_NEWCGROUP, "user": _sys.CLONE_NEWUSER,
}  # fmt: skip
_FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)


def parse_signal(value: str | int) -> int:
    """'KILL', 'SIGKILL', 'kill' or '9' -> 9 (runc's accepted forms)."""
    text = str(value).upper()
    if text.isdigit():
        return int(text)
    try:
        return int(signal.Signals[text if text.startswith("SIG") else f"SIG{text}"])
    except KeyError:
        raise InvalidArgument(f"unknown signal {value!r}: use a name like TERM or a number like 15") from None


def load_spec(bundle: Path) -> dict[str, Any]:
    try:
        spec = json.loads((bundle / "config.json").read_bytes())
    except FileNotFoundError:
        raise InvalidArgument(
            f"no config.json in bundle {bundle}: pass the bundle directory with --bundle"
        ) from None
    except ValueError as e:
        raise InvalidArgument(f"{bundle}/config.json is not valid JSON: {e}") from None
    if not isinstance(spec.get("process"), dict) or not spec["process"].get("args"):
        raise InvalidArgument(f"{bundle}/config.json has no process.args: say what to run")
    kinds = {ns.get("type") for ns in (spec.get("linux") or {}).get("namespaces") or []}
    if "mount" not in kinds:
        raise InvalidArgument("the spec has no mount namespace: the runtime will not touch the host's mounts")
    if kinds - set(_NS_FLAGS):
        raise InvalidArgument(
            f"unsupported namespaces {sorted(kinds - set(_NS_FLAGS))}: drop them from the spec"
        )
    if spec.get("hostname") and "uts" not in kinds:
        raise InvalidArgument("hostname is set but there is no uts namespace: it would rename the host")
    linux = spec.get("linux") or {}
    if (linux.get("uidMappings") or linux.get("gidMappings")) and "user" not in kinds:
        raise InvalidArgument("uidMappings/gidMappings are set but there is no user namespace: add one")
    return spec


def exec_process(base: dict[str, Any], args: Sequence[str], *, env: Sequence[str] = (), cwd: str | None = None,
                 user: str | None = None, tty: bool = False, caps: Sequence[str] = (),
                 no_new_privs: bool = False) -> dict[str, Any]:  # fmt: skip
    """runc exec's flags applied to the container's own process object: a new command with the same
    capabilities, rlimits and environment unless overridden (`user` is 'uid[:gid]', numeric)."""
    process = {**base, "args": list(args), "terminal": tty, "env": [*(base.get("env") or []), *env]}
    if cwd:
        process["cwd"] = cwd
    if user:
        uid, _, gid = user.partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise InvalidArgument(f"invalid --user {user!r}: use numeric uid[:gid]")
        process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if caps:
        sets = dict(base.get("capabilities") or {})
        for kind in ("bounding", "effective", "permitted"):
            sets[kind] = sorted({*sets.get(kind, []), *caps})
        process["capabilities"] = sets
    if no_new_privs:
        process["noNewPrivileges"] = True
    return process


class Runtime:
    """One state root (runc's --root) and one cgroup filesystem."""

    def __init__(self, root: Path | None = None, cgroup_root: Path = cgroups.DEFAULT_ROOT) -> None:
        self.store = Store(root) if root else Store()
        self.cgroup_root = cgroup_root

    def create(
        self,
        container_id: str,
        bundle: Path,
        *,
        pid_file: Path | None = None,
        console_socket: Path | None = None,
        preserve_fds: int = 0,
    ) -> State:
        """Set the container up and leave its init blocked before exec; returns once it is `created`."""
        check_id(container_id)
        bundle = bundle.absolute()
        spec = load_spec(bundle)
        if spec["process"].get("terminal") and console_socket is None:
            raise InvalidArgument("process.terminal is true: pass --console-socket to receive the pty master")
        root = Path(spec.get("root", {}).get("path", "rootfs"))
        root = root if root.is_absolute() else bundle / root
        if not root.is_dir():
            raise InvalidArgument(f"rootfs {root} is not a directory: fix root.path in config.json")
        linux = spec.get("linux") or {}
        self.store.reserve(container_id)
        cg = cgroups.open_cgroup(linux.get("cgroupsPath") or f"/intermodal/{container_id}", self.cgroup_root)
        state = State(
            id=container_id, bundle=str(bundle), created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            cgroup_path=cg.path, cgroup_version=cg.version, annotations=spec.get("annotations") or {},
        )  # fmt: skip
        try:
            with self.store.lock(container_id):
                self.store.save(state)
                os.mkfifo(self.store.fifo(container_id), 0o622)
                cg.create(linux.get("resources") or {})
                fifo = str(self.store.fifo(container_id))
                state.pid = self._spawn(
                    cg,
                    lambda handshake: _enter_namespaces(spec, handshake),
                    lambda sync, console: init.run(spec, str(root), fifo, sync, console, preserve_fds),
                    console_socket,
                    preserve_fds,
                    id_maps=_new_userns_maps(spec),
                )
                state.pid_start = process_start_time(state.pid) or 0
                self.store.save(state)
                if pid_file:
                    fsutil.atomic_write_bytes(pid_file.absolute(), str(state.pid).encode(), durable=False)
        except BaseException:
            if state.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(state.pid, signal.SIGKILL)
            cg.delete()
            self.store.remove(container_id)
            raise
        return state

    def _spawn(self, cg: cgroups.Cgroup, enter: Callable[[Callable[[], None]], None],
               target: Callable[[int, int | None], None], console_socket: Path | None, preserve: int,
               id_maps: tuple[list[Any], list[Any]] | None = None) -> int:  # fmt: skip
        """Fork a child that joins `cg`, runs `enter(handshake)` (namespaces) and forks `target(sync_fd,
        console_fd)`; return the grandchild's host PID once it reports ready (or raise with the error it
        reports). With `id_maps` the child calls `handshake` once it has unshared its user namespace: we
        write the namespace's uid_map and gid_map, then let it go on (runc's nsexec sync)."""
        console = None
        if console_socket is not None:
            import socket

            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(console_socket))
            console = _high(sock.detach(), preserve)
        r, w = os.pipe()
        w = _high(w, preserve)
        ack_r = ack_w = None
        if id_maps is not None:
            ack_r, ack_w = os.pipe()
            ack_r = _high(ack_r, preserve)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        child = os.fork()
        if child == 0:
            os.close(r)
            if ack_w is not None:
                os.close(ack_w)
            _first_child(cg, enter, target, w, console, preserve, ack_r)
        os.close(w)
        if console is not None:
            os.close(console)
        if ack_r is not None:
            os.close(ack_r)
        pid, ready, error = 0, False, None
        try:
            with os.fdopen(r, "rb") as pipe:
                for line in pipe:  # the child's {"pid"} and the grandchild's {"ready"} come in either order
                    msg = json.loads(line)
                    if "userns" in msg and id_maps is not None and ack_w is not None:
                        try:
                            userns.write_maps(child, *id_maps)
                        except OSError as e:
                            error = f"writing the user namespace's ID maps: {e}"
                            break
                        os.write(ack_w, b"1")
                    pid = msg.get("pid", pid)
                    ready = ready or "ready" in msg
                    error = msg.get("error", error)
                    if (pid and ready) or error:
                        break
        finally:
            if ack_w is not None:
                os.close(ack_w)  # a child still waiting for its maps reads EOF and fails
        os.waitpid(child, 0)
        if error or not (pid and ready):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise IntermodalError(f"container process failed to start: {error or 'exited during set-up'}")
        return pid

    def exec(self, container_id: str, process: dict[str, Any], *, detach: bool = False, pid_file: Path | None = None,
             console_socket: Path | None = None, preserve_fds: int = 0) -> int:  # fmt: skip
        """Run another process in a created or running container (runc exec): its namespaces, cgroup and
        seccomp profile, with `process` (an OCI process object) for args, user, caps, env and cwd.

        Returns the exit code, or 0 at once with `detach`. Makes the caller a child subreaper unless detached.
        """
        state = self.store.load(container_id)
        status = self.store.status(state)
        if status not in (CREATED, RUNNING):
            raise Conflict(f"cannot exec in container {container_id!r}: it is {status}")
        if not process.get("args"):
            raise InvalidArgument("exec needs a command: pass the program to run")
        if process.get("terminal") and console_socket is None:
            raise InvalidArgument("a terminal was requested: pass --console-socket to receive the pty master")
        spec = load_spec(Path(state.bundle))
        kinds = [ns["type"] for ns in spec["linux"]["namespaces"]]
        profile = spec["linux"].get("seccomp")
        if not detach:
            _sys.set_child_subreaper(True)
        pid = self._spawn(
            self._cgroup(state),
            lambda _handshake: _join_namespaces(state.pid, kinds),
            lambda sync, console: init.exec_in(process, profile, sync, console, preserve_fds),
            console_socket,
            preserve_fds,
        )
        if pid_file:
            fsutil.atomic_write_bytes(pid_file.absolute(), str(pid).encode())
        return 0 if detach else _wait_forwarding(pid)

    def spec(self, container_id: str) -> dict[str, Any]:
        """The container's config.json (the base an `exec` process is derived from)."""
        return load_spec(Path(self.store.load(container_id).bundle))

    def start(self, container_id: str) -> None:
        """Let the init exec the user process (runtime.md "start"): one byte into the exec fifo."""
        with self.store.lock(container_id):
            state = self.store.load(container_id)
            status = self.store.status(state)
            if status != CREATED:
                raise Conflict(f"cannot start container {container_id!r}: it is {status}, not created")
            fifo = self.store.fifo(container_id)
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as e:  # ENXIO: no reader, the init is gone
                raise Conflict(
                    f"cannot start container {container_id!r}: its init is not waiting ({e})"
                ) from None
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
            os.unlink(fifo)

    def state(self, container_id: str) -> dict[str, Any]:
        state = self.store.load(container_id)
        return state.oci(self.store.status(state))

    def list(self) -> list[dict[str, Any]]:
        out = []
        for cid in self.store.ids():
            with contextlib.suppress(IntermodalError):
                state = self.store.load(cid)
                out.append({**state.oci(self.store.status(state)), "created": state.created})
        return out

    def kill(
        self, container_id: str, sig: str | int = signal.SIGTERM, *, all_processes: bool = False
    ) -> None:
        """Signal the init (or with all_processes, everything in its cgroup); an error once it has stopped."""
        signum = parse_signal(sig)
        state = self.store.load(container_id)
        status = self.store.status(state)
        if status not in (CREATED, RUNNING, PAUSED):
            raise Conflict(f"cannot kill container {container_id!r}: it is {status}")
        pids = self._cgroup(state).pids() if all_processes else [state.pid]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        """Change a created or running container's cgroup limits (runc update): `resources` is an OCI
        `linux.resources` object; only the limits it names change."""
        with self.store.lock(container_id):
            state = self.store.load(container_id)
            status = self.store.status(state)
            if status not in (CREATED, RUNNING, PAUSED):
                raise Conflict(f"cannot update container {container_id!r}: it is {status}")
            self._cgroup(state).set(resources)

    def pause(self, container_id: str) -> None:
        self._set_paused(container_id, True)

    def resume(self, container_id: str) -> None:
        self._set_paused(container_id, False)

    def _set_paused(self, container_id: str, paused: bool) -> None:
        with self.store.lock(container_id):
            state = self.store.load(container_id)
            status = self.store.status(state)
            if status != (RUNNING if paused else PAUSED):
                raise Conflict(
                    f"cannot {'pause' if paused else 'resume'} container {container_id!r}: it is {status}"
                )
            cg = self._cgroup(state)
            cg.freeze() if paused else cg.thaw()
            state.paused = paused
            self.store.save(state)

    def delete(self, container_id: str, *, force: bool = False) -> None:
        """Remove a stopped (or never started) container; `force` kills a running one first."""
        with self.store.lock(container_id):
            state = self.store.load(container_id)
            status = self.store.status(state)
            if status in (RUNNING, PAUSED) and not force:
                raise Conflict(
                    f"cannot delete container {container_id!r}: it is {status}; stop it or use --force"
                )
            cg = self._cgroup(state)
            if status != STOPPED and state.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(state.pid, signal.SIGKILL)
                if status == PAUSED:
                    cg.thaw()
                _wait_gone(state)
            cg.delete()
            self.store.remove(container_id)

    def run(self, container_id: str, bundle: Path, *, detach: bool = False, pid_file: Path | None = None,
            console_socket: Path | None = None, preserve_fds: int = 0) -> int:  # fmt: skip
        """create + start, then (unless detached) wait, delete and return the exit code (128+N if killed).

        Makes the caller a child subreaper so the orphaned init becomes our child and we can reap it.
        """
        if not detach:
            _sys.set_child_subreaper(True)
        state = self.create(container_id, bundle, pid_file=pid_file, console_socket=console_socket,
                            preserve_fds=preserve_fds)  # fmt: skip
        if detach:
            self.start(container_id)
            return 0
        try:
            self.start(container_id)
            return _wait_forwarding(state.pid)
        finally:
            self.delete(container_id, force=True)

    def _cgroup(self, state: State) -> cgroups.Cgroup:
        return cgroups.open_cgroup(state.cgroup_path, self.cgroup_root, state.cgroup_version)


def _forward(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _wait_gone(state: State, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while state.alive() and time.monotonic() < deadline:
        time.sleep(0.005)


def _high(fd: int, preserve: int) -> int:
    """Move an fd of ours above the ones the caller asked to hand over (3 .. 3+preserve-1)."""
    if fd >= 3 + preserve:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3 + preserve)
    os.close(fd)
    return moved


def _wait_forwarding(pid: int) -> int:
    """Wait for our (re-parented) child, passing on the signals a foreground runtime receives."""
    previous = {s: signal.signal(s, lambda signum, _frame: _forward(pid, signum)) for s in _FORWARDED}
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _new_userns_maps(spec: dict[str, Any]) -> tuple[list[Any], list[Any]] | None:
    """The ID maps to write for a user namespace the container creates (None: no new user namespace)."""
    linux = spec.get("linux") or {}
    if not any(ns.get("type") == "user" and not ns.get("path") for ns in linux.get("namespaces") or []):
        return None
    return list(linux.get("uidMappings") or []), list(linux.get("gidMappings") or [])


def _enter_namespaces(spec: dict[str, Any], handshake: Callable[[], None]) -> None:
    """Join the spec's namespaces that name a path, create the others (config-linux.md "Namespaces").

    Joined ones first, while we are still root in the host's user namespace (joining a network namespace
    the engine pinned needs CAP_SYS_ADMIN over its owner, the host's user namespace); the user namespace is
    joined last among them. A new user namespace is created in the same unshare as the rest, so it owns
    them; `handshake` then has the parent write its ID maps. Our IDs stay unmapped (host root) until the
    init switches to the namespace's root: see rootfs.prepare."""
    flags = 0
    namespaces = (spec.get("linux") or {}).get("namespaces") or []
    for ns in sorted(namespaces, key=lambda n: n.get("type") == "user"):
        if ns.get("path"):
            fd = os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)
            try:
                _sys.setns(fd, _NS_FLAGS[ns["type"]])
            finally:
                os.close(fd)
        else:
            flags |= _NS_FLAGS[ns["type"]]
    _sys.unshare(flags)  # the cgroup namespace is rooted at the cgroup we just joined
    if flags & _sys.CLONE_NEWUSER:
        handshake()


def _join_namespaces(pid: int, kinds: list[str]) -> None:
    """setns into a running init's namespaces: all opened first, the mount namespace joined last (it
    changes what /proc paths mean); joining it also moves our root and cwd to the container's root."""
    names = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "cgroup": "cgroup", "mount": "mnt",
             "user": "user"}  # fmt: skip
    # The user namespace last: as host root we may join any of them, and a network namespace the engine
    # pinned belongs to the host's user namespace, which we could no longer join from inside the container's.
    order = [k for k in ("cgroup", "ipc", "uts", "network", "pid", "mount", "user") if k in kinds]
    fds = [(os.open(f"/proc/{pid}/ns/{names[k]}", os.O_RDONLY | os.O_CLOEXEC), k) for k in order]
    for fd, kind in fds:
        _sys.setns(fd, _NS_FLAGS[kind])
        os.close(fd)


def _first_child(cg: cgroups.Cgroup, enter: Callable[[Callable[[], None]], None],
                 target: Callable[[int, int | None], None], sync: int, console: int | None, preserve: int,
                 ack: int | None = None) -> NoReturn:  # fmt: skip
    """First child: cgroup, then namespaces (a new PID namespace only applies to children), then fork the
    process that will exec, and report its PID."""

    def handshake() -> None:
        os.write(sync, json.dumps({"userns": os.getpid()}).encode() + b"\n")
        if ack is None or os.read(ack, 1) != b"1":
            raise OSError("the runtime did not write the user namespace's ID maps")

    try:
        _sys.set_pdeathsig(signal.SIGKILL)  # if `create` dies mid-way, do not leave half a container
        low = 3 + preserve
        for fd in sorted(
            {sync, *([console] if console is not None else []), *([ack] if ack is not None else [])}
        ):
            os.closerange(low, fd)  # close everything else we inherited (e.g. the state-dir flock)
            low = fd + 1
        os.closerange(low, 1 << 20)
        cg.add_process(os.getpid())
        enter(handshake)
        if ack is not None:
            os.close(ack)
        pid = os.fork()
        if pid == 0:
            target(sync, console)
        os.write(sync, json.dumps({"pid": pid}).encode() + b"\n")
    except BaseException as e:
        with contextlib.suppress(OSError):  # the parent may already have stopped listening
            os.write(sync, json.dumps({"error": f"{e}"}).encode() + b"\n")
        os._exit(1)
    os._exit(0)
