"""Behaviour specific to intermodal-runtime: exec errors, `run`, terminals, users, mount safety, pause."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from runtime_harness import mounts_mentioning

from intermodal.runtime import cgroups
from intermodal.runtime import spec as oci

pytestmark = pytest.mark.root


@pytest.fixture
def ours(runtime: Any) -> Any:
    if runtime.name != "intermodal":
        pytest.skip("intermodal-runtime only")
    return runtime


@pytest.fixture(params=["intermodal"])
def runtime(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, subreaper: None
) -> Iterator[Any]:
    from runtime_harness import OURS, Runtime

    rt = Runtime("intermodal", [OURS], tmp_path_factory.mktemp("state"))
    yield rt
    rt.cleanup()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["no-such-command"], 127, 'exec: "no-such-command": executable file not found in $PATH'),
        (["/no/such/file"], 127, 'exec: "/no/such/file": stat /no/such/file: no such file or directory'),
        (["/etc/passwd"], 126, 'exec: "/etc/passwd": permission denied'),
        (["/tmp"], 126, 'exec: "/tmp": permission denied'),
    ],
)
def test_exec_failures_exit_127_or_126(ours: Any, make_bundle: Callable[..., Path], args: list[str], code: int,
                                        message: str) -> None:  # fmt: skip
    res = ours.run(make_bundle(args))
    assert (res.code, res.err.strip()) == (code, message)


def test_run_returns_exit_code_and_cleans_up(ours: Any, make_bundle: Callable[..., Path]) -> None:
    bundle = make_bundle(["sh", "-c", "echo out; exit 7"], cgroups_path="/intermodal-test/run-cmd")
    proc = ours("run", "--bundle", str(bundle), "r1", check=False)
    assert (proc.returncode, proc.stdout) == (7, "out\n")
    assert json.loads(ours("list", "--format", "json").stdout) == []
    assert not cgroups.V1("/intermodal-test/run-cmd").exists()


def test_user_rlimits_and_capabilities_of_a_non_root_process(
    ours: Any, make_bundle: Callable[..., Path]
) -> None:
    import resource

    script = "id -u; id -g; ulimit -n; grep -E 'Cap(Eff|Prm|Bnd)' /proc/self/status; echo $HOME"
    res = ours.run(make_bundle(["sh", "-c", script], uid=65534, gid=65534, additional_gids=[5]))
    uid, gid, nofile, eff, prm, bnd, home = res.out.split("\n")[:7]
    assert (uid, gid, nofile) == ("65534", "65534", str(resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
    assert eff.split()[1] == prm.split()[1] == "0000000000000000"  # a non-root user keeps no capabilities
    assert bnd.split()[1] == "00000000a80425fb"
    assert home == "/"


def test_read_only_rootfs_and_bind_mounts(
    ours: Any, make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello").write_text("from host\n")
    mounts = [oci.bind_mount(str(shared), "/data", readonly=True), oci.bind_mount(str(shared), "/rw")]
    script = (
        "touch /x || echo ROOT_RO; cat /data/hello; touch /data/y || echo DATA_RO; touch /rw/z && echo RW_OK"
    )
    res = ours.run(make_bundle(["sh", "-c", script], read_only=True, mounts=mounts))
    assert res.out.split("\n")[:4] == ["ROOT_RO", "from host", "DATA_RO", "RW_OK"]
    assert (shared / "z").exists()


def test_mount_destination_symlinks_stay_inside_the_rootfs(ours: Any, make_bundle: Callable[..., Path],
                                                           tmp_path: Path) -> None:  # fmt: skip
    host_dir = tmp_path / "host-target"
    host_dir.mkdir()
    bundle = make_bundle(["true"])
    # An image may ship symlinks that point anywhere; mounting "through" them must stay in the rootfs.
    os.symlink(f"../../../../../../..{host_dir}", bundle / "rootfs/etc/escape")
    os.symlink(str(host_dir), bundle / "rootfs/abs-escape")
    tmpfs = {"type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}
    spec = json.loads((bundle / "config.json").read_text())
    spec["mounts"] += [{**tmpfs, "destination": "/etc/escape/a"}, {**tmpfs, "destination": "/abs-escape/b"}]
    spec["process"]["args"] = ["sh", "-c", f"grep -c ' {host_dir}/[ab] ' /proc/self/mountinfo"]
    (bundle / "config.json").write_text(json.dumps(spec))
    before = mounts_mentioning(tmp_path)
    res = ours.run(bundle)
    assert res.out.strip() == "2"  # mounted, on the in-rootfs path
    assert list(host_dir.iterdir()) == []
    assert (bundle / f"rootfs{host_dir}/a").is_dir()
    assert mounts_mentioning(tmp_path) == before


def test_console_socket_receives_the_pty_master(
    ours: Any, make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    sock_path = tmp_path / "console.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)
    bundle = make_bundle(["sh", "-c", "tty; [ -c /dev/console ] && echo CONSOLE; exit 5"], terminal=True)
    pid_file = tmp_path / "pid"
    create = subprocess.Popen([*ours.argv, "--root", str(ours.root), "create", "--bundle", str(bundle),
                               "--console-socket", str(sock_path), "--pid-file", str(pid_file), "tty1"])  # fmt: skip
    conn, _ = server.accept()
    msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
    assert create.wait(30) == 0
    master = fds[0]
    assert msg == b"/dev/pts/0" and os.isatty(master)
    ours("start", "tty1")
    assert ours.wait(int(pid_file.read_text())) == 5
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO once the slave side is closed
            break
        if not chunk:
            break
        out += chunk
    assert out.replace(b"\r", b"").split(b"\n")[:2] == [b"/dev/pts/0", b"CONSOLE"]
    os.close(master)
    conn.close()
    server.close()
    ours("delete", "tty1")


def test_pause_resume_and_stats(ours: Any, make_bundle: Callable[..., Path]) -> None:
    path = "/intermodal-test/pause"
    bundle = make_bundle(["sleep", "600"], cgroups_path=path)
    with open(os.devnull, "w") as null:
        pid = ours.create("p", bundle, stdout=null, stderr=null)
    ours("start", "p")
    ours("pause", "p")
    assert ours.state("p")["status"] == "paused"
    assert Path(f"/sys/fs/cgroup/freezer{path}/freezer.state").read_text().strip() == "FROZEN"
    assert cgroups.V1(path).stats().pids == 1
    ours("resume", "p")
    assert ours.state("p")["status"] == "running"
    ours("delete", "--force", "p")
    assert ours.wait(pid) == 137
    assert not cgroups.V1(path).exists()


def test_unconfined_seccomp_and_preserved_fds(
    ours: Any, make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    bundle = make_bundle(["sh", "-c", "grep Seccomp: /proc/self/status; cat <&3"], seccomp_profile=None)
    passed = tmp_path / "passed"
    passed.write_text("via fd 3\n")
    pid_file = tmp_path / "pid"
    with open(tmp_path / "out", "w") as out:  # the shell opens fd 3 for the runtime, as systemd would
        subprocess.run(["sh", "-c", 'exec "$@" 3<"$PASSED"', "sh", *ours.argv, "--root", str(ours.root), "create",
                        "--bundle", str(bundle), "--preserve-fds", "1", "--pid-file", str(pid_file), "fds"],
                       env={**os.environ, "PASSED": str(passed)}, stdout=out, check=True, timeout=30)  # fmt: skip
    ours("start", "fds")
    assert ours.wait(int(pid_file.read_text())) == 0
    ours("delete", "fds")
    assert (tmp_path / "out").read_text().split("\n")[:2] == ["Seccomp:\t0", "via fd 3"]


def test_create_errors_leave_nothing_behind(ours: Any, make_bundle: Callable[..., Path]) -> None:
    bundle = make_bundle(["true"], cgroups_path="/intermodal-test/bad")
    spec = json.loads((bundle / "config.json").read_text())
    spec["mounts"].append(
        {"destination": "/x", "type": "bind", "source": "/does/not/exist", "options": ["bind"]}
    )
    (bundle / "config.json").write_text(json.dumps(spec))
    proc = ours("create", "--bundle", str(bundle), "bad", check=False)
    assert proc.returncode != 0 and "/does/not/exist" in proc.stderr
    assert ours("state", "bad", check=False).returncode != 0
    assert not cgroups.V1("/intermodal-test/bad").exists()


def test_command_line_errors_name_the_bad_argument(ours: Any, tmp_path: Path) -> None:
    missing = ours("create", "--bundle", str(tmp_path / "absent"), "c1", check=False)
    assert missing.returncode == 2
    assert f"'{tmp_path / 'absent'}': no such directory" in missing.stderr
    unknown = ours("state", "no-such-container", check=False)
    assert unknown.returncode == 1
    assert (
        unknown.stderr.strip()
        == "intermodal-runtime: container 'no-such-container' does not exist: see `list` for existing ones"
    )
