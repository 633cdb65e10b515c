"""Fixtures for engine-level container tests: a state root per test with busybox already in it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_cli import Engine, mount_count


@pytest.fixture(scope="session")
def busybox_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("container tests need root")
    root = tmp_path_factory.mktemp("template-root")
    Engine(root)("image", "bootstrap", "busybox")
    return root / "images"


@pytest.fixture
def engine(busybox_store: Path, tmp_path: Path) -> Iterator[Engine]:
    root = tmp_path / "root"
    root.mkdir()
    shutil.copytree(busybox_store, root / "images", symlinks=True)
    e = Engine(root)
    yield e
    ids = e("ps", "-aq", "--no-trunc", check=False).stdout.split()
    if ids:
        e("rm", "-f", *ids, check=False)
    assert mount_count(root) == 0, "a test left mounts under its root"
    e("system", "reset", "--force")  # the root's bridge and nftables table stay up until this
