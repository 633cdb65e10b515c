"""cgroup v2 against a fake unified tree laid out with the kernel's file formats, plus the real (controller-
less) unified hierarchy of a hybrid host for what needs no controllers: joining, freezing, killing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from intermodal.runtime import cgroups

CONTROLLERS = "cpuset cpu io memory hugetlb pids rdma misc"
UNIFIED = Path("/sys/fs/cgroup/unified")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The root of a cgroup2 mount, and an `intermodal` child left from an earlier container."""
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text(CONTROLLERS + "\n")
    (root / "cgroup.subtree_control").write_text("\n")
    (root / "cgroup.procs").write_text("1\n")
    parent = root / "intermodal"
    parent.mkdir()
    (parent / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (parent / "cgroup.subtree_control").write_text("cpu memory\n")
    (parent / "cgroup.procs").write_text("")
    return root


def test_detect(tree: Path, tmp_path: Path) -> None:
    assert cgroups.detect(tree) is cgroups.V2
    assert cgroups.detect(tmp_path) is cgroups.V1
    assert isinstance(cgroups.open_cgroup("/intermodal/c1", tree), cgroups.V2)


def test_create_enables_controllers_and_writes_limits(tree: Path) -> None:
    cg = cgroups.V2("intermodal/c1", tree)
    resources = {
        "memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 32 << 20},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
        "pids": {"limit": 100},
        "devices": [{"allow": False, "access": "rwm"}],
    }
    cg.create(resources)
    leaf = tree / "intermodal/c1"
    # Only the controllers an ancestor does not enable yet are written, in one "+a +b" command each level.
    assert (tree / "cgroup.subtree_control").read_text() == "+cpu +cpuset +memory +pids +io"
    assert (tree / "intermodal/cgroup.subtree_control").read_text() == "+cpuset +pids +io"
    files = {name: (leaf / name).read_text() for name in (
        "memory.max", "memory.swap.max", "memory.low", "cpu.weight", "cpu.max", "cpuset.cpus", "cpuset.mems",
        "pids.max")}  # fmt: skip
    assert files == {
        "memory.max": str(64 << 20),
        "memory.swap.max": str(32 << 20),  # OCI swap is memory+swap; v2 limits swap alone
        "memory.low": str(32 << 20),
        "cpu.weight": "20",  # runc: 1 + ((512 - 2) * 9999) / 262142
        "cpu.max": "50000 100000",
        "cpuset.cpus": "0-1",
        "cpuset.mems": "0",
        "pids.max": "100",
    }


@pytest.mark.parametrize(("shares", "weight"), [(2, 1), (1024, 39), (262144, 10000)])
def test_shares_to_weight_matches_runc(shares: int, weight: int) -> None:
    assert cgroups.shares_to_weight(shares) == weight


def test_unlimited_values(tree: Path) -> None:
    cg = cgroups.V2("intermodal/c2", tree)
    cg.create(
        {"memory": {"limit": -1, "swap": -1}, "cpu": {"quota": -1, "period": 100000}, "pids": {"limit": 0}}
    )
    leaf = tree / "intermodal/c2"
    assert [(leaf / n).read_text() for n in ("memory.max", "memory.swap.max", "cpu.max", "pids.max")] == [
        "max", "max", "max 100000", "max"]  # fmt: skip


def test_stats_oom_and_freeze_read_kernel_formats(tree: Path) -> None:
    cg = cgroups.V2("intermodal/c3", tree)
    cg.create({})
    leaf = tree / "intermodal/c3"
    (leaf / "memory.current").write_text("1052672\n")
    (leaf / "pids.current").write_text("3\n")
    (leaf / "cpu.stat").write_text("usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 0\n")
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 0\noom_group_kill 0\n")
    assert cg.stats() == cgroups.Stats(memory_bytes=1052672, cpu_ns=2_500_000, pids=3)
    assert not cg.oom_killed()
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\noom_group_kill 0\n")
    assert cg.oom_killed()
    (leaf / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    cg.freeze()
    assert (leaf / "cgroup.freeze").read_text() == "1"
    (leaf / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    cg.thaw()
    assert (leaf / "cgroup.freeze").read_text() == "0"


def test_add_process_and_delete_with_cgroup_kill(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cg = cgroups.V2("intermodal/c4", tree)
    cg.create({})
    leaf = tree / "intermodal/c4"
    cg.add_process(4242)
    assert (leaf / "cgroup.procs").read_text() == "4242"
    assert cg.pids() == [4242]
    (leaf / "cgroup.kill").write_text("")
    (leaf / "cgroup.procs").write_text("")  # what the kernel shows once cgroup.kill has done its work
    # A real cgroup directory is removable while its interface files are still listed; a fake one is not.
    monkeypatch.setattr(cgroups, "_rmdir", shutil.rmtree)
    cg.delete()
    assert not cg.exists()


@pytest.mark.root
def test_real_unified_hierarchy_join_freeze_kill_remove() -> None:
    if not (UNIFIED / "cgroup.controllers").exists():
        pytest.skip("no cgroup2 mount at /sys/fs/cgroup/unified")
    cg = cgroups.V2(f"/intermodal-test/v2-{os.getpid()}", UNIFIED)
    cg.create({})
    child = subprocess.Popen(["sleep", "60"])
    try:
        cg.add_process(child.pid)
        assert cg.pids() == [child.pid]
        cg.freeze()
        assert "frozen 1" in (UNIFIED / cg.path.lstrip("/") / "cgroup.events").read_text()
        cg.thaw()
        cg.delete()
        assert child.wait(10) == -9
        assert not cg.exists()
    finally:
        child.kill()
        child.wait()
        if cg.exists():
            cg.delete()
        (UNIFIED / "intermodal-test").rmdir()
