"""The seccomp compiler, checked by running its BPF in a small classic-BPF interpreter."""

from __future__ import annotations

import errno
import struct
from typing import Any

import pytest

from intermodal.errors import InvalidArgument
from intermodal.runtime import seccomp
from intermodal.runtime.syscalls_x86_64 import NUMBERS

ALLOW, KILL = seccomp.RET_ALLOW, seccomp.RET_KILL_PROCESS


def eperm(code: int = errno.EPERM) -> int:
    return seccomp.RET_ERRNO | code


def run_bpf(
    program: bytes, nr: int | str, args: tuple[int, ...] = (), arch: int = seccomp.AUDIT_ARCH_X86_64
) -> int:
    """Evaluate a seccomp filter on one struct seccomp_data (only the opcodes the compiler emits)."""
    nr = NUMBERS[nr] if isinstance(nr, str) else nr
    full = (list(args) + [0] * 6)[:6]
    data = struct.pack("<iIQ6Q", nr, arch, 0, *full)
    insns = [struct.unpack_from("<HBBI", program, i) for i in range(0, len(program), 8)]
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:  # ld [k]
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == 0x54:  # and #k
            acc &= k
        elif code in (0x15, 0x25, 0x35):  # jeq / jgt / jge #k
            hit = {0x15: acc == k, 0x25: acc > k, 0x35: acc >= k}[code]
            pc += jt if hit else jf
        elif code == 0x06:  # ret #k
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


@pytest.fixture(scope="module")
def default() -> bytes:
    return seccomp.compile_bpf(seccomp.default_profile())


@pytest.mark.parametrize("name", ["mount", "umount2", "pivot_root", "init_module", "finit_module", "kexec_load",
                                  "reboot", "bpf", "keyctl", "unshare", "setns", "open_by_handle_at",
                                  "userfaultfd", "clock_settime", "mount_setattr", "fsopen", "open_tree"])  # fmt: skip
def test_default_profile_denies_with_eperm(default: bytes, name: str) -> None:
    assert run_bpf(default, name) == eperm()


@pytest.mark.parametrize(
    "name", ["read", "write", "execve", "openat", "ptrace", "chroot", "sethostname", "exit"]
)
def test_default_profile_allows_ordinary_calls(default: bytes, name: str) -> None:
    assert run_bpf(default, name) == ALLOW


def test_clone_may_not_create_namespaces(default: bytes) -> None:
    sigchld, clone_thread = 17, 0x00010000 | 0x00000100 | 0x00000800
    assert run_bpf(default, "clone", (sigchld,)) == ALLOW
    assert run_bpf(default, "clone", (clone_thread,)) == ALLOW
    for flag in seccomp.CLONE_NAMESPACE_FLAGS:
        assert run_bpf(default, "clone", (sigchld | flag,)) == eperm()
    assert run_bpf(default, "clone3") == eperm(errno.ENOSYS)


def test_wrong_arch_is_killed_and_x32_refused(default: bytes) -> None:
    assert run_bpf(default, "read", arch=0x40000003) == KILL  # AUDIT_ARCH_I386
    assert run_bpf(default, seccomp.X32_SYSCALL_BIT | NUMBERS["mount"]) == eperm()


def _profile(op: str, value: int, value_two: int = 0) -> bytes:
    rule: dict[str, Any] = {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                            "args": [{"index": 1, "value": value, "valueTwo": value_two, "op": op}]}  # fmt: skip
    return seccomp.compile_bpf({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [rule]})


BIG = 0x1_0000_0005


@pytest.mark.parametrize(
    ("op", "value", "allowed", "denied"),
    [
        ("SCMP_CMP_EQ", BIG, [BIG], [5, BIG + 1, 0x2_0000_0005]),
        ("SCMP_CMP_NE", BIG, [5, BIG + 1, 0x2_0000_0005], [BIG]),
        ("SCMP_CMP_GT", BIG, [BIG + 1, 0x2_0000_0000], [BIG, 5, 0x1_0000_0000]),
        ("SCMP_CMP_GE", BIG, [BIG, BIG + 1, 0x2_0000_0000], [BIG - 1, 5]),
        ("SCMP_CMP_LT", BIG, [BIG - 1, 5, 0], [BIG, 0x2_0000_0000]),
        ("SCMP_CMP_LE", BIG, [BIG, 5], [BIG + 1, 0x2_0000_0000]),
    ],
)
def test_64_bit_argument_comparisons(op: str, value: int, allowed: list[int], denied: list[int]) -> None:
    program = _profile(op, value)
    for arg in allowed:
        assert run_bpf(program, "personality", (0, arg)) == ALLOW, (op, hex(arg))
    for arg in denied:
        assert run_bpf(program, "personality", (0, arg)) == eperm(), (op, hex(arg))


def test_masked_eq_and_other_syscalls_fall_to_default() -> None:
    program = _profile("SCMP_CMP_MASKED_EQ", 0xFFFF_0000_0000_00FF, 0x0000_0000_0000_0008)
    assert run_bpf(program, "personality", (0, 0x0000_1234_5678_9A08)) == ALLOW
    assert run_bpf(program, "personality", (0, 0x0001_0000_0000_0008)) == eperm()
    assert run_bpf(program, "read") == eperm()


def test_errno_ret_actions_and_unknown_names() -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpid", "no_such_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
        {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"},
    ]}  # fmt: skip
    program = seccomp.compile_bpf(profile)
    assert run_bpf(program, "getpid") == eperm(errno.ENOSYS)
    assert run_bpf(program, "getppid") == KILL
    with pytest.raises(InvalidArgument):
        seccomp.compile_bpf({"defaultAction": "SCMP_ACT_NOTIFY"})


def test_docker_profile_translation_honours_includes_and_excludes() -> None:
    docker = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
            {"names": ["kcmp"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
            {"names": ["s390_pci_mmio_read"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390x"]}},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]},
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        ],
    }  # fmt: skip
    oci = seccomp.from_docker_profile(docker, kernel="6.1.0")
    names = [n for rule in oci["syscalls"] for n in rule["names"]]
    assert names == ["read", "write", "ptrace", "arch_prctl", "clone"]
    assert oci["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert oci["defaultErrnoRet"] == 1
    with_admin = seccomp.from_docker_profile(docker, caps=["CAP_SYS_ADMIN"], kernel="6.1.0")
    assert [n for rule in with_admin["syscalls"] for n in rule["names"]][2] == "mount"
    program = seccomp.compile_bpf(oci)
    assert run_bpf(program, "clone", (17,)) == ALLOW
    assert run_bpf(program, "clone", (17 | 0x20000000,)) == eperm()
