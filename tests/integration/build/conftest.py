"""Fixtures for build tests: busybox bootstrapped once per session, loaded into a fresh root per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from build_cli import BuildCli


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("builds mount overlays and run containers: needs root")
    root = tmp_path_factory.mktemp("bootstrap")
    cli = BuildCli(root / "root")
    cli("image", "bootstrap", "busybox")
    archive = root / "busybox.tar"
    cli("save", "-o", str(archive), "busybox")
    return archive


@pytest.fixture
def cli(tmp_path: Path, busybox_tar: Path) -> Iterator[BuildCli]:
    c = BuildCli(tmp_path / "root")
    c("load", "-i", str(busybox_tar))
    yield c
    c("system", "reset", "--force")  # a `run` brought the root's bridge and nftables table up


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    """An empty build context directory; tests write a Dockerfile and files into it."""
    path = tmp_path / "ctx"
    path.mkdir()
    return path
