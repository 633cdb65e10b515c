"""`run --isolation=vm` in the foreground: the guest's own kernel, what of the host it can reach, the OCI
process spec (env, cwd, user), volumes, streams, exit codes, guest RAM, and faults. Real QEMU (TCG here)."""

# ruff: noqa: F811 - test arguments name the fixtures imported from vm_fixtures
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from engine_cli import INTERMODAL, Engine, on_terminal, resized_on_terminal
from vm_fixtures import leftovers, vm, vm_assets  # noqa: F401 - fixtures

from intermodal.isolation.microvm.kernel import Kernel

pytestmark = [pytest.mark.vm, pytest.mark.slow]


def test_guest_kernel_isolation_process_spec_and_volume(
    vm: Engine, vm_assets: Kernel, tmp_path: Path
) -> None:
    secret = tmp_path / "host-only.txt"
    secret.write_text("secret")
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)
    (data / "in.txt").write_text("from-host")
    script = (
        'uname -r; echo "env=$FOO"; pwd; id -u; cat /data/in.txt; echo; echo from-guest > /data/out.txt; '
        f"cat {secret} 2>/dev/null || echo no-host-path; ls /dev; echo to-stderr >&2; exit 3"
    )
    proc = vm("run", "--rm", "--isolation=vm", "--init", "-e", "FOO=bar", "-w", "/work", "-u", "1000:1000",
              "-v", f"{data}:/data", "busybox", "sh", "-c", script, check=False)  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == vm_assets.release != os.uname().release
    assert lines[1:6] == ["env=bar", "/work", "1000", "from-host", "no-host-path"]
    # nothing of the host's /dev: the OCI default devices, pts, shm, mqueue and the /proc/self/fd links
    assert set(lines[6:]) <= {"null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm",
                              "mqueue", "fd", "stdin", "stdout", "stderr"}  # fmt: skip
    assert "to-stderr" in proc.stderr and "to-stderr" not in proc.stdout
    # --init's tini is not the guest's PID 1 (the agent is): it must still reap, as a subreaper, and not warn
    assert "Tini is not running as PID 1" not in proc.stderr
    assert (data / "out.txt").read_text() == "from-guest\n"
    assert (data / "out.txt").stat().st_uid == 1000


def test_memory_is_guest_ram_and_read_only_volumes_and_files_hold_against_the_guests_root(
    vm: Engine, tmp_path: Path
) -> None:
    """The guest's root may remount its virtiofs shares read-write: the host must refuse the writes anyway,
    to a `--read-only` rootfs too, whose /etc/hosts stays writable as Docker's does. A single-file bind is the
    host's file, as with Docker: a write to a read-write one reaches the host (one boot for all the checks:
    boots are slow under TCG)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "keep.txt").write_text("host")
    conf, ro_conf = tmp_path / "app.conf", tmp_path / "ro.conf"
    conf.write_text("host-conf\n")
    ro_conf.write_text("host-ro\n")
    script = (
        "grep MemTotal /proc/meminfo; echo x > /ro/keep.txt || echo refused; mount -o remount,rw /ro; "
        "echo guest > /ro/keep.txt; echo guest > /ro/new.txt; cat /ro/keep.txt; echo; "
        "cat /etc/app.conf; echo guest-conf > /etc/app.conf; "
        "echo x > /etc/ro.conf || echo refused-file; mount -o remount,rw /etc/ro.conf; "
        "echo guest > /etc/ro.conf; cat /etc/ro.conf; mount -o remount,rw /; touch /new || echo refused-root; "
        "echo '10.9.8.7 extra' >> /etc/hosts && tail -n 1 /etc/hosts"
    )
    proc = vm("run", "--rm", "--isolation=vm", "--read-only", "--memory", "192m", "-v", f"{ro}:/ro:ro",
              "-v", f"{conf}:/etc/app.conf", "-v", f"{ro_conf}:/etc/ro.conf:ro", "busybox",
              "sh", "-c", script, check=False)  # fmt: skip
    total_kib = int(proc.stdout.split()[1])
    assert 150 * 1024 < total_kib <= 192 * 1024
    expected = ["refused", "host", "host-conf", "refused-file", "host-ro", "refused-root", "10.9.8.7 extra"]
    assert proc.stdout.splitlines()[1:] == expected, proc.stderr
    assert "Read-only file system" in proc.stderr
    assert sorted(p.name for p in ro.iterdir()) == ["keep.txt"] and (ro / "keep.txt").read_text() == "host"
    assert conf.read_text() == "guest-conf\n" and ro_conf.read_text() == "host-ro\n"


@pytest.mark.parametrize("isolation", ["default", "vm"])
def test_a_terminal_starts_with_the_clients_size(vm: Engine, isolation: str) -> None:
    """`-t`: the container's terminal has the client's rows and columns from the start (Docker's ConsoleSize),
    in a container and in a micro-VM, whose terminal is a console of the guest's that the agent sizes."""
    run = ["run", "--rm", "-t", f"--isolation={isolation}", "--network", "none", "busybox", "stty", "size"]
    assert on_terminal(vm, (33, 101), *run).split() == [b"33", b"101"]


@pytest.mark.parametrize("isolation", ["default", "vm"])
def test_a_terminal_follows_the_clients_resizes(vm: Engine, isolation: str) -> None:
    """`run -it`: when the client's terminal is resized, so is the container's (SIGWINCH reaches the shell),
    in a container and in a micro-VM (the shim tells the agent, which sizes the guest's console)."""
    run = ["run", "--rm", "-it", f"--isolation={isolation}", "--network", "none", "busybox"]
    assert b"50 132" in resized_on_terminal(vm, *run)


def test_command_not_found_is_127_and_the_images_own_program_runs(vm: Engine, tmp_path: Path) -> None:
    proc = vm("run", "--rm", "--isolation=vm", "busybox", "no-such-command", check=False)
    assert proc.returncode == 127
    assert "no-such-command" in proc.stderr
    # the guest agent is busybox too: a bare `true` must still run the image's /usr/local/bin/true
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nRUN mkdir -p /usr/local/bin && printf '#!/bin/sh\\necho image-true\\n' > /usr/local/bin/true && chmod +x /usr/local/bin/true\n"
    )
    vm("build", "-q", "-t", "own-true", str(tmp_path))
    assert vm("run", "--rm", "own-true", "true").stdout == "image-true\n", "as a container"
    assert vm("run", "--rm", "--isolation=vm", "own-true", "true").stdout == "image-true\n", "as a micro-VM"


