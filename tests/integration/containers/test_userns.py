"""`--userns=auto` (Podman's private user namespace per container, `private` is the same): a 65536-ID range
from the engine's pool, the image's layers seen through idmapped mounts, the container's own files owned by
the range's first ID on the host; `--userns=host` unchanged; ranges freed by `rm`."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_cli import INTERMODAL, Engine, mount_count

RUNTIMES = ["intermodal", "crun", "runc"]
POOL = 100_000


@pytest.fixture
def open_engine(busybox_store: Path) -> Iterator[Engine]:
    """An engine whose root lies under directories others may traverse (o+x), as runc needs for a remapped
    root (Docker requires the same of its data root); pytest's own temp root is 0700."""
    base = Path(tempfile.mkdtemp(prefix="userns-engine-", dir="/tmp"))
    base.chmod(0o711)
    root = base / "root"
    root.mkdir()
    shutil.copytree(busybox_store, root / "images", symlinks=True)
    e = Engine(root)
    try:
        yield e
    finally:
        ids = e("ps", "-aq", "--no-trunc", check=False).stdout.split()
        if ids:
            e("rm", "-f", *ids, check=False)
        leaked = mount_count(root)
        e("system", "reset", "--force", check=False)
        shutil.rmtree(base, ignore_errors=True)
        assert leaked == 0, "a test left mounts under its root"


def _uid_map(text: str) -> list[str]:
    return text.split()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_auto_is_root_of_a_private_range_and_the_image_still_looks_root_owned(
    open_engine: Engine, runtime: str
) -> None:
    script = "id -u; id -g; cat /proc/self/uid_map; stat -c '%u:%g' /bin/busybox /etc/passwd /; touch /new && stat -c %u /new"
    out = open_engine(
        "run", "--rm", "--runtime", runtime, "--userns=auto", "busybox", "sh", "-c", script
    ).stdout
    lines = out.splitlines()
    assert lines[:2] == ["0", "0"]
    assert lines[2].split() == ["0", str(POOL), "65536"]
    assert lines[3:6] == ["0:0", "0:0", "0:0"]  # shared layers (idmapped) and the upper dir's root
    assert lines[6] == "0"
    assert mount_count(open_engine.root) == 0


def test_host_view_files_processes_and_disjoint_ranges(engine: Engine) -> None:
    first = engine("run", "-d", "--userns=auto", "busybox", "sleep", "600").stdout.strip()
    second = engine("run", "-d", "--userns=private", "busybox", "sleep", "600").stdout.strip()
    maps = [engine("exec", c, "cat", "/proc/self/uid_map").stdout.split() for c in (first, second)]
    starts = sorted(int(m[1]) for m in maps)
    assert maps[0][0] == maps[1][0] == "0" and maps[0][2] == maps[1][2] == "65536"
    assert starts[1] - starts[0] >= 65536  # disjoint
    records = [
        json.loads((engine.root / "containers" / c / "container.json").read_text()) for c in (first, second)
    ]
    assert [r["id_mappings"]["uidMappings"][0]["hostID"] for r in records] == [
        int(maps[0][1]),
        int(maps[1][1]),
    ]

    engine("exec", first, "sh", "-c", "echo hi > /made-inside")
    made = (engine.root / "containers" / first / "diff" / "made-inside").stat()
    assert (made.st_uid, made.st_gid) == (int(maps[0][1]), int(maps[0][1]))
    assert engine("exec", first, "stat", "-c", "%u", "/made-inside").stdout.strip() == "0"
    pid = engine("inspect", "-f", "{{.State.Pid}}", first).stdout.strip()
    status = Path(f"/proc/{pid}/status").read_text()
    assert f"Uid:\t{maps[0][1]}\t{maps[0][1]}" in status  # the container's root, seen from the host
    ps = engine("exec", first, "ps", "-o", "user,comm").stdout
    assert "root" in ps.splitlines()[1]

    engine("rm", "-f", first)
    assert not (engine.root / "containers" / first).exists()
    assert mount_count(engine.root / "containers" / first) == 0
    third = engine("run", "-d", "--userns=auto", "busybox", "sleep", "600").stdout.strip()
    assert engine("exec", third, "cat", "/proc/self/uid_map").stdout.split()[1] == maps[0][1]  # freed, reused
    engine("rm", "-f", second, third)
    assert mount_count(engine.root) == 0


def test_host_is_unchanged(engine: Engine) -> None:
    out = engine("run", "--rm", "--userns=host", "busybox", "cat", "/proc/self/uid_map").stdout
    assert out.split() == ["0", "0", "4294967295"]
    assert (
        engine(
            "inspect",
            "-f",
            "{{.HostConfig.UsernsMode}}",
            engine("create", "--userns=host", "busybox").stdout.strip(),
        ).stdout.strip()
        == "host"
    )


