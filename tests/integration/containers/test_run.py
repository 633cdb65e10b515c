"""`run` in the foreground: output, exit codes, errors, and what the container can and cannot do."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_cli import Engine

RUNTIMES = ["intermodal", "crun", "runc"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_output_and_exit_code_pass_through(engine: Engine, runtime: str) -> None:
    proc = engine(
        "run",
        "--rm",
        "--runtime",
        runtime,
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")
    assert engine("ps", "-aq").stdout == ""  # --rm removed it


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_missing_command_is_127_and_not_executable_is_126(engine: Engine, runtime: str) -> None:
    assert engine("run", "--rm", "--runtime", runtime, "busybox", "nosuchcmd", check=False).returncode == 127
    assert (
        engine("run", "--rm", "--runtime", runtime, "busybox", "/etc/passwd", check=False).returncode == 126
    )


def test_unknown_image_is_a_one_line_engine_error(engine: Engine) -> None:
    proc = engine("run", "--rm", "nosuchimage", "true", check=False)
    assert proc.returncode == 125
    assert proc.stderr.strip().count("\n") == 0
    assert "nosuchimage" in proc.stderr


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--memory", "lots"], "invalid memory limit"),
        (["--memory", "1m"], "minimum allowed is 6MB"),
        (["--cpus", "99"], "range of CPUs"),
        (["--restart", "sometimes"], "invalid restart policy"),
        (["-v", "/nonexistent/dir:/data"], "does not exist"),
        (["--runtime", "nosuchruntime"], "unknown runtime"),
    ],
)
def test_bad_flags_fail_before_anything_is_created(engine: Engine, flags: list[str], fragment: str) -> None:
    proc = engine("run", "--rm", *flags, "busybox", "true", check=False)
    assert proc.returncode == 125
    assert fragment in proc.stderr
    assert engine("ps", "-aq").stdout == ""


def test_name_conflict(engine: Engine) -> None:
    engine("create", "--name", "web", "busybox", "true")
    proc = engine("create", "--name", "web", "busybox", "true", check=False)
    assert proc.returncode == 125
    assert "already in use" in proc.stderr


def test_environment_workdir_user_hostname(engine: Engine, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=yes\n")
    out = engine(
        "run", "--rm", "-e", "A=1", "--env-file", str(env_file), "-w", "/tmp", "-u", "nobody", "-h", "box",
        "busybox", "sh", "-c", 'echo $A $FROM_FILE $(pwd) $(id -u) $(hostname) $PATH',
    ).stdout.split()  # fmt: skip
    assert out[:5] == ["1", "yes", "/tmp", "65534", "box"]
    assert "/bin" in out[5]


def test_entrypoint_override_clears_image_cmd(engine: Engine) -> None:
    assert engine("run", "--rm", "--entrypoint", "echo", "busybox", "hi").stdout == "hi\n"


def test_isolation_from_the_host(engine: Engine) -> None:
    script = (
        "ps -o pid | wc -l; "  # header + sh + ps (+ wc): only the container's processes
        "mount -t tmpfs none /mnt 2>/dev/null && echo MOUNTED; "
        "echo 1 > /proc/sys/kernel/panic 2>/dev/null && echo WROTE; "
        "ls /proc/self/fd | wc -l; "
        "cat /proc/1/cmdline | tr '\\0' ' '"
    )
    lines = engine("run", "--rm", "busybox", "sh", "-c", script).stdout.splitlines()
    assert int(lines[0]) <= 5
    assert "MOUNTED" not in lines and "WROTE" not in lines
    assert int(lines[1]) <= 4  # 0, 1, 2 and the one `ls` opens
    assert lines[2].startswith("sh -c")


def test_memory_limit_oom_is_137(engine: Engine) -> None:
    proc = engine(
        "run", "--name", "oom", "--memory", "16m", "--memory-swap", "16m", "busybox",
        "sh", "-c", "head -c 200m /dev/zero | tail > /dev/null", check=False,
    )  # fmt: skip
    assert proc.returncode == 137


def test_pids_limit(engine: Engine) -> None:
    script = "for i in 1 2 3 4 5 6 7 8; do sleep 2 & done; wait"
    limited = engine("run", "--rm", "--pids-limit", "4", "busybox", "sh", "-c", script, check=False)
    free = engine("run", "--rm", "busybox", "sh", "-c", script)
    assert "can't fork" in limited.stderr
    assert "can't fork" not in free.stderr


def test_read_only_rootfs_and_tmpfs(engine: Engine) -> None:
    script = "touch /x 2>/dev/null && echo WROTE; touch /scratch/y && echo TMPFS"
    out = engine("run", "--rm", "--read-only", "--tmpfs", "/scratch", "busybox", "sh", "-c", script).stdout
    assert out.split() == ["TMPFS"]


def test_capabilities(engine: Engine) -> None:
    default = engine("run", "--rm", "busybox", "grep", "CapEff", "/proc/self/status").stdout.split()[1]
    dropped = engine(
        "run", "--rm", "--cap-drop", "ALL", "busybox", "grep", "CapEff", "/proc/self/status"
    ).stdout
    privileged = engine(
        "run", "--rm", "--privileged", "busybox", "grep", "CapEff", "/proc/self/status"
    ).stdout
    assert default == "00000000a80425fb"  # Docker's default set
    assert dropped.split()[1] == "0000000000000000"
    assert int(privileged.split()[1], 16) > int(default, 16)


def test_init_reaps_and_is_pid_one(engine: Engine) -> None:
    out = engine("run", "--rm", "--init", "busybox", "cat", "/proc/1/cmdline").stdout
    assert out.startswith("/sbin/docker-init")
