"""QEMU's command line for one micro-VM: `-M microvm` (no PCI, no firmware tables to speak of, virtio-mmio
devices only), the uncompressed vmlinux through its PVH entry, and nothing QEMU would add by default.

Every host-side socket is created by the shim and handed over as an fd (`-chardev socket,fd=N`): socket
paths under deep state directories overflow sun_path's 108 bytes, and QEMU never has to be waited for."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from intermodal.errors import IntermodalError, InvalidArgument
from intermodal.isolation.microvm import agent

BINARY = "qemu-system-x86_64"
DEFAULT_MEMORY_MIB = 256
MAX_PORTS = 31  # virtio-serial's default and limit per device
MIN_MEMORY_MIB = 64  # below this the cloud kernel cannot unpack the initramfs and start the agent


class NoQemu(IntermodalError):
    """QEMU is not installed."""


def binary() -> str:
    found = shutil.which(BINARY)
    if not found:
        raise NoQemu(f"{BINARY} not found: install Debian's qemu-system-x86 to use --isolation=vm")
    return found


def memory_mib(limit_bytes: int | None) -> int:
    """Guest RAM from the container's memory limit (`--memory`), in MiB."""
    if not limit_bytes or limit_bytes < 0:
        return DEFAULT_MEMORY_MIB
    mib = limit_bytes // (1 << 20)
    if mib < MIN_MEMORY_MIB:
        raise InvalidArgument(
            f"--memory {limit_bytes // (1 << 20)}m is too little for a VM: give at least {MIN_MEMORY_MIB}m"
        )
    return mib


def host_tsc_khz() -> int | None:
    """The host's TSC rate for `tsc_early_khz`: under TCG the guest's calibration hangs about 1 boot in 3."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return int(float(line.split(":")[1]) * 1000)
    except (OSError, ValueError):
        pass
    return None


# Skip what a micro-VM has no use for: crypto self-tests, PS/2 probing, 3 of 4 legacy UARTs, the audit
# subsystem; trust the TSC rather than have the clocksource watchdog (slow under TCG) judge it.
_FAST_BOOT = ("tsc=reliable", "cryptomgr.notests", "i8042.noaux", "i8042.nomux", "i8042.nopnp", "i8042.dumbkbd",
              "8250.nr_uarts=1", "audit=0")  # fmt: skip


@dataclass
class Machine:
    kernel: Path
    initrd: Path
    memory_mib: int = DEFAULT_MEMORY_MIB
    cpus: int = 1
    accel: str = "tcg"
    rootfs_image: Path | None = None  # ext4 on virtio-blk; else the rootfs is virtiofs share "rootfs"
    port_fds: dict[str, int] = field(default_factory=dict)  # port name → listening socket fd
    qmp_fd: int | None = None  # a connected socket for QMP (the shim hot-plugs exec ports through it)
    virtiofs_fds: dict[str, int] = field(default_factory=dict)  # tag → socket connected to its virtiofsd
    nic_mac: str = ""  # a virtio-net NIC on network.TAP (QEMU must run in the tap's network namespace)
    console_log: Path | None = None
    rdinit: str = "/init"
    init_args: tuple[str, ...] = ()  # after `--` on the kernel command line, the kernel passes them to init
    debug: bool = False  # kernel messages and the agent's trace (set -x) go to the console log

    def argv(self) -> list[str]:
        cmdline = ["console=ttyS0", "intermodal.debug" if self.debug else "quiet", "panic=-1",
                   f"rdinit={self.rdinit}", *_FAST_BOOT]  # fmt: skip
        if self.accel == "tcg":
            khz = host_tsc_khz()
            if khz:
                cmdline.append(f"tsc_early_khz={khz}")
        init_args = (*self.init_args, *(("debug",) if self.debug else ()))
        if init_args:
            cmdline += ["--", *init_args]
        argv = [
            binary(), "-M", "microvm,x-option-roms=off", "-nodefaults", "-no-user-config", "-nographic",
            "-no-reboot", "-accel", self.accel, *(["-cpu", "host"] if self.accel == "kvm" else []),
            "-m", f"{self.memory_mib}M", "-smp", str(self.cpus),
            "-kernel", str(self.kernel), "-initrd", str(self.initrd), "-append", " ".join(cmdline),
        ]  # fmt: skip
        if self.console_log:
            argv += ["-chardev", f"file,id=con,path={self.console_log}", "-serial", "chardev:con"]
        else:
            argv += ["-serial", "none"]
        if self.virtiofs_fds:
            # vhost-user needs guest RAM the daemon can map (docs/system/devices/vhost-user.rst).
            argv += [
                "-object", f"memory-backend-memfd,id=mem,size={self.memory_mib}M,share=on",
                "-machine", "memory-backend=mem", "-global", "virtio-mmio.force-legacy=false",
            ]  # fmt: skip
            for tag, fd in self.virtiofs_fds.items():
                argv += [
                    "-chardev", f"socket,id=fs-{tag},fd={fd}",
                    "-device", f"vhost-user-fs-device,chardev=fs-{tag},tag={tag}",
                ]  # fmt: skip
        if self.nic_mac:
            argv += ["-netdev", "tap,id=net0,ifname=tap0,script=no,downscript=no",
                     "-device", f"virtio-net-device,netdev=net0,mac={self.nic_mac}"]  # fmt: skip
        if self.rootfs_image:
            argv += [
                "-drive", f"id=root,file={self.rootfs_image},format=raw,if=none,cache=unsafe,discard=unmap",
                "-device", "virtio-blk-device,drive=root",
            ]  # fmt: skip
        if self.port_fds:
            argv += ["-device", f"virtio-serial-device,max_ports={MAX_PORTS}"]
        for name, fd in self.port_fds.items():  # at their fixed numbers, which name their guest devices
            argv += ["-chardev", f"socket,id=p-{name},fd={fd},server=on,wait=off",
                     "-device", f"{port_driver(name)},chardev=p-{name},name={name},nr={agent.port_nr(name)}"]  # fmt: skip
        if self.qmp_fd is not None:
            argv += ["-chardev", f"socket,id=qmp,fd={self.qmp_fd}", "-mon", "chardev=qmp,mode=control"]
        return argv

    def pass_fds(self) -> tuple[int, ...]:
        qmp = () if self.qmp_fd is None else (self.qmp_fd,)
        return (*self.port_fds.values(), *self.virtiofs_fds.values(), *qmp)


def port_driver(name: str) -> str:
    """`ttyK` ports are consoles (a tty in the guest); the rest are plain byte streams."""
    return "virtconsole" if name.startswith("tty") else "virtserialport"


def kvm_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)
