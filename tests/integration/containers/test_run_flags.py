"""Docker's `run` flags beyond the lifecycle: ulimits, devices, /dev/shm size, sysctls, host namespaces,
extra groups, OOM settings, CPU quota, --cidfile, --expose and --label-file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from engine_cli import Engine

RUNTIMES = ["intermodal", "crun", "runc"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_ulimit_sets_the_containers_limits(engine: Engine, runtime: str) -> None:
    proc = engine("run", "--rm", "--runtime", runtime, "--ulimit", "nofile=1024:2048", "--ulimit", "nproc=500",
                  "busybox", "sh", "-c", "ulimit -Sn; ulimit -Hn; ulimit -Su; ulimit -Hu")  # fmt: skip
    assert proc.stdout.split() == ["1024", "2048", "500", "500"]


@pytest.mark.parametrize("flag", ["bogus=1", "nofile", "nofile=abc", "nofile=2048:1024"])
def test_bad_ulimit_is_refused(engine: Engine, flag: str) -> None:
    proc = engine("run", "--rm", "--ulimit", flag, "busybox", "true", check=False)
    assert proc.returncode == 125
    assert f"invalid --ulimit {flag!r}" in proc.stderr
    assert engine("ps", "-aq").stdout == ""


def _inspect(engine: Engine, name: str) -> dict:
    return json.loads(engine("inspect", name).stdout)[0]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_device_is_given_with_its_cgroup_permissions(engine: Engine, runtime: str) -> None:
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse on this host")
    st = os.stat("/dev/fuse")
    opened = "exec 3>/dev/f && echo opened; stat -c '%t:%T' /dev/f"
    rw = engine(
        "run", "--rm", "--runtime", runtime, "--device", "/dev/fuse:/dev/f:rw", "busybox", "sh", "-c", opened
    )
    assert rw.stdout.split() == ["opened", f"{os.major(st.st_rdev):x}:{os.minor(st.st_rdev):x}"]
    read_only = engine("run", "--rm", "--runtime", runtime, "--device", "/dev/fuse:/dev/f:r", "busybox", "sh", "-c",
                       opened, check=False)  # fmt: skip
    assert "opened" not in read_only.stdout
    assert "Operation not permitted" in read_only.stderr


@pytest.mark.parametrize(
    "flag", ["/dev/nonexistent", "/etc/passwd", "/dev/fuse:relative", "/dev/fuse:/dev/f:rwx"]
)
def test_bad_device_is_refused(engine: Engine, flag: str) -> None:
    proc = engine("run", "--rm", "--device", flag, "busybox", "true", check=False)
    assert proc.returncode == 125
    assert f"invalid --device {flag!r}" in proc.stderr


def test_shm_size_and_ipc_modes(engine: Engine) -> None:
    sized = engine("run", "--rm", "--shm-size", "16m", "busybox", "sh", "-c", "df -k /dev/shm | tail -1")
    assert sized.stdout.split()[1] == "16384"
    assert engine("run", "--rm", "--ipc", "none", "busybox", "ls", "/dev/shm", check=False).returncode != 0
    marker = f"/dev/shm/intermodal-test-{os.getpid()}"
    with open(marker, "w") as f:
        f.write("host")
    try:
        shared = engine("run", "--rm", "--ipc", "host", "busybox", "cat", marker)
        private = engine("run", "--rm", "busybox", "cat", marker, check=False)
    finally:
        os.unlink(marker)
    assert shared.stdout == "host"
    assert private.returncode != 0
    conflict = engine("run", "--rm", "--ipc", "host", "--shm-size", "1m", "busybox", "true", check=False)
    assert conflict.returncode == 125 and "--shm-size and --ipc host" in conflict.stderr


def test_sysctl_sets_namespaced_parameters_only(engine: Engine) -> None:
    proc = engine("run", "--rm", "--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "kernel.shmmax=123456", "busybox",
                  "cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/shmmax")  # fmt: skip
    assert proc.stdout.split() == ["1", "123456"]
    for flag, fragment in [
        ("kernel.hostname=x", "not a namespaced sysctl"),
        ("net.ipv4.ip_forward", "KEY=VALUE"),
    ]:
        bad = engine("run", "--rm", "--sysctl", flag, "busybox", "true", check=False)
        assert bad.returncode == 125 and fragment in bad.stderr
    host_net = engine("run", "--rm", "--network", "host", "--sysctl", "net.ipv4.ip_forward=1", "busybox", "true",
                      check=False)  # fmt: skip
    assert host_net.returncode == 125 and "--network host" in host_net.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_host_pid_and_uts_namespaces(engine: Engine, runtime: str) -> None:
    me = f"/proc/{os.getpid()}"
    host = engine("run", "--rm", "--runtime", runtime, "--pid", "host", "--uts", "host", "busybox", "sh", "-c",
                  f"test -d {me} && echo sees-host; hostname")  # fmt: skip
    assert host.stdout.split() == ["sees-host", os.uname().nodename]
    own = engine(
        "run", "--rm", "--runtime", runtime, "busybox", "sh", "-c", f"test -d {me} || echo own; hostname"
    )
    assert own.stdout.split()[0] == "own" and own.stdout.split()[1] != os.uname().nodename
    conflict = engine("run", "--rm", "--uts", "host", "-h", "x", "busybox", "true", check=False)
    assert conflict.returncode == 125 and "--hostname and --uts host" in conflict.stderr


def test_group_add_by_gid_and_by_name(engine: Engine) -> None:
    groups = engine(
        "run", "--rm", "--group-add", "42", "--group-add", "daemon", "busybox", "id", "-G"
    ).stdout.split()
    assert sorted(groups, key=int) == ["0", "1", "42"]
    unknown = engine("run", "--rm", "--group-add", "nosuchgroup", "busybox", "true", check=False)
    assert unknown.returncode == 125 and "unable to find group nosuchgroup" in unknown.stderr


def test_oom_score_and_cgroup_limits(engine: Engine) -> None:
    assert (
        engine("run", "--rm", "--oom-score-adj", "500", "busybox", "cat", "/proc/self/oom_score_adj").stdout
        == "500\n"
    )
    cid = engine("run", "-d", "--memory", "64m", "--memory-reservation", "32m", "--oom-kill-disable",
                 "--cpu-quota", "50000", "--cpu-period", "100000", "busybox", "sleep", "60").stdout.strip()  # fmt: skip
    cgroup = Path("/sys/fs/cgroup")
    assert (cgroup / "memory/intermodal" / cid / "memory.soft_limit_in_bytes").read_text() == f"{32 << 20}\n"
    assert "oom_kill_disable 1" in (cgroup / "memory/intermodal" / cid / "memory.oom_control").read_text()
    assert (cgroup / "cpu/intermodal" / cid / "cpu.cfs_quota_us").read_text() == "50000\n"
    hc = _inspect(engine, cid)["HostConfig"]
    assert (hc["MemoryReservation"], hc["OomKillDisable"], hc["CpuQuota"], hc["CpuPeriod"]) == (
        32 << 20,
        True,
        50000,
        100000,
    )
    for flags, fragment in [(["--memory", "32m", "--memory-reservation", "64m"], "below --memory"),
                            (["--cpus", "1", "--cpu-quota", "50000"], "--cpus and --cpu-period/--cpu-quota"),
                            (["--oom-score-adj", "2000"], "-1000 to 1000")]:  # fmt: skip
        bad = engine("run", "--rm", *flags, "busybox", "true", check=False)
        assert bad.returncode == 125 and fragment in bad.stderr


def test_cidfile_is_written_once_and_removed_when_create_fails(engine: Engine, tmp_path: Path) -> None:
    cidfile = tmp_path / "cid"
    cid = engine("create", "--cidfile", str(cidfile), "busybox", "true").stdout.strip()
    assert cidfile.read_text() == cid
    again = engine("create", "--cidfile", str(cidfile), "busybox", "true", check=False)
    assert again.returncode == 125 and "container ID file found" in again.stderr
    assert engine("ps", "-aq", "--no-trunc").stdout.split() == [cid]
    failed = tmp_path / "failed"
    assert engine("create", "--cidfile", str(failed), "nosuchimage", "true", check=False).returncode == 125
    assert not failed.exists()


def test_expose_and_label_file_reach_the_config(engine: Engine, tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.write_text("# team labels\na=1\n\nb=2\n")
    cid = engine("run", "-d", "-P", "--expose", "8080", "--expose", "9000-9001/udp", "--label-file", str(labels),
                 "-l", "b=3", "busybox", "sleep", "60").stdout.strip()  # fmt: skip
    config = _inspect(engine, cid)["Config"]
    assert config["ExposedPorts"] == {"8080/tcp": {}, "9000/udp": {}, "9001/udp": {}}
    assert config["Labels"] == {"a": "1", "b": "3"}
    assert "8080/tcp -> 0.0.0.0:" in engine("port", cid).stdout  # -P publishes what --expose declared
    bad = engine("run", "--rm", "--expose", "http", "busybox", "true", check=False)
    assert bad.returncode == 125 and "invalid --expose 'http'" in bad.stderr


def test_platform_must_be_the_images(engine: Engine) -> None:
    assert engine("run", "--rm", "--platform", "linux/amd64", "busybox", "true").returncode == 0
    other = engine("run", "--rm", "--platform", "linux/arm64", "busybox", "true", check=False)
    assert other.returncode == 125 and "not the requested platform linux/arm64" in other.stderr


def test_host_level_flags_are_refused_for_a_micro_vm(engine: Engine) -> None:
    proc = engine("run", "--rm", "--isolation=vm", "--pid", "host", "--sysctl", "net.ipv4.ip_forward=1", "busybox",
                  "true", check=False)  # fmt: skip
    assert proc.returncode == 125
    assert "--pid, --sysctl cannot be used with --isolation=vm" in proc.stderr
    assert engine("ps", "-aq").stdout == ""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_pid_namespace_of_another_container(engine: Engine, runtime: str) -> None:
    engine("run", "-d", "--name", "app", "busybox", "sleep", "61")
    seen = engine(
        "run", "--rm", "--runtime", runtime, "--pid", "container:app", "busybox", "ps", "-o", "args"
    )
    assert "sleep 61" in seen.stdout
    assert "sleep 61" not in engine("run", "--rm", "busybox", "ps", "-o", "args").stdout
    engine("stop", "-t", "0", "app")
    stopped = engine("run", "--rm", "--pid", "container:app", "busybox", "true", check=False)
    assert stopped.returncode == 125 and "start it first" in stopped.stderr
    missing = engine("run", "--rm", "--pid", "container:nosuch", "busybox", "true", check=False)
    assert missing.returncode == 125 and "nosuch" in missing.stderr


def test_attach_flag_chooses_the_streams_shown_and_the_log_keeps_both(engine: Engine) -> None:
    script = "echo out; echo err >&2"
    only_out = engine("run", "--name", "a1", "-a", "stdout", "busybox", "sh", "-c", script)
    assert (only_out.stdout, only_out.stderr) == ("out\n", "")
    only_err = engine("run", "--rm", "-a", "STDERR", "busybox", "sh", "-c", script)
    assert (only_err.stdout, only_err.stderr) == ("", "err\n")
    logs = engine("logs", "a1")
    assert (logs.stdout, logs.stderr) == ("out\n", "err\n")
    detached = engine("run", "-d", "-a", "stdout", "busybox", "true", check=False)
    assert detached.returncode == 125 and "-a and -d" in detached.stderr


def test_log_driver_none_keeps_no_log(engine: Engine) -> None:
    shown = engine("run", "--name", "quiet", "--log-driver", "none", "busybox", "echo", "seen")
    assert shown.stdout == "seen\n"  # still shown in the foreground
    cid = engine(
        "run", "-d", "--log-driver", "none", "busybox", "sh", "-c", "echo kept-nowhere; sleep 30"
    ).stdout.strip()
    for name in ("quiet", cid):
        refused = engine("logs", name, check=False)
        assert refused.returncode == 125 and "--log-driver none" in refused.stderr
    assert engine("inspect", "-f", "{{.HostConfig.LogConfig.Type}}", "quiet").stdout.strip() == "none"
    assert (
        engine("run", "--rm", "--log-driver", "json-file", "busybox", "true").returncode == 0
    )  # Podman's alias
    bad = engine("run", "--rm", "--log-driver", "syslog", "busybox", "true", check=False)
    assert bad.returncode == 125 and "invalid --log-driver 'syslog'" in bad.stderr
