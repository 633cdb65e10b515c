"""Helpers for engine-level container tests: the real `intermodal` CLI bound to a state root, and counters
for what a test could leave behind (mounts, cgroups)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import termios
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
