"""Which accelerator to use. /dev/kvm answering ioctls proves little: a paravirtual KVM (PVM) opens fine and
then cannot boot a stock kernel (see the machine notes). So `auto` boots the guest kernel once with KVM under
a deadline, straight into `poweroff -f`, and keeps the verdict per host kernel release; otherwise it falls
back to TCG and says so once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from intermodal.errors import InvalidArgument
from intermodal.fsutil import atomic_write_bytes, file_lock
from intermodal.isolation.microvm import qemu

ACCELS = ("auto", "kvm", "tcg")
DEADLINE_SECONDS = 5.0  # a real KVM boots this kernel to userspace in well under a second


def resolve(choice: str, data_dir: Path, kernel: Path, initrd: Path) -> str:
    if choice not in ACCELS:
        raise InvalidArgument(f"invalid --vm-accel {choice!r}: use kvm, tcg or auto")
    if choice != "auto":
        if choice == "kvm" and not qemu.kvm_usable():
            raise InvalidArgument("--vm-accel kvm: /dev/kvm is missing or not accessible; use tcg or auto")
        return choice
    cache = _verdict_file(data_dir)
    with file_lock(data_dir / "accel.lock"):
        try:
            return str(json.loads(cache.read_text())["accel"])
        except (OSError, ValueError, KeyError):
            pass
        verdict, why = ("kvm", "") if qemu.kvm_usable() else ("tcg", "/dev/kvm is not available")
        if verdict == "kvm":
            ok, why = boots(kernel, initrd)
            verdict = "kvm" if ok else "tcg"
        if verdict == "tcg":
            print(
                f"intermodal-vm-runtime: KVM is not usable on this host ({why}); VMs run under TCG "
                "emulation, which is much slower (this notice is shown once per host kernel)",
                file=sys.stderr,
            )
        atomic_write_bytes(cache, json.dumps({"accel": verdict, "reason": why}).encode())
        return verdict


def _verdict_file(data_dir: Path) -> Path:
    return data_dir / f"accel-{os.uname().release}.json"


def cached_verdict(data_dir: Path) -> dict[str, str] | None:
    """The accelerator `auto` chose on this host kernel ({"accel", "reason"}), None before the first VM."""
    try:
        return dict(json.loads(_verdict_file(data_dir).read_text()))
    except (OSError, ValueError):
        return None


def boots(kernel: Path, initrd: Path) -> tuple[bool, str]:
    """Boot with KVM into busybox's `poweroff -f` as init (the arguments after `--` go to init)."""
    machine = qemu.Machine(kernel=kernel, initrd=initrd, memory_mib=128, accel="kvm", rdinit="/bin/poweroff",
                           init_args=("-f",))  # fmt: skip
    argv = machine.argv()
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        return False, f"a test boot with KVM did not finish within {DEADLINE_SECONDS:.0f} s"
    except OSError as e:
        return False, str(e)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return False, f"a test boot with KVM failed: {last}"
    return True, ""
