"""Micro-VM start-up and memory against the hypervisor's own floor.

`run --isolation=vm --rm busybox true` vs the bare QEMU command line that boots the same kernel with the
same kind of rootfs (virtiofs from a busybox tree, served by virtiofsd) through a minimal init that loads
the same modules, mounts it, runs `true` chrooted and powers off: the limit for this hypervisor, so the
ratio is the engine's overhead (without a network: the floor has no NIC; then with the default bridge
network, whose NIC the guest has to set up). Then `run --rm busybox true` as a container, for scale. Then the memory of
an idle detached VM (RSS and PSS of QEMU, virtiofsd, the shim and conmon) against its guest RAM.
Medians of BENCH_VM_RUNS (default 5: boots are slow, TCG on machines without a usable KVM).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from intermodal.isolation.microvm import initramfs, kernel, qemu
from intermodal.isolation.microvm.shim import VIRTIOFSD

RUNS = int(os.environ.get("BENCH_VM_RUNS", "5"))
INTERMODAL = str(Path(sys.executable).with_name("intermodal"))
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "INTERMODAL_ROOT")}
BARE_INIT = """#!/bin/sh
for m in /lib/modules/*.ko; do insmod "$m"; done
set -- /lib/modules/net/*.ko
if [ -e "$1" ]; then
    for m in "$@"; do insmod "$m"; done
    mount -t sysfs sysfs /sys
    until [ -e /sys/class/net/eth0 ]; do sleep 0.01; done
    # up through sysfs and the address and route through ip, as the agent does (agent.py: net_setup)
    read -r flags < /sys/class/net/eth0/flags && echo $((flags | 1)) > /sys/class/net/eth0/flags &&
        ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2 || poweroff -f
fi
mount -t virtiofs rootfs /newroot && chroot /newroot /bin/true && echo floor-ok
poweroff -f
"""
# The init's word that it ran `true` from the rootfs: a floor whose `true` failed would be too fast.
FLOOR_OK = "floor-ok"
# The tap the floor's NIC needs, in a network namespace of its own that dies with QEMU.
TAP_NETNS = [
    "unshare",
    "-n",
    "sh",
    "-c",
    'ip tuntap add dev tap0 mode tap && ip link set tap0 up && exec "$@"',
    "sh",
]


def interleaved(cases: list[Callable[[], object]]) -> list[list[tuple[float, float]]]:
    """(wall, CPU of all children) per run; the cases take turns so a change in the machine's load (a shared
    machine) hits them alike. CPU time is the load-independent figure."""
    out: list[list[tuple[float, float]]] = [[] for _ in cases]
    for _ in range(RUNS):
        for i, fn in enumerate(cases):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            fn()
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            out[i].append((wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime))
    return out


def bare_qemu(guest: kernel.Kernel, accel: str, work: Path, nic: bool = False) -> Callable[[], None]:
    """QEMU + virtiofsd with the engine's kernel command line and devices, but none of the engine; `nic`:
    also the virtio-net NIC on a tap, its modules and the address and route the guest of a bridged
    container gets (the floor for `run` with a network)."""
    name = "bare-nic" if nic else "bare"
    rootfs = work / f"{name}-rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy(initramfs.BUSYBOX, rootfs / "bin" / "busybox")
    (rootfs / "bin" / "true").symlink_to("busybox")  # relative: the guest's path, not this host's
    archive = initramfs.Archive()
    for d in ("bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules", "lib/modules/net"):
        archive.directory(d)
    archive.file("bin/busybox", Path(initramfs.BUSYBOX).read_bytes(), 0o755)
    for applet in ("sh", "insmod", "mount", "chroot", "poweroff", "ip", "[", "sleep", "echo"):
        archive.symlink(f"bin/{applet}", "busybox")
    for i, module in enumerate(guest.modules):  # the network modules after the rest, as the agent loads them
        archive.file(f"lib/modules/{i:02d}-{module.name}", module.read_bytes())
    for i, module in enumerate(guest.net_modules if nic else ()):
        archive.file(f"lib/modules/net/{i:02d}-{module.name}", module.read_bytes())
    archive.file("init", BARE_INIT.encode(), 0o755)
    initrd = work / f"{name}.cpio"
    initrd.write_bytes(archive.finish())
    console = work / f"{name}.console"  # the engine's VMs log their console to a file too
    socket_path = work / f"{name}.sock"  # removed with `work` (a mkdtemp of its own here was never removed)

    def run() -> None:
        daemon = subprocess.Popen([VIRTIOFSD, f"--socket-path={socket_path}", "-o", f"source={rootfs}",
                                   "-o", "cache=auto", "--rlimit-nofile=0"], stderr=subprocess.DEVNULL)  # fmt: skip
        while not socket_path.exists():
            time.sleep(0.001)
        console.write_bytes(b"")
        machine = qemu.Machine(kernel=guest.vmlinux, initrd=initrd, accel=accel, console_log=console,
                               nic_mac="02:42:0a:00:02:0f" if nic else "")  # fmt: skip
        argv = (TAP_NETNS if nic else []) + machine.argv() + [
            "-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-machine", "memory-backend=mem",
            "-global", "virtio-mmio.force-legacy=false", "-chardev", f"socket,id=fs,path={socket_path}",
            "-device", "vhost-user-fs-device,chardev=fs,tag=rootfs",
        ]  # fmt: skip
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        daemon.wait(5)
        if FLOOR_OK not in console.read_text(errors="replace"):
            raise RuntimeError(
                f"the {name} floor's guest did not run `true`; its console: {console.read_text()!r}"
            )

    return run


def engine_run(root: Path, *flags: str) -> Callable[[], None]:
    def run() -> None:
        subprocess.run([INTERMODAL, "--root", str(root), "run", "--rm", *flags, "busybox", "true"],
                       check=True, env=ENV, stdout=subprocess.DEVNULL)  # fmt: skip

    return run


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB from smaps_rollup."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0])
    return fields["Rss"], fields["Pss"]


def idle_memory(root: Path) -> list[tuple[str, int, int]]:
    cid = subprocess.run([INTERMODAL, "--root", str(root), "run", "-d", "--network", "none", "--isolation=vm",
                          "busybox", "sh", "-c", "echo ready; sleep 1000"],
                         check=True, env=ENV, capture_output=True, text=True).stdout.strip()  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "ready" not in subprocess.run([INTERMODAL, "--root", str(root), "logs", cid], env=ENV,
                                            capture_output=True, text=True).stdout:  # fmt: skip
            if time.monotonic() > deadline:
                raise RuntimeError("the VM did not start within 120 s")
            time.sleep(0.2)
        time.sleep(2)  # let the guest settle
        state = root / "run" / "vm" / cid
        pids = json.loads((state / "pids.json").read_text())
        shim = json.loads((state / "state.json").read_text())["pid"]
        conmon = int((root / "containers" / cid / "conmon.pid").read_text())
        procs = [("qemu", pids["qemu"]), *((f"virtiofsd {i}", p) for i, p in enumerate(_with_children(pids["helpers"]))),
                 ("shim", shim), ("conmon", conmon)]  # fmt: skip
        return [(name, *memory_kib(pid)) for name, pid in procs]
    finally:
        subprocess.run([INTERMODAL, "--root", str(root), "rm", "-f", cid], env=ENV, capture_output=True)


def _with_children(pids: list[int]) -> list[int]:
    """virtiofsd forks its sandboxed worker: count both."""
    out = []
    for pid in pids:
        out.append(pid)
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            out += [int(c) for c in children]
    return out


def main() -> None:
    if not shutil.which(qemu.BINARY):
        print(f"\nvm: skipped: {qemu.BINARY} is not installed")
        return
    with tempfile.TemporaryDirectory(prefix="bench-vm-") as tmp:
        work = Path(tmp)
        root = work / "root"
        assets = kernel.download_cache() / "bench-assets"
        assets.mkdir(parents=True, exist_ok=True)
        ENV["INTERMODAL_VM_DIR"] = str(assets)
        subprocess.run([INTERMODAL, "--root", str(root), "image", "bootstrap", "busybox"], check=True, env=ENV,
                       capture_output=True)  # fmt: skip
        guest = kernel.resolve(assets)
        engine_run(
            root, "--isolation=vm"
        )()  # warm-up: unpacks nothing twice, settles the accelerator verdict
        accel = next(iter(assets.glob("accel-*.json")), None)
        accel_name = json.loads(accel.read_text())["accel"] if accel else "tcg"
        labels = ["bare QEMU + virtiofsd (the floor)", "run --isolation=vm --rm, --network none",
                  "bare QEMU + virtiofsd + NIC (floor, network)", "run --isolation=vm --rm (bridge network)",
                  "run --rm (container), --network none", "run --rm (container, bridge network)"]  # fmt: skip
        none = ("--network", "none")
        try:
            results = interleaved([bare_qemu(guest, accel_name, work), engine_run(root, *none, "--isolation=vm"),
                                   bare_qemu(guest, accel_name, work, nic=True), engine_run(root, "--isolation=vm"),
                                   engine_run(root, *none), engine_run(root)])  # fmt: skip
            memory = idle_memory(root)
        finally:  # the root's bridge and nftables table stay up until this
            subprocess.run(
                [INTERMODAL, "--root", str(root), "system", "reset", "--force"], check=True, env=ENV
            )
    floors = {i: [statistics.median(s[k] for s in results[i]) for k in (0, 1)] for i in (0, 2)}
    print(f"\nvm: `busybox true`, {accel_name.upper()}, kernel {guest.release}, medians of {RUNS} (min-max);"
          " ratios to the floor above each VM case (the containers': to the floor without a NIC); paired: the"
          " median of each round's ratio to the floor run just before it, which a slow spell of the host"
          " affects less")  # fmt: skip
    print(f"{'case':42} {'wall s':>18} {'ratio':>6} {'paired':>6}   {'CPU s':>5} {'ratio':>6}")
    for i, (label, samples) in enumerate(zip(labels, results, strict=True)):
        f = 2 if i in (2, 3) else 0
        floor = floors[f]
        wall = [s[0] for s in samples]
        cpu = statistics.median(s[1] for s in samples)
        med = statistics.median(wall)
        paired = statistics.median(s[0] / r[0] for s, r in zip(samples, results[f], strict=True))
        print(f"{label:42} {med:5.2f} ({min(wall):.2f}-{max(wall):.2f}) {med / floor[0]:5.2f}x {paired:5.2f}x"
              f"   {cpu:5.2f} {cpu / floor[1]:5.2f}x")  # fmt: skip
    print(f"\nvm: idle detached VM, guest RAM {qemu.DEFAULT_MEMORY_MIB} MiB")
    print(f"{'process':16} {'RSS MiB':>9} {'PSS MiB':>9}")
    for name, rss, pss in memory:
        print(f"{name:16} {rss / 1024:9.1f} {pss / 1024:9.1f}")
    total_rss, total_pss = sum(m[1] for m in memory), sum(m[2] for m in memory)
    print(f"{'total':16} {total_rss / 1024:9.1f} {total_pss / 1024:9.1f}"
          f"   ({total_pss / 1024 / qemu.DEFAULT_MEMORY_MIB:.2f}x guest RAM by PSS)")  # fmt: skip
