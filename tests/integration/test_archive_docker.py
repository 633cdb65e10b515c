"""`docker load` reads our docker-archive, and what `docker save` (20.10, the legacy layout) writes loads into
us. Starts a private dockerd (Debian's docker.io) on its own socket and data root, and stops it after."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from intermodal.image import archive
from intermodal.image.store import ImageStore

pytestmark = pytest.mark.slow
DOCKER = Path("/usr/bin/docker")  # Debian's 20.10 client, matching the daemon (a newer one may be on PATH)


@pytest.fixture
def docker() -> Iterator[list[str]]:
    """A docker client command line talking to a dockerd of our own; skips if it cannot start here."""
    if shutil.which("dockerd") is None or not DOCKER.exists():
        pytest.skip("dockerd is not installed (Debian package docker.io)")
    if os.geteuid() != 0:
        pytest.skip("dockerd needs root")
    root = Path(tempfile.mkdtemp(prefix="im-dockerd-", dir="/tmp"))  # short: unix socket paths are limited
    client = [str(DOCKER), "-H", f"unix://{root}/docker.sock"]
    log = open(root / "dockerd.log", "wb")  # noqa: SIM115 - closed below
    # vfs needs no mounts, and no bridge or iptables means the daemon leaves the host's network alone.
    daemon = subprocess.Popen(
        ["dockerd", "--iptables=false", "--bridge=none", "--storage-driver=vfs"]
        + ["--data-root", f"{root}/data", "--exec-root", f"{root}/exec"]
        + ["--host", f"unix://{root}/docker.sock", "--pidfile", f"{root}/docker.pid"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        if not _wait_until_up(client, daemon):
            tail = (root / "dockerd.log").read_text(errors="replace")[-600:]
            pytest.skip(f"dockerd did not start here: {tail}")
        yield client
    finally:
        _stop(daemon, root / "docker.pid")
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_up(client: list[str], daemon: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and daemon.poll() is None:
        if subprocess.run([*client, "version"], capture_output=True).returncode == 0:
            return True
        time.sleep(0.5)
    return False


def _stop(daemon: subprocess.Popen[bytes], pidfile: Path) -> None:
    """SIGTERM the PID dockerd wrote (it stops its containerd too), SIGKILL if it lingers."""
    pid = int(pidfile.read_text()) if pidfile.exists() else daemon.pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    try:
        daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()


def docker_run(client: list[str], *args: str) -> str:
    result = subprocess.run([*client, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"docker {args} failed: {result.stderr}"
    return result.stdout.strip()


def test_docker_load_reads_ours_and_docker_save_loads_into_us(
    test_image: Any, docker: list[str], tmp_path: Path
) -> None:
    ours = tmp_path / "ours.tar"
    with open(ours, "wb") as f:
        archive.save(test_image.store, [(test_image.record, ["test/image:1"])], f, format="docker")
    assert "Loaded image: test/image:1" in docker_run(docker, "load", "-i", str(ours))
    assert (
        docker_run(docker, "image", "inspect", "--format", "{{.Id}}", "test/image:1")
        == test_image.record.config
    )

    theirs = tmp_path / "theirs.tar"
    docker_run(docker, "save", "-o", str(theirs), "test/image:1")
    with open(theirs, "rb") as f:
        [record] = archive.load(ImageStore(tmp_path / "loaded"), f)
    assert (record.config, record.names) == (test_image.record.config, ["docker.io/test/image:1"])
    assert record.size == test_image.record.size
