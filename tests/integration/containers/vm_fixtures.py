"""Fixtures for micro-VM tests: a guest kernel and accelerator verdict shared by every test root, and the
check that a VM left nothing behind. Imported by the test_vm_* modules (pytest finds imported fixtures)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_cli import Engine

from intermodal.errors import IntermodalError
from intermodal.isolation.microvm import kernel


@pytest.fixture(scope="session")
def vm_assets() -> Iterator[kernel.Kernel]:
    """Kernel, initramfs and accelerator verdict in one directory for the whole run (and across runs: they
    are keyed by their inputs and locked, so parallel test processes share them safely)."""
    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86_64 is not installed (Debian's qemu-system-x86)")
    assets = kernel.download_cache() / "test-assets"
    assets.mkdir(parents=True, exist_ok=True)
    try:
        guest = kernel.resolve(assets)
    except IntermodalError as e:
        pytest.skip(f"no guest kernel: {e}")
    saved = os.environ.get("INTERMODAL_VM_DIR")
    os.environ["INTERMODAL_VM_DIR"] = str(assets)
    yield guest
    if saved is None:
        del os.environ["INTERMODAL_VM_DIR"]
    else:
        os.environ["INTERMODAL_VM_DIR"] = saved


@pytest.fixture
def vm(engine: Engine, vm_assets: kernel.Kernel) -> Iterator[Engine]:
    yield engine
    assert leftovers(engine.root) == [], "a VM test left QEMU, virtiofsd or VM state behind"


def leftovers(root: Path) -> list[str]:
    """QEMU/virtiofsd processes working for containers of `root`, and VM state directories."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(root) in cmdline and ("qemu-system" in cmdline or "virtiofsd" in cmdline):
            found.append(cmdline[:120])
    state = root / "run" / "vm"
    if state.is_dir():
        found += [str(p) for p in state.iterdir()]
    return found


def vm_pids(root: Path, cid: str) -> dict[str, object]:
    pids: dict[str, object] = json.loads((root / "run" / "vm" / cid / "pids.json").read_text())
    return pids
