"""Helpers for engine-level container tests: the real `intermodal` CLI bound to a state root, and counters
for what a test could leave behind (mounts, cgroups)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

INTERMODAL = str(Path(sys.executable).with_name("intermodal"))


def mount_count(under: Path) -> int:
    prefix = str(under)
    with open("/proc/self/mountinfo") as f:
        return sum(1 for line in f if line.split()[4].startswith(prefix))


def cgroup_dirs() -> set[str]:
    found = set()
    for controller in ("memory", "pids", "cpu", "freezer"):
        base = Path("/sys/fs/cgroup") / controller / "intermodal"
        if base.is_dir():
            found |= {f"{controller}/{p.name}" for p in base.iterdir() if p.is_dir()}
    return found


class Engine:
    """The CLI bound to one state root."""

    def __init__(self, root: Path):
        self.root = root

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 60, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "INTERMODAL_ROOT"}
        if "input" not in kw:
            kw["stdin"] = subprocess.DEVNULL
        proc = subprocess.run(
            [INTERMODAL, "--root", str(self.root), *args],
            capture_output=True, text=True, timeout=timeout, env=env, **kw,  # type: ignore[call-overload]
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"intermodal {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc

    def popen(self, *args: str, **kw: object) -> subprocess.Popen[str]:
        return subprocess.Popen(  # type: ignore[call-overload]
            [INTERMODAL, "--root", str(self.root), *args], text=True, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, **kw,
        )  # fmt: skip


def on_terminal(engine: Engine, size: tuple[int, int], *args: str) -> bytes:
    """Run the CLI with its stdout on a pty of `size` (rows, cols), as from a terminal; returns what it wrote
    there (stdin stays /dev/null: no -i)."""
    master, slave = pty.openpty()
    termios.tcsetwinsize(slave, size)
    env = {k: v for k, v in os.environ.items() if k != "INTERMODAL_ROOT"}
    try:
        proc = subprocess.run([INTERMODAL, "--root", str(engine.root), *args], stdin=subprocess.DEVNULL,
                              stdout=slave, stderr=subprocess.PIPE, env=env, timeout=120)  # fmt: skip
        os.close(slave)
        slave = -1
        out = b""
        while select.select([master], [], [], 1)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the pty has no writer left
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert proc.returncode == 0, proc.stderr
    return out


def read_until(fd: int, pattern: bytes, timeout: float) -> bytes:
    """What `fd` (a pty's master) gives until `pattern` (a regex) shows up or `timeout` passes."""
    out = b""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, out) and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    return out


RESIZE_WATCHER = ["sh", "-c", "trap 'stty size' WINCH; echo go; until read -t 0.2 line; do :; done"]


def resized_on_terminal(engine: Engine, *args: str, command: list[str] = RESIZE_WATCHER) -> bytes:
    """Run the CLI (`args`, then `command`) on a pty of 24x80 that is its controlling terminal, as from a
    shell; once the container's shell is up (it said `go`, or a second passed for an `attach` without a
    command), resize the pty to 50x132, then end the shell. Returns what the terminal showed: the
    container's `stty size` on its SIGWINCH."""
    master, slave = pty.openpty()
    termios.tcsetwinsize(slave, (24, 80))
    env = {k: v for k, v in os.environ.items() if k != "INTERMODAL_ROOT"}

    def controlling_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([INTERMODAL, "--root", str(engine.root), *args, *command], stdin=slave,
                            stdout=slave, stderr=slave, env=env, start_new_session=True,
                            preexec_fn=controlling_terminal)  # fmt: skip
    try:
        out = read_until(master, rb"go\r?\n", 60 if command else 1)
        termios.tcsetwinsize(master, (50, 132))
        out += read_until(master, rb"50 132", 30)
        os.write(master, b"done\n")  # the shell's `read` ends it
        assert proc.wait(timeout=30) == 0, out
        return out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
