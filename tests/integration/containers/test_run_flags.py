"""Docker's `run` flags beyond the lifecycle: ulimits, devices, /dev/shm size, sysctls, host namespaces,
extra groups, OOM settings, CPU quota, --cidfile, --expose and --label-file."""

from __future__ import annotations

import json

import pytest
from engine_cli import Engine

RUNTIMES = ["intermodal", "crun", "runc"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_ulimit_sets_the_containers_limits(engine: Engine, runtime: str) -> None:
    proc = engine("run", "--rm", "--runtime", runtime, "--ulimit", "nofile=1024:2048", "--ulimit", "nproc=500",
                  "busybox", "sh", "-c", "ulimit -Sn; ulimit -Hn; ulimit -Su; ulimit -Hu")  # fmt: skip
    assert proc.stdout.split() == ["1024", "2048", "500", "500"]


@pytest.mark.parametrize("flag", ["bogus=1", "nofile", "nofile=abc", "nofile=2048:1024"])
def test_bad_ulimit_is_refused(engine: Engine, flag: str) -> None:
    proc = engine("run", "--rm", "--ulimit", flag, "busybox", "true", check=False)
    assert proc.returncode == 125
    assert f"invalid --ulimit {flag!r}" in proc.stderr
    assert engine("ps", "-aq").stdout == ""
