"""The shim: the process `create` leaves behind and whose PID the engine waits on, as it waits on a
container's init. It boots QEMU (and a virtiofsd per share), waits for `start` on the exec fifo, has the
agent run the process, pumps its stdio between our own fds and the guest's ports, forwards the signals it
receives, and exits with the workload's exit code (128+N for a signal) once the guest has powered off.
QEMU and virtiofsd die with it (PR_SET_PDEATHSIG), so a `kill -9` of the shim leaves nothing running."""

from __future__ import annotations

import array
import base64
import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

from intermodal.isolation.microvm import BUNDLE_INFO, agent, qemu
from intermodal.isolation.microvm.bundle import Plan, Share
from intermodal.runtime import sys as linux
from intermodal.runtime.rootfs import open_in_root

VIRTIOFSD = "/usr/lib/qemu/virtiofsd"
DRAIN_SECONDS = 5.0  # after the exit report, how long output may keep arriving before we power off anyway
# Signals the shim passes on to the workload; the rest keep their default action or are ours.
_NOT_FORWARDED = {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGPIPE, signal.SIGURG, signal.SIGWINCH,
                  signal.SIGTTIN, signal.SIGTTOU, signal.SIGTSTP}  # fmt: skip
FORWARDED = tuple(s for s in signal.Signals if s not in _NOT_FORWARDED and s < signal.SIGRTMIN)


# -- sockets under long paths ----------------------------------------------------------------------------------


@contextlib.contextmanager
def short_path(path: Path) -> Iterator[str]:
    """`path` spelled through an O_PATH fd of its directory: sun_path holds only 108 bytes."""
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def listen(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with short_path(path) as p:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
        sock.bind(p)
    sock.listen(4)
    return sock


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with short_path(path) as p:
        sock.connect(p)
    return sock


def port_socket(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.sock"


class Stream:
    """One output stream of a guest process: passes bytes through until the slot's nonce, which the agent
    writes after the process has exited (agent.py), and drops the nonce itself."""

    def __init__(self, nonce: str):
        self.nonce = nonce.encode()
        self.pending = b""
        self.done = False

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return b""
        buf = self.pending + data
        at = buf.find(self.nonce)
        if at >= 0:
            self.done, self.pending = True, b""
            return buf[:at]
        # Hold back only a tail that could be the start of the nonce, so interactive output is not delayed.
        keep = next((n for n in range(min(len(buf), len(self.nonce) - 1), 0, -1)
                     if self.nonce.startswith(buf[-n:])), 0)  # fmt: skip
        self.pending = buf[len(buf) - keep :]
        return buf[: len(buf) - keep]

    def flush(self) -> bytes:
        """What is left when the stream ends without its nonce (the guest died)."""
        rest, self.pending = self.pending, b""
        return rest


def write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError):
        while data:
            data = data[os.write(fd, data) :]


def run_request(
    slot: int, process: dict[str, object], *, attach_stdin: bool, nonce: str, tty: str = ""
) -> bytes:
    """An `exec` client's request to the shim: one line, the script in base64."""
    script = agent.process_script(process, slot, attach_stdin=attach_stdin, nonce=nonce, tty=tty)
    return f"run {slot} {base64.b64encode(script.encode()).decode()}\n".encode()


def guest_run(slot: int, script: bytes) -> bytes:
    """The agent's `run`: the script follows as lines, which its shell reads with builtins (no base64
    process in the guest)."""
    if not script.endswith(b"\n"):
        script += b"\n"
    lines = script.count(b"\n")
    return f"run {slot} {lines}\n".encode() + script


def relayable(words: list[bytes]) -> bool:
    """A client's `kill SLOT SIG` or `resize SLOT ROWS COLS`, to be relayed to the agent's shell as is: only
    when every argument is a number."""
    arity = {b"kill": 2, b"resize": 3}.get(words[0] if words else b"")
    return arity is not None and len(words) == arity + 1 and all(w.isdigit() for w in words[1:])


def _pdeathsig() -> None:
    linux.set_pdeathsig(signal.SIGKILL)


def _virtiofsd_preexec(share: Share) -> None:
    """Die with the shim. virtiofsd gets a mount namespace of its own with a bind of the source (its sandbox
    binds the source again, recursively, keeping what is under it), so nothing outlives it:
    - a read-only share is made read-only here, on the host: the guest's root could remount its virtiofs
      mount read-write, and C virtiofsd has no read-only option;
    - the share's single files are bound into it (after that, so a read-write file stays writable in a
      read-only rootfs, as Docker's /etc/hosts does), each through an O_PATH fd of its mount point resolved
      inside the source, so a symlink in the image cannot send the mount elsewhere."""
    _pdeathsig()
    if not share.readonly and not share.files:
        return
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)  # nothing of ours reaches the host
    linux.mount(share.source, share.source, None, linux.MS_BIND | linux.MS_REC)
    if share.readonly:
        linux.readonly_tree(share.source)
    for source, target, readonly in share.files:
        fd = open_in_root(share.source, target)
        try:
            linux.mount(source, f"/proc/self/fd/{fd}", None, linux.MS_BIND)
        finally:
            os.close(fd)
        if readonly:
            fd = open_in_root(share.source, target)  # now the bind's own root
            try:
                linux.readonly_tree(f"/proc/self/fd/{fd}")
            finally:
                os.close(fd)


