"""Resource limits land in the cgroup (v1 here, for real) and `-it` gives the container a real terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

from engine_cli import INTERMODAL, RESIZE_WATCHER, Engine, resized_on_terminal

CGROUP = Path("/sys/fs/cgroup")


def test_limits_are_written_to_the_cgroup(engine: Engine) -> None:
    cid = engine(
        "run", "-d", "--memory", "64m", "--memory-swap", "128m", "--cpus", "0.5", "--cpu-shares", "512",
        "--pids-limit", "42", "--cpuset-cpus", "0", "busybox", "sleep", "300",
    ).stdout.strip()  # fmt: skip
    group = f"intermodal/{cid}"
    assert (CGROUP / "memory" / group / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
    assert (CGROUP / "memory" / group / "memory.memsw.limit_in_bytes").read_text().strip() == str(128 << 20)
    quota = int((CGROUP / "cpu" / group / "cpu.cfs_quota_us").read_text())
    period = int((CGROUP / "cpu" / group / "cpu.cfs_period_us").read_text())
    assert quota / period == 0.5
    assert (CGROUP / "cpu" / group / "cpu.shares").read_text().strip() == "512"
    assert (CGROUP / "pids" / group / "pids.max").read_text().strip() == "42"
    assert (CGROUP / "cpuset" / group / "cpuset.cpus").read_text().strip() == "0"
    engine("rm", "-f", cid)
    assert not (CGROUP / "memory" / group).exists()


def test_engine_state_is_not_reachable_from_a_container(engine: Engine) -> None:
    proc = engine("run", "--rm", "busybox", "ls", str(engine.root), check=False)
    assert proc.returncode != 0
    assert "No such file" in proc.stderr


def _read_until(fd: int, pattern: bytes, timeout: float = 15) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, out) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    return out


def test_interactive_tty(engine: Engine) -> None:
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "INTERMODAL_ROOT"}
    proc = subprocess.Popen(
        [INTERMODAL, "--root", str(engine.root), "run", "--rm", "-it", "busybox", "sh"],
        stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    try:
        _read_until(master, rb"/ # ")  # the shell's prompt: it is reading from its terminal now
        os.write(master, b"tty; echo done\n")
        out = _read_until(master, rb"\ndone")
        assert b"/dev/pts/0" in out, out
        os.write(master, b"exit 7\n")
        assert proc.wait(timeout=20) == 7
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_attach_follows_the_clients_resizes(engine: Engine) -> None:
    """`attach` to a `run -dit` container: the size goes to conmon (its ctl FIFO), which resizes the pty."""
    engine("run", "-dit", "--name", "shell", "busybox", *RESIZE_WATCHER)
    assert b"50 132" in resized_on_terminal(engine, "attach", "shell", command=[])
    assert engine("wait", "shell").stdout.strip() == "0"