@pytest.mark.parametrize("value", ["keep-id", "auto:size=1000", "ns:/proc/1/ns/user", "bogus"])
def test_bad_value_is_one_line_and_125(engine: Engine, value: str) -> None:
    proc = engine("run", "--rm", f"--userns={value}", "busybox", "true", check=False)
    assert proc.returncode == 125
    assert proc.stderr.strip().count("\n") == 0
    assert "--userns" in proc.stderr
    assert engine("ps", "-aq").stdout == ""


def test_engine_default_and_opting_out(engine: Engine) -> None:
    (engine.root / "config.json").write_text(json.dumps({"userns": "auto"}))
    mapped = engine("run", "--rm", "busybox", "cat", "/proc/self/uid_map").stdout.split()
    assert mapped == ["0", str(POOL), "65536"]
    host = engine("run", "--rm", "--userns=host", "busybox", "cat", "/proc/self/uid_map").stdout.split()
    assert host == ["0", "0", "4294967295"]


def test_volumes_and_etc_files_belong_to_the_container_root(engine: Engine) -> None:
    script = "echo 10.1.2.3 extra >> /etc/hosts && touch /data/f && stat -c %u /data/f /etc/hosts"
    out = engine("run", "--rm", "--userns=auto", "-v", "vol:/data", "busybox", "sh", "-c", script).stdout
    assert out.split() == ["0", "0"]
    data = engine.root / "volumes" / "vol" / "_data"
    assert data.stat().st_uid == POOL and (data / "f").stat().st_uid == POOL


def test_runc_needs_a_traversable_root(engine: Engine) -> None:
    """Under pytest's 0700 temp root runc could not reach the rootfs as the remapped root: say why."""
    proc = engine("run", "--rm", "--runtime", "runc", "--userns=auto", "busybox", "true", check=False)
    assert proc.returncode == 125
    assert "o+x" in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert mount_count(engine.root) == 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_detached_exec_and_rm_leave_nothing(open_engine: Engine, runtime: str) -> None:
    # runc 1.1 joins the user namespace before the others, and then may not join the engine's network
    # namespace (owned by the host's user namespace): its exec needs a namespace the container made itself.
    network = ["--network", "none"] if runtime == "runc" else []
    cid = open_engine(
        "run", "-d", "--runtime", runtime, "--userns=auto", *network, "busybox", "sleep", "600"
    ).stdout.strip()  # fmt: skip
    out = open_engine("exec", cid, "sh", "-c", "id -u; cat /proc/self/uid_map").stdout.split()
    assert out == ["0", "0", str(POOL), "65536"]
    pid = open_engine("inspect", "-f", "{{.State.Pid}}", cid).stdout.strip()
    assert f"Uid:\t{POOL}\t{POOL}" in Path(f"/proc/{pid}/status").read_text()
    assert mount_count(open_engine.root / "containers" / cid / "layers") > 0
    open_engine("rm", "-f", cid)
    assert mount_count(open_engine.root) == 0


def test_commit_maps_the_range_back_to_container_ids(engine: Engine) -> None:
    script = "mkdir /d && echo x > /d/f && chown 1000:1000 /d/f && rm /etc/passwd"
    cid = engine("create", "--userns=auto", "busybox", "sh", "-c", script).stdout.strip()
    assert engine("start", "-a", cid).returncode == 0
    engine("commit", cid, "committed:1")
    out = engine(
        "run", "--rm", "committed:1", "sh", "-c", "stat -c %u:%g /d /d/f; test -e /etc/passwd || echo gone"
    )
    assert out.stdout.split() == ["0:0", "1000:1000", "gone"]


def _tar_listing(engine: Engine, *args: str) -> str:
    stream = subprocess.run([INTERMODAL, "--root", str(engine.root), *args], capture_output=True, check=True)
    return subprocess.run(
        ["tar", "tvf", "-"], input=stream.stdout, capture_output=True, check=True
    ).stdout.decode()


def test_cp_and_export_use_the_container_ids(engine: Engine, tmp_path: Path) -> None:
    cid = engine(
        "run", "-d", "--userns=auto", "busybox", "sh", "-c", "mkdir /own && chown 1000 /own && sleep 600"
    ).stdout.strip()
    (tmp_path / "hello").write_text("hi\n")
    engine("exec", cid, "sh", "-c", "until [ -d /own ]; do sleep 0.05; done")
    engine("cp", str(tmp_path / "hello"), f"{cid}:/own/hello")
    assert engine("exec", cid, "stat", "-c", "%u:%g", "/own/hello").stdout.strip() == "0:0"
    assert (engine.root / "containers" / cid / "diff" / "own" / "hello").stat().st_uid == POOL
    listing = _tar_listing(engine, "cp", f"{cid}:/own", "-")
    assert " 1000/0 " in listing and " 0/0 " in listing
    exported = _tar_listing(engine, "export", cid)
    assert any(line.endswith(" bin/busybox") and " 0/0 " in line for line in exported.splitlines())
    engine("rm", "-f", cid)
