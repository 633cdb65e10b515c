"""`exec` in a running VM: take a free agent slot (flock, so concurrent execs never share one), connect to
its ports' sockets directly, ask the shim to have the agent run the process there, pump stdio and signals,
and return the exit code the agent reports."""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import signal
import socket
import termios
import time
from pathlib import Path
from typing import Any

from intermodal.errors import Conflict, IntermodalError
from intermodal.isolation.microvm import agent
from intermodal.isolation.microvm.shim import FORWARDED, Stream, connect, port_socket, run_request, write_all

BOOT_WAIT_SECONDS = 120.0  # generous: TCG boots on a busy machine


def _take_slot(state_dir: Path) -> tuple[int, int]:
    for slot in range(1, agent.SLOTS):
        fd = os.open(state_dir / f"slot{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return slot, fd
        except BlockingIOError:
            os.close(fd)
    raise Conflict(f"a VM runs at most {agent.SLOTS - 1} exec sessions at once: wait for one to finish")


def run_exec(state_dir: Path, process: dict[str, Any], *, attach_stdin: bool) -> int:
    slot, lock = _take_slot(state_dir)
    try:
        return _run(state_dir, slot, process, attach_stdin)
    finally:
        os.close(lock)


def _run(state_dir: Path, slot: int, process: dict[str, Any], attach_stdin: bool) -> int:
    nonce = agent.new_nonce()
    terminal = bool(process.get("terminal"))
    stdin = attach_stdin and not terminal
    shim = connect(state_dir / "shim.sock")
    deadline = time.monotonic() + BOOT_WAIT_SECONDS
    while True:  # `run -d` returns before the guest has booted; `exec` right after it waits, as with Docker
        shim.sendall(
            f"open {slot} {'tty' if terminal else 'notty'} {'stdin' if stdin else 'nostdin'}\n".encode()
        )
        reply = _line(shim).split(maxsplit=1)
        if not reply or reply[0] != "wait" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if not reply or reply[0] != "ok":
        raise Conflict(reply[1] if len(reply) > 1 else "the container is not running")
    streams: dict[socket.socket, tuple[int, Stream]] = {}
    stdin_sock: socket.socket | None = None
    if terminal:
        stdin_sock = connect(port_socket(state_dir, f"tty{slot}"))
        streams[stdin_sock] = (1, Stream(nonce))
    else:
        streams[connect(port_socket(state_dir, f"out{slot}"))] = (1, Stream(nonce))
        streams[connect(port_socket(state_dir, f"err{slot}"))] = (2, Stream(nonce))
        if stdin:
            stdin_sock = connect(port_socket(state_dir, f"in{slot}"))
    shim.sendall(
        run_request(slot, process, attach_stdin=stdin, nonce=nonce, tty=reply[1] if terminal else "")
    )

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            shim.sendall(f"kill {slot} {signum}\n".encode())

    for s in FORWARDED:
        signal.signal(s, forward)
    if terminal:  # our pty was resized (by the engine, following its terminal): so is the guest's console

        def resize(_signum: int, _frame: object) -> None:
            with contextlib.suppress(OSError):
                rows, cols = termios.tcgetwinsize(0)
                shim.sendall(f"resize {slot} {rows} {cols}\n".encode())

        signal.signal(signal.SIGWINCH, resize)
    sel = selectors.DefaultSelector()
    sel.register(shim, selectors.EVENT_READ, "shim")
    for sock in streams:
        sel.register(sock, selectors.EVENT_READ, "out")
    if stdin_sock is not None:
        sel.register(0, selectors.EVENT_READ, "stdin")
    code: int | None = None
    while code is None or not all(stream.done for _, stream in streams.values()):
        events = sel.select(5.0 if code is not None else None)
        if not events and code is not None:
            break  # the exit is known and output stopped short of the nonce: do not hang
        for key, _ in events:
            if key.data == "out":
                out = key.fileobj
                assert isinstance(out, socket.socket)
                fd, stream = streams[out]
                data = out.recv(65536)
                write_all(fd, stream.feed(data) if data else stream.flush())
                if not data:
                    stream.done = True
                    sel.unregister(out)
            elif key.data == "stdin":
                data = os.read(0, 65536)
                assert stdin_sock is not None
                if data:
                    stdin_sock.sendall(data)
                else:
                    sel.unregister(0)
                    if not terminal:
                        stdin_sock.shutdown(socket.SHUT_WR)
            else:
                line = _line(shim)
                if not line:
                    raise IntermodalError("the VM stopped before the exec'd process exited")
                words = line.split(maxsplit=1)
                if words[0] == "exit":
                    code = int(words[1])
                elif words[0] == "error":
                    raise Conflict(words[1] if len(words) > 1 else "exec failed")
    return code if code is not None else 255


def _line(sock: socket.socket) -> str:
    """One reply line from the shim (it writes whole short lines, one at a time)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()
