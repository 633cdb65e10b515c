"""`update`: new limits reach a running container's cgroup through its runtime, and a stopped one's next start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_cli import Engine

RUNTIMES = ["intermodal", "crun", "runc"]
CGROUP = Path("/sys/fs/cgroup")


def _cgroup(controller: str, cid: str, name: str) -> str:
    return (CGROUP / controller / "intermodal" / cid / name).read_text().strip()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_update_changes_a_running_containers_limits(engine: Engine, runtime: str) -> None:
    cid = engine("run", "-d", "--runtime", runtime, "-m", "64m", "busybox", "sleep", "60").stdout.strip()
    assert engine("update", "-m", "128m", "--cpus", "0.5", "--pids-limit", "50", cid).stdout.strip() == cid
    assert _cgroup("memory", cid, "memory.limit_in_bytes") == str(128 << 20)
    assert _cgroup("cpu", cid, "cpu.cfs_quota_us") == "50000"
    assert _cgroup("pids", cid, "pids.max") == "50"
    hc = json.loads(engine("inspect", cid).stdout)[0]["HostConfig"]
    assert (hc["Memory"], hc["NanoCpus"], hc["PidsLimit"]) == (128 << 20, 500_000_000, 50)


def test_update_of_a_stopped_container_applies_at_its_next_start(engine: Engine) -> None:
    engine("create", "--name", "later", "busybox", "sleep", "60")
    engine("update", "-m", "96m", "--restart", "on-failure:3", "later")
    engine("start", "later")
    cid = engine("inspect", "-f", "{{.Id}}", "later").stdout.strip()
    assert _cgroup("memory", cid, "memory.limit_in_bytes") == str(96 << 20)
    assert (
        engine("inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", "later").stdout.strip() == "on-failure"
    )


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["-m", "lots"], "invalid memory limit"),
        (["--cpus", "1", "--cpu-quota", "20000"], "--cpus and --cpu-period/--cpu-quota"),
        (["--memory-swap", "16m"], "must be larger than --memory"),
        (["--restart", "sometimes"], "invalid restart policy"),
    ],
)
def test_bad_update_changes_nothing(engine: Engine, flags: list[str], fragment: str) -> None:
    cid = engine("run", "-d", "-m", "64m", "busybox", "sleep", "60").stdout.strip()
    proc = engine("update", *flags, cid, check=False)
    assert proc.returncode == 125 and fragment in proc.stderr
    assert _cgroup("memory", cid, "memory.limit_in_bytes") == str(64 << 20)
    assert json.loads(engine("inspect", cid).stdout)[0]["HostConfig"]["Memory"] == 64 << 20