def _qemu_preexec(netns: int) -> None:
    """Die with the shim; join the container's network namespace, where the VM's tap is."""
    _pdeathsig()
    if netns >= 0:
        linux.setns(netns, linux.CLONE_NEWNET)


class Shim:
    def __init__(
        self, state_dir: Path, plan: Plan, *, attach_stdin: bool, nonce: str, start_fifo: tuple[int, int]
    ):
        """`start_fifo`: the exec fifo opened for reading and writing (the writer keeps it from ever reading
        EOF) by `create` before the fork, so `start` can never find it without a reader; `nonce`: the one in
        the container process's script in the initramfs (agent.start_config)."""
        self.fifo_fd, self.fifo_keep = start_fifo
        self.dir = state_dir
        self.plan = plan
        self.terminal = bool(plan.process.get("terminal"))
        self.attach_stdin = attach_stdin or self.terminal
        self.sel = selectors.DefaultSelector()
        self.helpers: dict[str, subprocess.Popen[bytes]] = {}  # share tag → its virtiofsd
        self.helper_died = ""  # why the VM was ended: a virtiofsd exited under a running guest
        self.qemu: subprocess.Popen[bytes] | None = None
        self.ready = self.started = False
        self.code: int | None = None
        self.exit_seen_at = 0.0
        self.poweroff_sent_at = 0.0
        self.nonce = nonce
        self.streams: dict[socket.socket, tuple[int, Stream]] = {}
        self.stdin_sock: socket.socket | None = None
        self.execs: dict[int, socket.socket] = {}  # slot → the `exec` client waiting for its exit code
        self.droppers: list[socket.socket] = []  # clients waiting for the guest's `dropped`
        self.ps_waiters: list[socket.socket] = []  # clients waiting for the guest's process list
        self.ps_lines: list[bytes] = []
        self.ctl_buf = b""
        self.signals: list[int] = []
        self.ports: set[str] = set()
        self.consoles = 0  # console ports get /dev/hvc0, hvc1... in the order they are added
        self.ttys: dict[int, str] = {0: "/dev/hvc0"}
        self.qmp_buf = b""
        self.qmp_ready = False

    # -- boot ---------------------------------------------------------------------------------------------

    def _virtiofsd(self, share: Share) -> socket.socket:
        """One virtiofsd per share, sandboxed into its directory; returns QEMU's end of its socket."""
        path = self.dir / f"fs-{share.tag}.sock"
        listener = listen(path)
        # The rootfs is this VM's alone: the guest keeps its pages across opens (cache=always). With
        # cache=auto every open drops the file's pages, so each exec of busybox or each load of libc.so made
        # every process using it fault its pages in again through virtiofsd: an exec of /bin/true took
        # ≈50 ms instead of ≈6 ms under TCG. A host-side write (`cp`) has the guest drop its caches
        # (drop_caches). Volumes are shared with the host and other containers: cache=auto, coherent.
        cache = "always" if share.tag == "rootfs" else "auto"
        # No --thread-pool-size: the default (0) serves requests on the queue's thread. With a pool, a burst
        # of requests (the guest's FORGETs after drop_caches) grew it, and the new "pool" thread's
        # sched_getaffinity (glib) broke virtiofsd's own seccomp filter, which killed it (QEMU 7.2's).
        argv = [VIRTIOFSD, f"--fd={listener.fileno()}", "-o", f"source={share.source}", "-o", f"cache={cache}",
                "-o", "log_level=err", "--rlimit-nofile=0"]  # fmt: skip
        with open(self.dir / f"virtiofsd-{share.tag}.log", "ab") as log:
            self.helpers[share.tag] = subprocess.Popen(
                argv,
                pass_fds=(listener.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=lambda: _virtiofsd_preexec(share),
            )
        listener.close()
        return connect(path)

    def boot(self) -> None:
        shares = list(self.plan.shares)
        if self.plan.rootfs_transport == "virtiofs":
            shares.insert(0, Share("rootfs", self.plan.rootfs, self.plan.root_readonly, self.plan.root_files))
        fs = {s.tag: self._virtiofsd(s) for s in shares}
        names = ["ctl", *agent.port_names(0, terminal=self.terminal, stdin=self.attach_stdin)]
        listeners = {name: listen(port_socket(self.dir, name)) for name in names}
        self.ports.update(names)
        self.consoles = int(self.terminal)
        self.ctl = connect(port_socket(self.dir, "ctl"))
        if self.terminal:
            self.streams[connect(port_socket(self.dir, "tty0"))] = (1, Stream(self.nonce))
        else:
            self.streams[connect(port_socket(self.dir, "out0"))] = (1, Stream(self.nonce))
            self.streams[connect(port_socket(self.dir, "err0"))] = (2, Stream(self.nonce))
        if self.attach_stdin:
            self.stdin_sock = (
                next(iter(self.streams)) if self.terminal else connect(port_socket(self.dir, "in0"))
            )
        self.qmp, qmp_qemu = socket.socketpair()
        machine = qemu.Machine(
            kernel=Path(self.plan.kernel), initrd=Path(self.plan.initrd), memory_mib=self.plan.memory_mib,
            cpus=self.plan.cpus, accel=self.plan.accel,
            rootfs_image=Path(self.plan.rootfs_image) if self.plan.rootfs_image else None,
            port_fds={n: s.fileno() for n, s in listeners.items()},
            virtiofs_fds={t: s.fileno() for t, s in fs.items()}, qmp_fd=qmp_qemu.fileno(),
            nic_mac=self.plan.nic["mac"] if self.plan.nic else "",
            console_log=self.dir / "console.log", debug=bool(os.environ.get("INTERMODAL_VM_DEBUG")),
        )  # fmt: skip
        with open(self.dir / "qemu.log", "ab") as log:
            netns = os.open(self.plan.netns, os.O_RDONLY | os.O_CLOEXEC) if self.plan.nic else -1
            try:
                self.qemu = subprocess.Popen(
                    machine.argv(), pass_fds=machine.pass_fds(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    preexec_fn=lambda: _qemu_preexec(netns),
                )  # fmt: skip
            finally:
                if netns >= 0:
                    os.close(netns)
        for s in (*listeners.values(), *fs.values(), qmp_qemu):
            s.close()
        pids = {"qemu": self.qemu.pid, "helpers": [h.pid for h in self.helpers.values()]}
        (self.dir / "pids.json").write_text(json.dumps(pids))

    # -- the loop ------------------------------------------------------------------------------------------

    def run(self) -> int:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        for s in FORWARDED:
            signal.signal(s, lambda n, _f: self.signals.append(n))
        if self.terminal:  # our pty (the caller's or conmon's) was resized: so is the guest's console
            signal.signal(signal.SIGWINCH, lambda n, _f: self.signals.append(n))
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        fifo_fd = self.fifo_fd
        try:
            self.boot()
        except (OSError, ValueError) as e:
            return self._fail(f"cannot boot the VM: {e}")
        assert self.qemu is not None
        server = listen(self.dir / "shim.sock")
        qemu_fd = os.pidfd_open(self.qemu.pid)
        self.sel.register(wake_r, selectors.EVENT_READ, "wake")
        self.sel.register(fifo_fd, selectors.EVENT_READ, "start")
        self.sel.register(self.ctl, selectors.EVENT_READ, "ctl")
        self.sel.register(server, selectors.EVENT_READ, "server")
        self.sel.register(qemu_fd, selectors.EVENT_READ, "qemu")
        for tag, helper in self.helpers.items():
            self.sel.register(os.pidfd_open(helper.pid), selectors.EVENT_READ, f"helper {tag}")
        for sock in self.streams:
            self.sel.register(sock, selectors.EVENT_READ, "out")
        if self.attach_stdin:
            os.set_blocking(0, False)
            self.sel.register(0, selectors.EVENT_READ, "stdin")
        while True:
            timeout = None
            if self.code is not None and not self.poweroff_sent_at:
                timeout = max(0.0, self.exit_seen_at + DRAIN_SECONDS - time.monotonic())
            elif self.poweroff_sent_at:
                timeout = max(0.0, self.poweroff_sent_at + DRAIN_SECONDS - time.monotonic())
            events = self.sel.select(timeout)
            for key, _ in events:
                what = key.data
                if what == "wake":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 512)
                elif what == "start":
                    with contextlib.suppress(BlockingIOError):
                        os.read(fifo_fd, 512)
                    self.started = True
                    self.sel.unregister(fifo_fd)
                    os.close(fifo_fd)
                    os.close(self.fifo_keep)
                    with contextlib.suppress(FileNotFoundError):
                        (self.dir / "exec.fifo").unlink()
                    self._send(b"start\n")  # QEMU holds it until the agent opens ctl
                elif what == "ctl":
                    self._on_ctl()
                elif what == "out":
                    self._on_output(key.fileobj)  # type: ignore[arg-type]
                elif what == "stdin":
                    self._on_stdin()
                elif what == "server":
                    conn, _ = server.accept()
                    self.sel.register(conn, selectors.EVENT_READ, "client")
                elif what == "client":
                    self._on_client(key.fileobj)  # type: ignore[arg-type]
                elif what == "qemu":
                    return self._finish()
                elif what.startswith("helper "):
                    self.sel.unregister(key.fileobj)
                    self._on_helper_exit(what.split(" ", 1)[1])
            self._deliver_signals()
            if self.code is not None and not self.poweroff_sent_at:
                if all(stream.done for _, stream in self.streams.values()):
                    # The agent synced before reporting the exit and the output is all here: nothing in the
                    # guest is left to lose, so end QEMU now rather than wait for the guest's power-off
                    # (a round trip, a process and the kernel's shutdown: ≈40 ms under TCG).
                    self.qemu.kill()
                    self.poweroff_sent_at = time.monotonic()
                elif time.monotonic() > self.exit_seen_at + DRAIN_SECONDS:
                    self._send(b"poweroff\n")
                    self.poweroff_sent_at = time.monotonic()
            elif self.poweroff_sent_at and time.monotonic() > self.poweroff_sent_at + DRAIN_SECONDS:
                self.qemu.kill()

    def _send(self, line: bytes) -> None:
        with contextlib.suppress(OSError):
            self.ctl.sendall(line)

    # -- hot-plugged exec ports (QMP, docs/interop/qmp-spec.rst) -------------------------------------------

    def _qmp(self, execute: str, arguments: dict[str, object] | None = None, fd: int | None = None) -> object:
        if not self.qmp_ready:
            self.qmp_ready = True
            self._qmp_reply()  # the greeting
            self._qmp("qmp_capabilities")
        message = json.dumps({"execute": execute, **({"arguments": arguments} if arguments else {})}).encode()
        if fd is None:
            self.qmp.sendall(message + b"\n")
        else:
            self.qmp.sendmsg(
                [message + b"\n"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
            )
        return self._qmp_reply()

    def _qmp_reply(self) -> object:
        while True:
            while b"\n" not in self.qmp_buf:
                data = self.qmp.recv(65536)
                if not data:
                    raise OSError("QEMU closed its monitor")
                self.qmp_buf += data
            line, self.qmp_buf = self.qmp_buf.split(b"\n", 1)
            reply = json.loads(line)
            if "error" in reply:
                raise OSError(reply["error"].get("desc", "QMP error"))
            if "return" in reply or "QMP" in reply:
                return reply.get("return")

    def open_slot(self, slot: int, *, terminal: bool, stdin: bool) -> str:
        """Make sure `slot` has the ports this process needs; returns its console device, if any."""
        tty = ""
        for name in agent.port_names(slot, terminal=terminal, stdin=stdin):
            if name not in self.ports:
                listener = listen(port_socket(self.dir, name))
                try:
                    self._qmp("getfd", {"fdname": name}, fd=listener.fileno())
                finally:
                    listener.close()
                backend = {"type": "socket", "data": {"addr": {"type": "fd", "data": {"str": name}},
                                                      "server": True, "wait": False}}  # fmt: skip
                self._qmp("chardev-add", {"id": f"p-{name}", "backend": backend})
                self._qmp("device_add", {"driver": qemu.port_driver(name), "id": f"d-{name}",
                                         "chardev": f"p-{name}", "name": name, "nr": agent.port_nr(name)})  # fmt: skip
                self.ports.add(name)
                if name.startswith("tty"):
                    self.consoles += 1
                    self.ttys[slot] = f"/dev/hvc{self.consoles - 1}"
            if name.startswith("tty"):
                tty = self.ttys[slot]
        return tty

    def _on_ctl(self) -> None:
        try:
            data = self.ctl.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(self.ctl)
            return
        self.ctl_buf += data
        while b"\n" in self.ctl_buf:
            line, self.ctl_buf = self.ctl_buf.split(b"\n", 1)
            words = line.decode(errors="replace").split()
            if words == ["ready"]:
                self.ready = True
            elif words == ["dropped"]:
                for client in self.droppers:
                    with contextlib.suppress(OSError):
                        client.sendall(b"ok\n")
                self.droppers.clear()
            elif words and words[0] == "p":
                self.ps_lines.append(line + b"\n")
            elif len(words) == 2 and words[0] == "ps-end":
                report = b"".join(self.ps_lines) + line + b"\n"
                for client in self.ps_waiters:
                    with contextlib.suppress(OSError):
                        client.sendall(report)
                self.ps_waiters.clear()
                self.ps_lines.clear()
            elif len(words) in (3, 4) and words[0] == "exit":
                slot, code = int(words[1]), int(words[2])
                if slot == 0:
                    if words[3:] == ["oom"]:  # the guest kernel's OOM killer ended it (agent.py)
                        self._note(OOMKilled=True)
                    self.code = code
                    self.exit_seen_at = time.monotonic()
                elif slot in self.execs:
                    client = self.execs.pop(slot)
                    with contextlib.suppress(OSError):
                        client.sendall(f"exit {code}\n".encode())

    def _on_output(self, sock: socket.socket) -> None:
        fd, stream = self.streams[sock]
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(sock)
            write_all(fd, stream.flush())
            stream.done = True
            return
        write_all(fd, stream.feed(data))

    def _on_stdin(self) -> None:
        try:
            data = os.read(0, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        assert self.stdin_sock is not None
        if data:
            with contextlib.suppress(OSError):
                self.stdin_sock.sendall(data)
            return
        self.sel.unregister(0)
        if not self.terminal:
            with contextlib.suppress(OSError):
                self.stdin_sock.shutdown(socket.SHUT_WR)  # QEMU drops the port; the guest reads EOF

    def _on_client(self, conn: socket.socket) -> None:
        """`exec` clients: `open SLOT tty|notty stdin|nostdin` (we answer `ok [TTYDEV]`, or `wait` while the
        guest boots), `run SLOT B64` (relayed as is; we answer `exit CODE`), `kill SLOT SIG` and `resize SLOT
        ROWS COLS` (relayed), `drop_caches` (answered `ok`) and `ps` (answered with the guest's `p` lines and
        `ps-end`, agent.py)."""
        try:
            data = conn.recv(1 << 20)
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(conn)
            for slot, client in list(self.execs.items()):
                if client is conn:
                    self._send(f"kill {slot} 9\n".encode())
                    del self.execs[slot]
            conn.close()
            return
        for line in data.splitlines():
            words = line.split()
            running = self.ready and self.started and self.code is None
            if len(words) == 4 and words[0] == b"open" and running:
                try:
                    tty = self.open_slot(
                        int(words[1]), terminal=words[2] == b"tty", stdin=words[3] == b"stdin"
                    )
                    reply = f"ok {tty}\n".encode()
                except OSError as e:
                    reply = f"error cannot add the exec channels: {e}\n".encode()
                with contextlib.suppress(OSError):
                    conn.sendall(reply)
            elif len(words) == 3 and words[0] == b"run" and running:
                slot = int(words[1])
                try:
                    script = base64.b64decode(words[2], validate=True)
                except ValueError:
                    with contextlib.suppress(OSError):
                        conn.sendall(b"error malformed run request\n")
                    continue
                self.execs[slot] = conn
                self._send(guest_run(slot, script))
            elif words == [b"drop_caches"] and running:
                self.droppers.append(conn)
                self._send(b"drop_caches\n")
            elif words == [b"ps"] and running:
                self.ps_waiters.append(conn)
                if len(self.ps_waiters) == 1:  # one report answers every client waiting
                    self._send(b"ps\n")
            elif words[:1] in ([b"kill"], [b"resize"]):
                if relayable(words):
                    self._send(line + b"\n")
            elif words and words[0] == b"open" and self.started and self.code is None:
                with contextlib.suppress(OSError):
                    conn.sendall(b"wait the guest is still booting\n")
            else:
                with contextlib.suppress(OSError):
                    conn.sendall(b"error the container is not running\n")

    def _deliver_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            if signum == signal.SIGWINCH:
                with contextlib.suppress(OSError):
                    rows, cols = termios.tcgetwinsize(0)
                    self._send(f"resize 0 {rows} {cols}\n".encode())
            elif self.started and self.code is None:
                self._send(f"kill 0 {signum}\n".encode())
            elif not self.started:
                # Not started yet: the signal ends the container before its process ever ran.
                self.code = 128 + signum
                self.exit_seen_at = time.monotonic()
                for _, stream in self.streams.values():
                    stream.done = True

    # -- the end -------------------------------------------------------------------------------------------

    def _finish(self) -> int:
        assert self.qemu is not None
        status = self.qemu.wait()
        for sock, (fd, stream) in self.streams.items():
            with contextlib.suppress(OSError):
                sock.setblocking(False)
                while data := sock.recv(65536):
                    write_all(fd, stream.feed(data))
            if not stream.done:
                write_all(fd, stream.flush())
        self._stop_helpers()
        if self.code is not None:
            return self.code
        return self._fail(self._reason(status), code=128 - status if status < 0 else 255)

    def _on_helper_exit(self, tag: str) -> None:
        """A virtiofsd gone under a running guest leaves its file system hanging for good: end the VM, with
        that as the reason. One that follows QEMU out (QEMU closed its socket) is no cause."""
        assert self.qemu is not None
        status = self.helpers[tag].wait()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.qemu.wait(0.2)
            return
        if self.code is None:
            how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
            self.helper_died = f"the VM's virtiofsd for its {tag} share {how}"
        self.qemu.kill()

    def _stop_helpers(self) -> None:
        """With QEMU gone, virtiofsd has no one to serve: end it now rather than poll for its own exit
        (Popen.wait with a timeout sleeps in steps, which cost ≈10 ms per VM)."""
        for h in self.helpers.values():
            h.kill()
            h.wait()

    def _reason(self, status: int) -> str:
        """Why the VM ended without an exit report: a virtiofsd or QEMU killed, the guest kernel panicked, the
        agent failed."""
        if self.helper_died:
            return self.helper_died
        if status < 0:
            return f"the VM's QEMU process was killed by signal {-status}"
        console = _tail(self.dir / "console.log")
        panic = next((line for line in console if "Kernel panic" in line), "")
        if panic:
            return f"the guest kernel panicked: {panic.strip()}"
        agent_lines = [line.strip() for line in console if line.startswith("agent: ")]
        if agent_lines:
            return f"the guest agent failed: {agent_lines[-1].removeprefix('agent: ')}"
        qemu_log = [line.strip() for line in _tail(self.dir / "qemu.log") if line.strip()]
        detail = qemu_log[-1] if qemu_log else (console[-1].strip() if console else "no output")
        return f"the VM stopped before its process exited (QEMU exit status {status}): {detail}"

    def _note(self, **facts: object) -> None:
        """Add to what `inspect` shows of the VM (the bundle outlives the state dir)."""
        with contextlib.suppress(OSError, ValueError):
            info = Path(self.plan.bundle) / BUNDLE_INFO
            info.write_text(json.dumps({**json.loads(info.read_text()), **facts}))

    def _fail(self, reason: str, code: int = 255) -> int:
        write_all(2, f"intermodal-vm-runtime: {reason}\n".encode())
        self._note(ExitReason=reason)
        if self.qemu and self.qemu.poll() is None:
            self.qemu.kill()
        for h in self.helpers.values():
            if h.poll() is None:
                h.kill()
        return code


def _tail(path: Path, size: int = 16384) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - size))
            return f.read().decode(errors="replace").splitlines()
    except OSError:
        return []
