"""Foreground containers (`run` without -d, `start -a`): the CLI process itself is the monitor, as
`crun run` is. It becomes a child subreaper so the container's init is re-parented to it after the
runtime's `create` returns, pumps the container's output to the terminal and the log, forwards signals
(Docker's --sig-proxy), and reaps the exit status. Skipping conmon here saves a process per run.

`attach` joins a detached container instead, through the attach socket of the conmon that monitors it."""

from __future__ import annotations

import array
import contextlib
import os
import select
import signal
import sys
import termios
import tty
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from intermodal.engine.containers.logs import LogWriter
from intermodal.engine.containers.record import Paths
from intermodal.isolation.oci import OciRuntime
from intermodal.runtime import sys as linux

if TYPE_CHECKING:
    import socket

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def run_foreground(
    runtime: OciRuntime,
    cid: str,
    paths: Paths,
    *,
    interactive: bool,
    terminal: bool,
    on_started: Callable[[int], None],
    output: Callable[[str, bytes], None] | None = None,
    shown: Collection[str] = ("stdout", "stderr"),
    keep_log: bool = True,
) -> int:
    """Create, start and supervise the container until it exits; returns Docker's exit code.

    `output` receives (stream, bytes) instead of the terminal and the log: a build's RUN step feeds its
    progress display this way. Only the `shown` streams reach our terminal (`run -a`); all go to the log
    unless not `keep_log` (--log-driver none)."""
    linux.set_child_subreaper(True)
    pid_file = paths.dir / "pidfile"
    log = LogWriter(paths.log if keep_log else Path(os.devnull))
    try:
        if terminal:
            return _run_tty(runtime, cid, paths, pid_file, log, interactive, on_started)
        return _run_pipes(runtime, cid, paths, pid_file, log, interactive, on_started, output, shown)
    finally:
        log.close()


def _read_pid(pid_file: Path) -> int:
    return int(pid_file.read_text().strip())


def _run_pipes(
    runtime: OciRuntime,
    cid: str,
    paths: Paths,
    pid_file: Path,
    log: LogWriter,
    interactive: bool,
    on_started: Callable[[int], None],
    output: Callable[[str, bytes], None] | None,
    shown: Collection[str],
) -> int:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    stdin = sys.stdin.fileno() if interactive else os.open(os.devnull, os.O_RDONLY)
    try:
        runtime.create(cid, paths.bundle, pid_file, stdio=(stdin, out_w, err_w))
    finally:
        os.close(out_w)
        os.close(err_w)
        if not interactive:
            os.close(stdin)
    pid = _read_pid(pid_file)
    with _forward_signals(pid):
        on_started(pid)
        runtime.start(cid)
        streams = {out_r: ("stdout", sys.stdout.buffer), err_r: ("stderr", sys.stderr.buffer)}
        while streams:
            ready, _, _ = _select(list(streams))
            for fd in ready:
                data = os.read(fd, 65536)
                name, sink = streams[fd]
                if not data:
                    os.close(fd)
                    del streams[fd]
                    continue
                if output is not None:
                    output(name, data)
                    continue
                if name in shown:
                    sink.write(data)
                    sink.flush()
                log.write(name, data)
        return reap(pid)


def _run_tty(
    runtime: OciRuntime,
    cid: str,
    paths: Paths,
    pid_file: Path,
    log: LogWriter,
    interactive: bool,
    on_started: Callable[[int], None],
) -> int:
    """`-t`: the runtime hands us the pty master over a console socket (runc's protocol), we proxy it."""

    def create(sock_path: Path) -> None:
        stdin = os.open(os.devnull, os.O_RDONLY)
        try:
            runtime.create(cid, paths.bundle, pid_file, stdio=(stdin, stdin, stdin), console_socket=sock_path)
        finally:
            os.close(stdin)

    master = receive_console(create)
    pid = _read_pid(pid_file)
    with _forward_signals(pid):
        try:
            on_started(pid)
            runtime.start(cid)
        except BaseException:
            os.close(master)
            raise
        proxy_terminal(master, interactive=interactive, log=log)
    return reap(pid)


def receive_console(launch: Callable[[Path], object], alive: Callable[[], bool] = lambda: True) -> int:
    """Listen on a console socket, call `launch(socket_path)` (which starts the runtime with
    `--console-socket`) and return the pty master the runtime sends back. `alive` says whether the runtime
    may still connect, so a runtime that fails before sending does not leave us waiting forever. The pty
    gets our terminal's window size at once, before the process in it can ask."""
    import socket
    import tempfile

    with tempfile.TemporaryDirectory(prefix="intermodal-console-") as tmp:
        sock_path = Path(tmp) / "console.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(str(sock_path))
            listener.listen(1)
            launch(sock_path)
            while not select.select([listener], [], [], 0.1)[0]:
                if not alive():
                    raise OSError("the runtime exited without sending a terminal over the console socket")
            conn, _ = listener.accept()
            with conn:
                master = _receive_fd(conn)
    _copy_size(master)
    return master


def _our_terminal() -> int | None:
    """The fd of our terminal, stdin's or else stdout's (the docker CLI sizes from its output's)."""
    return next((fd for fd in (sys.stdin.fileno(), sys.stdout.fileno()) if os.isatty(fd)), None)


def _copy_size(master: int) -> None:
    ours = _our_terminal()
    if ours is not None:
        with contextlib.suppress(OSError):
            termios.tcsetwinsize(master, termios.tcgetwinsize(ours))


