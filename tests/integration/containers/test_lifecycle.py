"""Detached containers under conmon: ps, logs, stop, start, restart, kill, wait, rm, rename, pause."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from engine_cli import Engine, cgroup_dirs, mount_count


def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("runtime", ["intermodal", "crun", "runc"])
def test_detached_lifecycle(engine: Engine, runtime: str) -> None:
    cid = engine("run", "-d", "--runtime", runtime, "--name", "app", "busybox", "sh", "-c",
                 "echo hello; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done").stdout.strip()  # fmt: skip
    assert len(cid) == 64
    assert engine("ps", "-q").stdout.strip() == cid[:12]
    assert wait_for(lambda: "hello" in engine("logs", "app").stdout)
    assert engine("ps", "--format", "{{.Names}} {{.State}}").stdout.strip() == "app running"
    engine("stop", "app")
    assert engine("ps", "-q").stdout == ""
    assert engine("ps", "-a", "--format", "{{.Status}}").stdout.startswith("Exited (0)")
    assert "bye" in engine("logs", "app").stdout
    engine("start", "app")
    assert engine("ps", "--format", "{{.Names}}").stdout.strip() == "app"
    engine("kill", "app")
    assert engine("wait", "app").stdout.strip() == "137"
    engine("rm", "app")
    assert engine("ps", "-aq").stdout == ""


def test_restart_leaves_the_new_instance_running(engine: Engine) -> None:
    """The old conmon's exit command (`container cleanup`) runs after `restart` has started the new instance:
    it must not take the new one for the exited one (it killed it, Exited (255), about one restart in two)."""
    engine("run", "-d", "--name", "app", "busybox", "sh", "-c",
           "echo hello; trap 'exit 0' TERM; while true; do sleep 0.1; done")  # fmt: skip
    for started in (2, 3, 4):
        engine("restart", "app")
        time.sleep(1)  # the old conmon's cleanup has run by now
        state = engine("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "app").stdout.split()
        assert state == ["running", "0"]
        assert wait_for(lambda n=started: engine("logs", "app").stdout.count("hello") == n)
    engine("rm", "-f", "app")


def test_logs_tail_timestamps_and_streams(engine: Engine) -> None:
    engine(
        "run", "--name", "l", "busybox", "sh", "-c", "for i in 1 2 3 4; do echo line$i; done; echo oops >&2"
    )
    tail = engine("logs", "--tail", "2", "l")  # the last two records, whichever stream they came from
    assert (tail.stdout, tail.stderr) == ("line4\n", "oops\n")
    proc = engine("logs", "-t", "l")
    assert proc.stderr.split()[-1] == "oops"
    assert proc.stdout.splitlines()[0].split()[1] == "line1"
    assert proc.stdout.splitlines()[0].split()[0].endswith("Z")
    assert engine("logs", "--since", "2099-01-01T00:00:00Z", "l").stdout == ""


def test_logs_follow_ends_when_container_exits(engine: Engine) -> None:
    engine("run", "-d", "--name", "f", "busybox", "sh", "-c", "echo a; sleep 1; echo b")
    proc = engine("logs", "-f", "f", timeout=20)
    assert proc.stdout == "a\nb\n"


def test_rm_refuses_running_and_force_cleans_everything(engine: Engine) -> None:
    cgroups_before = cgroup_dirs()
    engine("run", "-d", "--name", "busy", "busybox", "sleep", "300")
    proc = engine("rm", "busy", check=False)
    assert proc.returncode == 125 and "stop it first" in proc.stderr
    engine("rm", "-f", "busy")
    assert mount_count(engine.root) == 0
    assert cgroup_dirs() == cgroups_before
    assert engine("ps", "-aq").stdout == ""


def test_killing_the_monitor_is_garbage_collected(engine: Engine) -> None:
    cid = engine("run", "-d", "--name", "orphan", "busybox", "sleep", "300").stdout.strip()
    pid = int((engine.root / "containers" / cid / "conmon.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: engine("ps", "-aq", "--filter", "status=exited").stdout.strip() == cid[:12])
    assert mount_count(engine.root) == 0


def test_killed_foreground_cli_is_garbage_collected(engine: Engine) -> None:
    proc = engine.popen("run", "--name", "fg", "busybox", "sleep", "300")
    assert wait_for(lambda: engine("ps", "-q").stdout.strip() != "")
    proc.kill()
    proc.wait()
    assert wait_for(lambda: engine("ps", "-q").stdout.strip() == "")
    assert engine("ps", "-a", "--format", "{{.State}}").stdout.strip() == "exited"
    assert mount_count(engine.root) == 0


def test_restart_policy_on_failure_counts(engine: Engine) -> None:
    engine(
        "run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 1"
    )
    assert wait_for(lambda: engine("logs", "flaky").stdout.count("run") == 3, timeout=20)
    assert wait_for(lambda: engine("ps", "-a", "--format", "{{.State}}").stdout.strip() == "exited")
    assert engine("wait", "flaky").stdout.strip() == "1"


def test_restart_policy_applies_after_a_foreground_run(engine: Engine) -> None:
    """As with Docker: the foreground run returns the first exit code, and the policy restarts it detached."""
    policy = ["--restart", "on-failure:1"]
    first = engine("run", "--name", "fg", *policy, "busybox", "sh", "-c", "echo run; exit 3", check=False)
    assert first.returncode == 3 and first.stdout.strip() == "run"
    assert wait_for(lambda: engine("logs", "fg").stdout.count("run") == 2, timeout=20)
    assert wait_for(lambda: engine("ps", "-a", "--format", "{{.State}}").stdout.strip() == "exited")
    inspected = json.loads(engine("inspect", "fg").stdout)[0]
    assert inspected["RestartCount"] == 1 and inspected["State"]["ExitCode"] == 3


def test_pause_and_unpause(engine: Engine) -> None:
    engine("run", "-d", "--name", "p", "busybox", "sleep", "300")
    engine("pause", "p")
    assert engine("ps", "--format", "{{.State}}").stdout.strip() == "paused"
    engine("unpause", "p")
    assert engine("ps", "--format", "{{.State}}").stdout.strip() == "running"


def test_rename_and_filters(engine: Engine) -> None:
    engine("create", "--name", "one", "-l", "tier=web", "busybox", "true")
    engine("rename", "one", "two")
    assert engine("ps", "-a", "--format", "{{.Names}}").stdout.strip() == "two"
    assert engine("ps", "-a", "-q", "--filter", "label=tier=web").stdout.strip() != ""
    assert engine("ps", "-a", "-q", "--filter", "label=tier=db").stdout.strip() == ""
    assert engine("ps", "-a", "--filter", "status=created", "--format", "{{.Names}}").stdout.strip() == "two"


def test_ps_size_shows_the_writable_layer(engine: Engine) -> None:
    engine("run", "--name", "big", "busybox", "sh", "-c", "head -c 300000 /dev/zero > /big")
    engine("run", "--name", "small", "busybox", "true")
    sizes = dict(
        line.split(" ", 1)
        for line in engine("ps", "-a", "-s", "--format", "{{.Names}} {{.Size}}").stdout.splitlines()
    )
    writable, _, virtual = sizes["big"].partition(" (virtual ")
    assert writable.endswith("kB") and 300 <= float(writable[:-2]) < 320
    assert sizes["small"].startswith("0B (virtual ") and virtual.endswith("MB)")
    assert engine("ps", "-a", "-s").stdout.splitlines()[0].rstrip().endswith("SIZE")


def test_container_prune_removes_only_stopped(engine: Engine) -> None:
    engine("run", "--name", "done", "busybox", "true")
    engine("run", "-d", "--name", "live", "busybox", "sleep", "300")
    engine("container", "prune", "-f")
    assert engine("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["live"]


def test_named_volume_persists_and_copies_up(engine: Engine) -> None:
    engine(
        "run",
        "--rm",
        "-v",
        "data:/etc",
        "busybox",
        "sh",
        "-c",
        "cat /etc/passwd > /dev/null && echo x > /etc/new",
    )
    assert engine("run", "--rm", "-v", "data:/etc", "busybox", "cat", "/etc/new").stdout == "x\n"
    vol = engine.root / "volumes" / "data" / "_data"
    assert (vol / "passwd").exists()


def test_bind_mount_read_only(engine: Engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    host = tmp_path / "share"
    host.mkdir()
    (host / "f").write_text("hi\n")
    out = engine(
        "run",
        "--rm",
        "-v",
        f"{host}:/data:ro",
        "busybox",
        "sh",
        "-c",
        "cat /data/f; touch /data/g || echo RO",
    )
    assert out.stdout.split() == ["hi", "RO"]
    assert not (host / "g").exists()
