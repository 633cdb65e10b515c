"""The OCI lifecycle and Docker-like isolation, run identically against our runtime, crun and runc."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from runtime_harness import mounts_mentioning

from intermodal.runtime import cgroups
from intermodal.runtime import spec as oci

pytestmark = pytest.mark.root


def test_exit_code_and_stdout_pass_through(runtime: Any, make_bundle: Callable[..., Path]) -> None:
    res = runtime.run(make_bundle(["sh", "-c", "echo hello; echo oops >&2; exit 42"]))
    assert (res.code, res.out, res.err) == (42, "hello\n", "oops\n")


def test_pid1_hostname_and_private_process_table(runtime: Any, make_bundle: Callable[..., Path]) -> None:
    script = "echo $$; hostname; ls -d /proc/[0-9]* | wc -l; ps -o pid= | head -1"
    res = runtime.run(make_bundle(["sh", "-c", script], hostname="boxed"))
    pid1, host, nprocs, first = res.out.split()
    assert (pid1, host, first) == ("1", "boxed", "1")
    assert int(nprocs) <= 4  # sh, ls, wc and the pipeline's helpers only: no host processes


def test_confinement_no_mount_no_proc_sys_writes_masked_paths(
    runtime: Any, make_bundle: Callable[..., Path]
) -> None:
    script = (
        "mount -t tmpfs x /mnt && echo MOUNTED; "
        "echo 1 > /proc/sys/kernel/domainname && echo WROTE_SYSCTL; "
        "unshare -n true && echo UNSHARED; "
        "[ -e /proc/kcore ] && wc -c < /proc/kcore || echo 0; "
        "wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l; "
        "grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; grep Seccomp: /proc/self/status; "
        "mknod /tmp/disk b 8 0 && head -c1 /tmp/disk > /dev/null && echo READ_DISK"
    )
    res = runtime.run(make_bundle(["sh", "-c", script]))
    for escaped in ("MOUNTED", "WROTE_SYSCTL", "UNSHARED", "READ_DISK"):  # READ_DISK: the devices cgroup
        assert escaped not in res.out
    lines = res.out.split("\n")
    assert lines[0].strip() == "0" and lines[1].strip() == "0"  # masked: empty (kcore may not exist)
    assert lines[2].strip() == "0"  # masked directories are empty
    assert lines[3].split() == ["CapEff:", "00000000a80425fb"]  # exactly Docker's 14 default capabilities
    assert lines[4].split() == ["NoNewPrivs:", "1"]
    assert lines[5].split() == ["Seccomp:", "2"]


def test_no_fd_leaks_and_cwd_inside_rootfs(runtime: Any, make_bundle: Callable[..., Path]) -> None:
    script = "ls /proc/self/fd | tr '\\n' ' '; echo; pwd; readlink /proc/1/cwd; ls /proc/1/cwd/.. | grep -c busybox"
    res = runtime.run(make_bundle(["sh", "-c", script], cwd="/tmp/work"))
    fds, pwd, cwd, _ = res.out.split("\n", 3)
    assert fds.split() == ["0", "1", "2", "3"]  # stdio + the directory ls itself opens
    assert pwd == "/tmp/work" and cwd == "/tmp/work"


def test_memory_limit_oom_kills_and_is_reported_by_the_cgroup(
    runtime: Any, make_bundle: Callable[..., Path]
) -> None:
    limit = 32 << 20
    res_spec = {"memory": limit, "memory_swap": limit}
    path = f"/intermodal-test/oom-{runtime.name}-{os.getpid()}"
    bundle = make_bundle(["tail", "/dev/zero"], cgroups_path=path,
                         linux_resources=oci.resources(**res_spec))  # fmt: skip
    res = runtime.run(bundle, cid="oom", keep=True)
    try:
        assert res.code == 137
        cg = cgroups.V1(path)
        assert cg.oom_killed()
    finally:
        runtime("delete", "oom")
    assert not cgroups.V1(path).exists()


def test_pids_limit_enforced(runtime: Any, make_bundle: Callable[..., Path]) -> None:
    script = "cat /sys/fs/cgroup/pids/pids.max; for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 1 & done; wait"
    res = runtime.run(make_bundle(["sh", "-c", script], linux_resources=oci.resources(pids_limit=6)))
    assert res.out.strip() == "6"
    assert "can't fork" in res.err


def test_lifecycle_state_kill_delete(runtime: Any, make_bundle: Callable[..., Path]) -> None:
    bundle = make_bundle(["sleep", "600"], cgroups_path=f"/intermodal-test/life-{runtime.name}")
    mounts_before = mounts_mentioning(bundle.parent)
    with open(os.devnull, "w") as null:
        pid = runtime.create("life", bundle, stdout=null, stderr=null)
    state = runtime.state("life")
    assert (state["id"], state["status"], state["pid"]) == ("life", "created", pid)
    assert Path(state["bundle"]) == bundle
    assert runtime("start", "life", check=False).returncode == 0
    assert runtime.state("life")["status"] == "running"
    assert runtime("delete", "life", check=False).returncode != 0  # running: refused without --force
    assert runtime.state("life")["status"] == "running"
    runtime("kill", "life", "KILL")
    assert runtime.wait(pid) == 128 + signal.SIGKILL
    assert runtime.state("life")["status"] == "stopped"
    assert runtime("kill", "life", "KILL", check=False).returncode != 0  # nothing left to signal
    runtime("delete", "life")
    assert runtime("state", "life", check=False).returncode != 0
    assert not cgroups.V1(f"/intermodal-test/life-{runtime.name}").exists()
    assert mounts_mentioning(bundle.parent) == mounts_before


def test_update_sets_limits_of_a_running_container(runtime: Any, make_bundle: Callable[..., Path]) -> None:
    path = f"/intermodal-test/update-{runtime.name}"
    bundle = make_bundle(["sleep", "600"], cgroups_path=path)
    with open(os.devnull, "w") as null:
        runtime.create("upd", bundle, stdout=null, stderr=null)
    runtime("start", "upd")
    resources = bundle / "resources.json"
    resources.write_text(
        json.dumps({"memory": {"limit": 96 << 20, "swap": 192 << 20}, "pids": {"limit": 40}})
    )
    runtime("update", "--resources", str(resources), "upd")
    memory = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
    assert (memory / "memory.limit_in_bytes").read_text() == f"{96 << 20}\n"
    assert (Path("/sys/fs/cgroup/pids") / path.lstrip("/") / "pids.max").read_text() == "40\n"
    runtime("delete", "--force", "upd")


def test_delete_force_and_delete_created(runtime: Any, make_bundle: Callable[..., Path]) -> None:
    bundle = make_bundle(["sleep", "600"])
    with open(os.devnull, "w") as null:
        created = runtime.create("never-started", bundle, stdout=null, stderr=null)
        running = runtime.create("forced", bundle, stdout=null, stderr=null)
    runtime("start", "forced")
    runtime("delete", "never-started")  # a created container is deleted (its init killed) without --force
    runtime("delete", "--force", "forced")
    for pid in (created, running):
        runtime.wait(pid)
    for cid in ("never-started", "forced"):
        assert runtime("state", cid, check=False).returncode != 0


def test_kill_by_signal_number_reaches_a_handler(runtime: Any, make_bundle: Callable[..., Path]) -> None:
    script = "trap 'echo got TERM; exit 3' TERM; echo ready; while true; do sleep 0.1; done"
    bundle = make_bundle(["sh", "-c", script])
    out = bundle / "k.out"
    with open(out, "w") as o:
        pid = runtime.create("k", bundle, stdout=o, stderr=o)
    runtime("start", "k")
    deadline = time.monotonic() + 10
    while "ready" not in out.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    runtime("kill", "k", "15")
    assert runtime.wait(pid) == 3
    assert "got TERM" in out.read_text()
    runtime("delete", "k")


def test_exec_joins_the_running_container(runtime: Any, make_bundle: Callable[..., Path]) -> None:
    bundle = make_bundle(["sleep", "600"], hostname="boxed", cwd="/tmp")
    with open(os.devnull, "w") as null:
        pid = runtime.create("ex", bundle, stdout=null, stderr=null)
    runtime("start", "ex")
    script = (
        "hostname; pwd; ls -d /proc/[0-9]* | wc -l; grep -E 'NoNewPrivs|Seccomp:' /proc/self/status; exit 3"
    )
    proc = runtime("exec", "--cwd", "/tmp", "ex", "sh", "-c", script, check=False)
    assert proc.returncode == 3, proc.stderr
    host, cwd, nprocs, nnp, sec = proc.stdout.split("\n")[:5]
    assert (host, cwd) == ("boxed", "/tmp")
    assert int(nprocs) <= 5  # the init, sh, ls, wc: the container's PID namespace
    if runtime.name != "crun":  # crun 1.8 builds an exec process without the config's NNP and seccomp
        assert nnp.split() == ["NoNewPrivs:", "1"] and sec.split() == ["Seccomp:", "2"]
    proc = runtime("exec", "--user", "65534:65534", "ex", "id", "-u", check=False)
    assert (proc.returncode, proc.stdout) == (0, "65534\n")
    runtime("delete", "--force", "ex")
    assert runtime.wait(pid) == 137
