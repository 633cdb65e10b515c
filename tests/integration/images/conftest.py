"""Fixtures for image-command tests: a bootstrapped busybox archive and a CLI bound to a fresh root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

INTERMODAL = str(Path(sys.executable).with_name("intermodal"))


class Cli:
    def __init__(self, root: Path):
        self.root = root

    def __call__(
        self, *args: str, check: bool = True, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        env = {k: v for k, v in os.environ.items() if k != "INTERMODAL_ROOT"}
        proc = subprocess.run(
            [INTERMODAL, "--root", str(self.root), *args],
            capture_output=True,
            env=env,
            input=input,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"intermodal {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()}"
            )
        return proc

    def text(self, *args: str) -> str:
        return self(*args).stdout.decode()


@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bootstrap")
    cli = Cli(root / "root")
    cli("image", "bootstrap", "busybox")
    archive = root / "busybox.tar"
    cli("save", "-o", str(archive), "busybox")
    return archive


@pytest.fixture
def cli(tmp_path: Path, busybox_archive: Path) -> Cli:
    c = Cli(tmp_path / "root")
    c("load", "-i", str(busybox_archive))
    return c