def test_an_images_symlinks_cannot_send_the_hosts_file_binds_out_of_its_rootfs(
    vm: Engine, tmp_path: Path
) -> None:
    """The host binds /etc/hosts and `-v FILE:PATH` into the guest's rootfs share: a symlink in the image at
    the mount point (absolute, or climbing with ..) is resolved inside the rootfs, never on the host."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(
        f"FROM busybox\nRUN ln -sf {outside}/hosts /etc/hosts && ln -sf {outside}/conf /etc/app.conf && "
        f"ln -sf ../../../..{outside}/conf2 /etc/app2.conf\n"
    )
    vm("build", "-q", "-t", "links", str(tmp_path / "ctx"))
    conf = tmp_path / "app.conf"
    conf.write_text("from-host\n")
    proc = vm("run", "--rm", "--isolation=vm", "--network", "none", "-v", f"{conf}:/etc/app.conf",
              "-v", f"{conf}:/etc/app2.conf", "links", "sh", "-c",
              f"grep -q localhost /etc/hosts && echo hosts; cat /etc/app.conf /etc/app2.conf {outside}/conf*")  # fmt: skip
    # /etc/hosts: the engine's (its init layer replaces the link); the confs: bound where the links lead inside
    assert proc.stdout.splitlines() == ["hosts", *["from-host"] * 4], proc.stderr
    assert list(outside.iterdir()) == []  # nothing made, nothing mounted on the host's side


def test_the_guests_oom_killer_shows_as_oomkilled(vm: Engine) -> None:
    """Past its --memory, a VM's process is killed by the guest's kernel, not the host's cgroup: Exited (137)
    with OOMKilled, as a container's."""
    hog = vm("run", "--name", "hog", "--isolation=vm", "--network", "none", "--memory", "96m", "busybox", "sh",
             "-c", 'x=a; while true; do x="$x$x"; done', check=False)  # fmt: skip
    assert hog.returncode == 137
    assert vm("inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}", "hog").stdout.split() == [
        "true",
        "137",
    ]
    vm("rm", "hog")


def test_guest_kernel_panic_ends_the_container_with_a_reason(vm: Engine) -> None:
    proc = vm("run", "--name", "p", "--isolation=vm", "busybox", "sh", "-c", "echo c > /proc/sysrq-trigger",
              check=False)  # fmt: skip
    assert proc.returncode == 255
    assert "guest kernel panicked" in proc.stderr
    assert vm("ps", "-a", "--format", "{{.Status}}").stdout.startswith("Exited (255)")
    vm("rm", "p")


def test_bad_input_fails_before_booting(vm: Engine, tmp_path: Path) -> None:
    small = vm("run", "--rm", "--isolation=vm", "--memory", "32m", "busybox", "true", check=False)
    assert small.returncode == 125 and "at least 64m" in small.stderr
    # a VM's one NIC mirrors its first network's interface: a second network would never reach the guest
    vm("network", "create", "second")
    vm("create", "--name", "one-nic", "--isolation=vm", "busybox", "true")
    joined = vm("network", "connect", "second", "one-nic", check=False)
    assert joined.returncode == 125 and "has one network interface, on bridge" in joined.stderr
    assert "second" not in vm("inspect", "-f", "{{json .NetworkSettings.Networks}}", "one-nic").stdout
    vm("rm", "one-nic")
    vm("network", "rm", "second")
    not_a_kernel = tmp_path / "vmlinux"
    not_a_kernel.write_bytes(b"not a kernel")
    bad = vm(
        "run", "--rm", "--isolation=vm", "--vm-kernel", str(not_a_kernel), "busybox", "true", check=False
    )
    assert bad.returncode == 125 and "not a kernel image" in bad.stderr
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # no qemu-system-x86_64 on PATH
    argv = [
        INTERMODAL,
        "--root",
        str(vm.root),
        "run",
        "--rm",
        "--network",
        "none",
        "--isolation=vm",
        "busybox",
        "true",
    ]
    no_qemu = subprocess.run(argv,
                             capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert no_qemu.returncode == 125
    assert "qemu-system-x86_64 not found" in no_qemu.stderr and len(no_qemu.stderr.strip().splitlines()) == 1
    assert leftovers(vm.root) == []
