"""Fixtures for running real containers: a busybox rootfs, OCI bundles, and the three OCI runtimes
(ours, crun, runc) behind one command-line driver so every lifecycle test runs against all of them."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from runtime_harness import CRUN, OURS, Runtime, _crun_usable, build_bundle, build_busybox_rootfs

from intermodal.runtime import sys as linux


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.skip("needs root")


@pytest.fixture(scope="session")
def subreaper() -> Iterator[None]:
    """Orphaned container inits (their `create` exits) become our children, as with conmon."""
    linux.set_child_subreaper(True)
    yield
    linux.set_child_subreaper(False)
    for parent in Path("/sys/fs/cgroup").glob("*/intermodal-test"):
        with contextlib.suppress(OSError):
            parent.rmdir()


@pytest.fixture(params=["intermodal", "crun", "runc"])
def runtime(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, subreaper: None
) -> Runtime:
    name = request.param
    if os.geteuid() != 0:
        pytest.skip("needs root")
    argv = {"intermodal": [OURS], "crun": CRUN, "runc": ["runc"]}[name]
    if name != "intermodal" and not shutil.which(argv[-1] if name == "crun" else name):
        pytest.skip(f"{name} is not installed")
    if name == "crun":
        why = _crun_usable(tmp_path_factory.getbasetemp())
        if why:
            print(why)
            pytest.skip(why)
    rt = Runtime(name, argv, tmp_path_factory.mktemp(f"{name}-state"))
    yield rt
    rt.cleanup()


@pytest.fixture
def busybox_rootfs(tmp_path: Path) -> Path:
    return build_busybox_rootfs(tmp_path / "rootfs")


@pytest.fixture
def make_bundle(tmp_path: Path) -> Callable[..., Path]:
    """`make_bundle(args, **spec_options)`: a bundle in this test's tmp_path (rootfs built once per test)."""
    return lambda args, **options: build_bundle(tmp_path / "bundle", args, **options)