@contextlib.contextmanager
def _on_resize(action: Callable[[], None]) -> Iterator[None]:
    """Run `action` each time our terminal changes size (SIGWINCH) while in the block, as the docker CLI
    resizes the container's terminal with its own."""
    if _our_terminal() is None:
        yield
        return
    previous = signal.signal(signal.SIGWINCH, lambda _n, _f: action())
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


def proxy_terminal(master: int, *, interactive: bool, log: LogWriter | None = None) -> None:
    """Copy the pty to our stdout (and `log`) and, if interactive, our stdin to the pty (ours in raw mode
    meanwhile) until the container side closes; the pty follows our terminal's size; closes `master`."""
    saved = termios.tcgetattr(sys.stdin.fileno()) if sys.stdin.isatty() and interactive else None
    try:
        if saved is not None:
            tty.setraw(sys.stdin.fileno())
        inputs = [master] + ([sys.stdin.fileno()] if interactive else [])
        with _on_resize(lambda: _copy_size(master)):
            while master in inputs:
                ready, _, _ = _select(inputs)
                for fd in ready:
                    try:
                        data = os.read(fd, 65536)
                    except OSError:  # EIO: the pty's last slave closed
                        data = b""
                    if fd == master:
                        if not data:
                            inputs.remove(master)
                            break
                        os.write(sys.stdout.fileno(), data)
                        if log is not None:
                            log.write("stdout", data)
                    elif data:
                        os.write(master, data)
                    else:
                        inputs.remove(fd)
    finally:
        if saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
        os.close(master)


def _receive_fd(conn: socket.socket) -> int:
    import socket

    fds = array.array("i")
    _, ancillary, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: fds.itemsize])
            return fds[0]
    raise OSError("the runtime did not send a terminal over the console socket")


def _select(fds: list[int]) -> tuple[list[int], list[int], list[int]]:
    while True:
        try:
            return select.select(fds, [], [])
        except InterruptedError:
            continue


def reap(pid: int) -> int:
    """Wait for the container's init (re-parented to us); other orphans are reaped on the way."""
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        except InterruptedError:
            continue
        if reaped == pid:
            return exit_code(status)


@contextlib.contextmanager
def _forward_signals(pid: int) -> Iterator[None]:
    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    previous = {s: signal.signal(s, forward) for s in _FORWARDED}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# conmon's attach socket (conn_sock.c, ctr_stdio.c): SOCK_SEQPACKET; each output packet starts with one byte
# naming the stream, stdin goes in raw. Its ctl FIFO takes "TYPE ROWS COLS\n" lines, type 1 a window size.
_STREAMS = {2: 1, 3: 2}  # conmon's STDOUT_PIPE, STDERR_PIPE -> our fd
_PACKET = 8192 + 1


class Detached(Exception):
    """The user typed the detach keys: the container goes on running."""


def detach_keys(spec: str) -> bytes:
    """Docker's --detach-keys ("ctrl-p,ctrl-q", "a,ctrl-x"): each item a character or ctrl-<key>."""
    keys = bytearray()
    for item in spec.split(","):
        if len(item) == 1:
            keys.append(ord(item))
        elif item.startswith("ctrl-") and len(item) == 6 and (item[5].isalpha() or item[5] in "@[\\]^_"):
            keys.append(ord(item[5].upper()) & 0x1F)
        else:
            raise ValueError(
                f"invalid detach keys {spec!r}: use characters or ctrl-<key>, e.g. ctrl-p,ctrl-q"
            )
    return bytes(keys)


def attach_to_monitor(bundle: Path, pid: int, *, stdin: bool, terminal: bool, sig_proxy: bool,
                      keys: bytes) -> None:  # fmt: skip
    """Copy the container's output to ours and, with `stdin`, our input to it, until the container's output
    ends (it exited) or `keys` are typed (raises Detached). A terminal gets our window size, and keeps it when
    ours changes, and raw mode."""
    import socket

    dir_fd = os.open(bundle, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(f"/proc/self/fd/{dir_fd}/attach")  # the full path exceeds sun_path's 108 bytes
    finally:
        os.close(dir_fd)
    saved = None

    def resize() -> None:  # conmon's ctl FIFO: "1 ROWS COLS" resizes the pty it holds
        ours = _our_terminal()
        if ours is not None:
            rows, cols = termios.tcgetwinsize(ours)
            with contextlib.suppress(OSError), open(bundle / "ctl", "w") as ctl:
                ctl.write(f"1 {rows} {cols}\n")

    if terminal:
        resize()
    if terminal and stdin and sys.stdin.isatty():
        saved = termios.tcgetattr(sys.stdin.fileno())
        tty.setraw(sys.stdin.fileno())
    typed = b""
    try:
        with (
            _forward_signals(pid) if sig_proxy and not terminal else contextlib.nullcontext(),
            _on_resize(resize) if terminal else contextlib.nullcontext(),
        ):
            inputs = [sock.fileno(), *([sys.stdin.fileno()] if stdin else [])]
            while sock.fileno() in inputs:
                ready, _, _ = _select(inputs)
                if sock.fileno() in ready:
                    packet = sock.recv(_PACKET)
                    if not packet:
                        break
                    if packet[0] in _STREAMS:
                        os.write(_STREAMS[packet[0]], packet[1:])
                if stdin and sys.stdin.fileno() in ready:
                    data = os.read(sys.stdin.fileno(), _PACKET - 1)
                    if not data:
                        inputs.remove(sys.stdin.fileno())
                        continue
                    if keys:
                        typed = (typed + data)[-len(keys) :]
                        if typed == keys:
                            raise Detached
                    sock.send(data)
    finally:
        sock.close()
        if saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
