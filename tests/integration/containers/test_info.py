"""`info` and `version`: Docker's fields, counted from this root, and `--format` as scripts use it."""

from __future__ import annotations

import json
import os

from engine_cli import Engine

from intermodal import __version__


def test_info_counts_this_roots_containers_and_images(engine: Engine) -> None:
    engine("run", "-d", "busybox", "sleep", "60")
    engine("create", "busybox", "true")
    data = json.loads(engine("info", "--format", "json").stdout)
    assert (data["Containers"], data["ContainersRunning"], data["ContainersStopped"]) == (2, 1, 1)
    assert data["Images"] == 1
    assert data["DockerRootDir"] == str(engine.root)
    assert data["CgroupVersion"] == ("2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1")
    assert "intermodal" in data["Runtimes"]
    assert engine("info", "--format", "{{.NCPU}} {{.ContainersRunning}}").stdout.split() == [
        str(os.cpu_count()),
        "1",
    ]
    text = engine("info").stdout
    assert " Containers: 2\n  Running: 1\n" in text and f" Docker Root Dir: {engine.root}\n" in text


def test_version_reports_this_program(engine: Engine) -> None:
    assert engine("version", "--format", "{{.Server.Version}}").stdout.strip() == __version__
    assert json.loads(engine("version", "--format", "json").stdout)["Client"]["Os"] == "linux"
