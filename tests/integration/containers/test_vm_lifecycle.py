"""Detached micro-VMs under conmon: logs, exec, stop (the stop signal reaches the workload), rm, and QEMU
killed under the container's feet. Real QEMU (TCG here)."""

# ruff: noqa: F811 - test arguments name the fixtures imported from vm_fixtures
from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from engine_cli import Engine, on_terminal, resized_on_terminal
from vm_fixtures import leftovers, vm, vm_assets, vm_pids  # noqa: F401 - fixtures

pytestmark = [pytest.mark.vm, pytest.mark.slow]
BOOT_TIMEOUT = 60.0  # TCG on a busy 2-core machine


def wait_for_log(engine: Engine, name: str, text: str) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while text not in engine("logs", name).stdout:
        assert time.monotonic() < deadline, f"{name} never logged {text!r}"
        time.sleep(0.2)


def test_detached_logs_exec_cp_ports_names_stats_pause_restart_stop_rm(vm: Engine, tmp_path: Path) -> None:
    port = free_port()
    vm("network", "create", "vmnet")
    vm("run", "-d", "--name", "web", "--network", "vmnet", "busybox", "sh", "-c",
       "mkdir /www && echo from-container > /www/index.html && httpd -f -p 80 -h /www")  # fmt: skip
    vm("run", "-d", "--name", "app", "--network", "vmnet", "-p", f"{port}:80", "--isolation=vm", "busybox", "sh",
       "-c", "mkdir -p /www && echo from-vm > /www/index.html && httpd -p 80 -h /www && echo ready; "
       "trap 'echo bye; exit 7' TERM; while true; do sleep 0.1; done")  # fmt: skip
    # exec right after `run -d` waits for the guest to boot
    proc = vm("exec", "app", "sh", "-c", "echo out; echo err >&2; exit 4", check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (4, "out\n", "err\n")
    proc = vm(
        "exec", "-e", "A=1", "-w", "/tmp", "-u", "65534", "app", "sh", "-c", 'echo "$A $(pwd) $(id -u)"'
    )
    assert proc.stdout == "1 /tmp 65534\n"
    assert vm("exec", "app", "no-such-command", check=False).returncode == 127
    # the guest caches its rootfs (cache=always): what `cp` writes on the host is what it reads next
    conf = tmp_path / "app.conf"
    # with many inodes cached, each cp makes the guest send virtiofsd a burst of FORGETs
    vm("exec", "app", "find", "/bin", "/etc", "/usr")
    for content in ("first\n", "second, longer\n", "third\n"):
        conf.write_text(content)
        vm("cp", str(conf), "app:/etc/app.conf")
        assert vm("exec", "app", "cat", "/etc/app.conf").stdout == content
    # /etc/hosts is the engine's file, bound into the guest's rootfs share on the host: cp writes it in place
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n10.1.2.3 copied\n")
    vm("cp", str(tmp_path / "hosts"), "app:/etc/hosts")
    assert "10.1.2.3 copied" in vm("exec", "app", "cat", "/etc/hosts").stdout
    terminal = vm("exec", "-t", "app", "tty").stdout.strip()  # the guest's console port, named in /dev too
    assert terminal.startswith("/dev/hvc"), terminal
    assert on_terminal(vm, (21, 77), "exec", "-t", "app", "stty", "size").split() == [b"21", b"77"]
    assert b"50 132" in resized_on_terminal(vm, "exec", "-it", "app")
    wait_for_log(vm, "app", "ready")
    assert (
        vm("ps", "--filter", "name=app", "--format", "{{.Names}} {{.State}}").stdout.strip() == "app running"
    )
    # the VM takes the container's place on its network: published port, and names both ways
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as reply:
        assert reply.read() == b"from-vm\n"
    assert (
        vm("run", "--rm", "--network", "vmnet", "busybox", "wget", "-qO-", "http://app/").stdout
        == "from-vm\n"
    )
    assert vm("exec", "app", "wget", "-qO-", "http://web/").stdout == "from-container\n"
    # QEMU, virtiofsd and the shim are in the container's cgroup: stats and the freezer see the VM
    vm("exec", "app", "sh", "-c", "ping -c 5 -s 1000 $(ip route | awk '/default/ {print $3}') >/dev/null")
    row = json.loads(vm("stats", "--no-stream", "--format", "json", "app").stdout)
    assert row["Name"] == "app" and row["MemUsage"].endswith(" / 256MiB")  # the guest's RAM is its limit
    received, sent = row["NetIO"].split(" / ")  # QEMU's network namespace, not the shim's (the host's)
    assert (
        sent.endswith("kB")
        and float(sent[:-2]) >= 5
        and received.endswith("kB")
        and float(received[:-2]) >= 5
    )
    # top: the guest's processes (not QEMU's and the shim's), in ps -ef's columns
    titles, *rows = vm("top", "app").stdout.splitlines()
    assert titles.split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    commands = [row.split(None, 7)[7] for row in rows]
    assert "httpd -p 80 -h /www" in commands and not any("qemu" in c or "virtiofsd" in c for c in commands)
    assert all(row.split()[0] == "root" for row in rows)
    vm("pause", "app")
    assert "Paused" in vm("ps", "--filter", "name=app", "--format", "{{.Status}}").stdout
    vm("unpause", "app")
    assert vm("exec", "app", "echo", "thawed").stdout == "thawed\n"
    joined = vm("network", "connect", "bridge", "app", check=False)
    assert joined.returncode == 125 and "fixed at boot" in joined.stderr
    # restart: a new VM in the same place (the old one's exit command must leave the new one alone)
    vm("restart", "app")
    wait_for_log(vm, "app", "bye\nready")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as reply:
        assert reply.read() == b"from-vm\n"
    vm("stop", "app")
    assert vm("ps", "-a", "--filter", "name=app", "--format", "{{.Status}}").stdout.startswith("Exited (7)")
    assert "bye" in vm("logs", "app").stdout
    vm("rm", "-f", "app", "web")
    vm("network", "rm", "vmnet")
    assert vm("ps", "-aq").stdout == ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("victim", "reason"),
    [
        ("qemu", "QEMU process was killed by signal 9"),
        ("virtiofsd", "virtiofsd for its rootfs share was killed"),
    ],
)
def test_qemu_or_virtiofsd_killed_leaves_an_exited_container_and_nothing_else(
    vm: Engine, victim: str, reason: str
) -> None:
    """A dead virtiofsd would leave the guest's file system hanging: the VM is ended, with the reason."""
    cid = vm("run", "-d", "--name", "k", "--isolation=vm", "busybox", "sh", "-c",
             "echo ready; sleep 1000").stdout.strip()  # fmt: skip
    wait_for_log(vm, "k", "ready")
    pids = vm_pids(vm.root, cid)
    helpers = pids["helpers"]
    assert isinstance(helpers, list)
    os.kill(int(str(pids["qemu"])) if victim == "qemu" else int(helpers[0]), signal.SIGKILL)
    assert vm("wait", "k", timeout=30).stdout.strip() == "137"
    assert vm("ps", "-a", "--format", "{{.Status}}").stdout.startswith("Exited (137)")
    assert reason in vm("logs", "k").stderr
    info = json.loads(vm("inspect", "-f", "{{json .VM}}", "k").stdout)
    assert (
        info["Isolation"] == "vm" and info["Accelerator"] in ("kvm", "tcg") and reason in info["ExitReason"]
    )
    assert info["Kernel"] != os.uname().release and info["MemoryMiB"] == 256 and info["CPUs"] == 1
    assert (
        vm("inspect", "-f", "{{.State.OOMKilled}}", "k").stdout.strip() == "false"
    )  # killed, not for memory
    vm("rm", "k")
    assert leftovers(vm.root) == []
