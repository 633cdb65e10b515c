"""Fixtures for image-command tests: a bootstrapped busybox archive and a CLI bound to a fresh root."""

from __future__ import annotations

from pathlib import Path

import pytest
from image_cli import Cli


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
