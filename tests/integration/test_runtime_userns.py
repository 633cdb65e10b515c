"""A bundle with a user namespace (config-linux.md "User namespace mappings"), run identically by our runtime,
crun and runc: the container's root is the range's first host ID, devices are bind mounts of the host's, and
`exec` joins the namespace."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runtime_harness import build_bundle, mounts_mentioning

pytestmark = pytest.mark.root

FIRST = 300_000  # apart from the engine pool's ranges (100000 + 65536*k) used by engine tests
MAPS = [{"containerID": 0, "hostID": FIRST, "size": 65536}]


@pytest.fixture
def bundle_dir() -> Iterator[Path]:
    """Outside pytest's 0700 temp root: runc looks the rootfs up as the mapped root, which needs o+x on
    every directory above it (ours and crun open it beforehand)."""
    path = Path(tempfile.mkdtemp(prefix="userns-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path)


def _userns_bundle(path: Path, args: list[str]) -> Path:
    bundle = build_bundle(path / "bundle", args)
    spec = json.loads((bundle / "config.json").read_text())
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["linux"]["uidMappings"] = MAPS
    spec["linux"]["gidMappings"] = MAPS
    (bundle / "config.json").write_text(json.dumps(spec))
    os.chown(bundle / "rootfs" / "tmp", FIRST, FIRST)  # the container's root may write its /tmp
    return bundle


def test_root_in_a_user_namespace_is_the_ranges_first_id(runtime: Any, bundle_dir: Path) -> None:
    script = "id -u; cat /proc/self/uid_map /proc/self/gid_map; touch /tmp/made; echo x > /dev/null; head -c1 /dev/zero | wc -c"
    bundle = _userns_bundle(bundle_dir, ["sh", "-c", script])
    result = runtime.run(bundle)
    assert result.code == 0, result.err
    lines = result.out.split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == lines[2].split() == ["0", str(FIRST), "65536"]
    assert lines[3] == "1"
    made = (bundle / "rootfs" / "tmp" / "made").stat()
    assert (made.st_uid, made.st_gid) == (FIRST, FIRST)
    assert not mounts_mentioning(bundle)


def test_exec_joins_the_user_namespace(runtime: Any, bundle_dir: Path) -> None:
    bundle = _userns_bundle(bundle_dir, ["sleep", "600"])
    with open(os.devnull, "w") as null:
        pid = runtime.create("ux", bundle, stdout=null, stderr=null)
    runtime("start", "ux")
    status = Path(f"/proc/{pid}/status").read_text()
    assert f"Uid:\t{FIRST}\t{FIRST}\t{FIRST}\t{FIRST}" in status  # seen from the host
    proc = runtime("exec", "ux", "sh", "-c", "id -u; cat /proc/self/uid_map", check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "0", str(FIRST), "65536"]
    runtime("delete", "--force", "ux")
    assert runtime.wait(pid) == 137
