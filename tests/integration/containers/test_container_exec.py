"""`exec` in a running container: output and exit codes (126/127 like Docker), env, workdir, user, -d, -i,
-t, and the refusal for containers that do not run; over our runtime, crun and runc."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from engine_cli import INTERMODAL, Engine


def _start(engine: Engine, runtime: str = "intermodal", *extra: str) -> str:
    return engine(
        "run", "-d", "--runtime", runtime, "--name", "box", *extra, "busybox", "sleep", "300"
    ).stdout.strip()


@pytest.mark.parametrize("runtime", ["intermodal", "crun", "runc"])
def test_output_and_exit_codes(engine: Engine, runtime: str) -> None:
    _start(engine, runtime)
    proc = engine("exec", "box", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")
    missing = engine("exec", "box", "no-such-command", check=False)
    assert missing.returncode == 127, missing.stderr
    assert "no-such-command" in missing.stderr
    assert engine("exec", "box", "/etc", check=False).returncode == 126
    assert engine("exec", "box", "true").returncode == 0


@pytest.mark.parametrize("runtime", ["intermodal", "runc"])
def test_env_workdir_and_user(engine: Engine, runtime: str) -> None:
    _start(engine, runtime, "-e", "FROM_RUN=1", "-w", "/etc")
    env_file = engine.root / "exec.env"
    env_file.write_text("# comment\nFROM_FILE=yes\n")
    out = engine(
        "exec", "-e", "EXTRA=two words", "--env-file", str(env_file), "box", "env"
    ).stdout.splitlines()
    assert {"FROM_RUN=1", "EXTRA=two words", "FROM_FILE=yes", "HOME=/root"} <= set(out)
    assert any(line.startswith("HOSTNAME=") for line in out)
    assert engine("exec", "box", "pwd").stdout == "/etc\n"  # the container's working dir by default
    assert engine("exec", "-w", "/tmp", "box", "pwd").stdout == "/tmp\n"
    assert engine("exec", "-u", "nobody", "box", "id", "-u").stdout == "65534\n"
    assert engine("exec", "-u", "1234:5678", "box", "sh", "-c", "id -u; id -g").stdout == "1234\n5678\n"
    bad = engine("exec", "-u", "no-such-user", "box", "true", check=False)
    assert bad.returncode == 125 and "no-such-user" in bad.stderr


def test_exec_keeps_the_container_confinement(engine: Engine) -> None:
    _start(engine)
    caps = engine("exec", "box", "grep", "CapBnd", "/proc/self/status").stdout.split()[1]
    privileged = engine("exec", "--privileged", "box", "grep", "CapBnd", "/proc/self/status").stdout.split()[
        1
    ]
    assert int(caps, 16) < int(privileged, 16)
    assert engine("exec", "box", "grep", "NoNewPrivs", "/proc/self/status").stdout.split()[1] == "1"
    assert engine("exec", "box", "grep", "Seccomp:", "/proc/self/status").stdout.split()[1] == "2"
    # the same PID namespace: the container's sleep is there, the host's processes are not
    assert "sleep 300" in engine("exec", "box", "ps").stdout
    assert str(os.getpid()) not in engine("exec", "box", "ps", "-o", "pid").stdout.split()


def test_detached_and_interactive(engine: Engine) -> None:
    _start(engine)
    assert engine("exec", "-d", "box", "sh", "-c", "sleep 0.3; echo done > /tmp/marker").stdout == ""
    deadline = time.monotonic() + 10
    while engine("exec", "box", "cat", "/tmp/marker", check=False).stdout != "done\n":
        assert time.monotonic() < deadline, "the detached exec never ran"
        time.sleep(0.1)
    proc = subprocess.run(
        [INTERMODAL, "--root", str(engine.root), "exec", "-i", "box", "sh", "-c", "tr a-z A-Z"],
        input="hello\n", capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.stdout == "HELLO\n"


@pytest.mark.parametrize("runtime", ["intermodal", "crun", "runc"])
def test_tty(engine: Engine, runtime: str) -> None:
    _start(engine, runtime)
    proc = subprocess.run(
        ["script", "-eqc", f"{INTERMODAL} --root {engine.root} exec -t box sh -c 'tty; exit 5'", "/dev/null"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "/dev/pts/0" in proc.stdout


def test_refuses_containers_that_do_not_run(engine: Engine) -> None:
    engine("create", "--name", "created", "busybox", "true")
    proc = engine("exec", "created", "true", check=False)
    assert proc.returncode == 125
    assert "container created is not running" in proc.stderr
    _start(engine)
    engine("pause", "box")
    paused = engine("exec", "box", "true", check=False)
    assert paused.returncode == 125 and "paused" in paused.stderr
    engine("unpause", "box")
    assert engine("exec", "no-such-container", "true", check=False).returncode == 125
