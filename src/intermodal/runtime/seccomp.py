"""Seccomp: Docker's default policy, Docker-profile -> OCI translation, and an OCI -> classic-BPF compiler.

Pure (no libc): the container init hands `compile_bpf(...)` to `sys.seccomp_install`. Only x86_64 is
compiled; any other audit arch (i386 `int 0x80`) kills the process, and x32-ABI numbers (bit 30 set) fail
with EPERM so they cannot slip past a denylist under different numbers.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from intermodal.errors import InvalidArgument
from intermodal.runtime.capabilities import DOCKER_DEFAULT as DOCKER_DEFAULT_CAPS
from intermodal.runtime.syscalls_x86_64 import NUMBERS

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000

# Classic BPF opcodes (<linux/filter.h>).
_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ, _JGT, _JGE, _JA = 0x15, 0x25, 0x35, 0x05
_AND = 0x54  # BPF_ALU | BPF_AND | BPF_K
_RET = 0x06

# Offsets into struct seccomp_data.
_NR, _ARCH, _ARGS = 0, 4, 16

# Syscalls Docker's default profile refuses to a container without extra capabilities (moby
# profiles/seccomp/default.json: absent from the allowlist, or gated on CAP_SYS_ADMIN, CAP_SYS_MODULE,
# CAP_SYS_BOOT, CAP_SYS_TIME, CAP_SYS_PACCT, CAP_SYSLOG, CAP_SYS_RAWIO, CAP_DAC_READ_SEARCH, CAP_SYS_NICE).
DENIED = [
    "mount",
    "umount2",
    "pivot_root",
    "mount_setattr",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "bpf",
    "perf_event_open",
    "fanotify_init",
    "keyctl",
    "add_key",
    "request_key",
    "unshare",
    "setns",
    "open_by_handle_at",
    "name_to_handle_at",
    "userfaultfd",
    "lookup_dcookie",
    "iopl",
    "ioperm",
    "uselib",
    "nfsservctl",
    "_sysctl",
    "sysfs",
    "ustat",
    "vhangup",
    "mbind",
    "set_mempolicy",
    "move_pages",
]
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET (Docker's clone mask 0x7E020000).
CLONE_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)


def default_profile() -> dict[str, Any]:
    """Docker's default confinement as an OCI `linux.seccomp` denylist (default allow)."""
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            # One rule per flag (rules OR together, also under libseccomp's semantics in runc/crun): clone(2)
            # may not create namespaces, which Docker allows only with CAP_SYS_ADMIN.
            *(
                {
                    "names": ["clone"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": errno.EPERM,
                    "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
                }
                for flag in CLONE_NAMESPACE_FLAGS
            ),
            # ENOSYS makes glibc fall back to clone(2), whose flags we can inspect (clone3 passes a pointer).
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
            {"names": list(DENIED), "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
        ],
    }


def _action(name: str, errno_ret: int | None) -> int:
    # config-linux.md "Seccomp": errnoRet defaults to EPERM for SCMP_ACT_ERRNO and SCMP_ACT_TRACE.
    code = errno.EPERM if errno_ret is None else errno_ret
    actions = {
        "SCMP_ACT_KILL": RET_KILL_THREAD,
        "SCMP_ACT_KILL_THREAD": RET_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS": RET_KILL_PROCESS,
        "SCMP_ACT_TRAP": RET_TRAP,
        "SCMP_ACT_ERRNO": RET_ERRNO | (code & 0xFFFF),
        "SCMP_ACT_TRACE": RET_TRACE | (code & 0xFFFF),
        "SCMP_ACT_LOG": RET_LOG,
        "SCMP_ACT_ALLOW": RET_ALLOW,
    }
    if name not in actions:
        raise InvalidArgument(f"unsupported seccomp action {name!r}: use one of {', '.join(actions)}")
    return actions[name]


_Insn = tuple[int, int | str, int | str, int]  # code, jt, jf, k; jumps may be the labels "pass"/"fail"


def _compare(index: int, op: str, value: int, value_two: int) -> list[_Insn]:
    """64-bit argument test as 32-bit halves; falls through ("pass") when the condition holds."""
    hi, lo = _ARGS + 8 * index + 4, _ARGS + 8 * index
    v_hi, v_lo = (value >> 32) & 0xFFFFFFFF, value & 0xFFFFFFFF
    if op == "SCMP_CMP_EQ":
        return [(_LD_ABS, 0, 0, hi), (_JEQ, 0, "fail", v_hi), (_LD_ABS, 0, 0, lo), (_JEQ, 0, "fail", v_lo)]
    if op == "SCMP_CMP_NE":
        return [(_LD_ABS, 0, 0, hi), (_JEQ, 0, "pass", v_hi), (_LD_ABS, 0, 0, lo), (_JEQ, "fail", 0, v_lo)]
    if op == "SCMP_CMP_MASKED_EQ":
        t_hi, t_lo = (value_two >> 32) & 0xFFFFFFFF, value_two & 0xFFFFFFFF
        return [
            (_LD_ABS, 0, 0, hi), (_AND, 0, 0, v_hi), (_JEQ, 0, "fail", t_hi),
            (_LD_ABS, 0, 0, lo), (_AND, 0, 0, v_lo), (_JEQ, 0, "fail", t_lo),
        ]  # fmt: skip
    # Ordered comparisons: decide on the high word unless equal, then on the low word.
    low_jump, when_greater = {
        "SCMP_CMP_GT": (_JGT, "pass"),
        "SCMP_CMP_GE": (_JGE, "pass"),
        "SCMP_CMP_LE": (_JGT, "fail"),
        "SCMP_CMP_LT": (_JGE, "fail"),
    }.get(op, (0, ""))
    if not low_jump:
        raise InvalidArgument(f"unsupported seccomp comparison {op!r}")
    other = "fail" if when_greater == "pass" else "pass"
    return [
        (_LD_ABS, 0, 0, hi), (_JGT, when_greater, 0, v_hi), (_JEQ, 0, other, v_hi),
        (_LD_ABS, 0, 0, lo), (low_jump, when_greater, other, v_lo),
    ]  # fmt: skip


def _rule_block(nr: int, action: int, args: Iterable[Mapping[str, Any]]) -> list[tuple[int, int, int, int]]:
    """`if nr matches and every arg condition holds: return action`, else fall through to the next block."""
    conds = [_compare(a["index"], a["op"], a.get("value", 0), a.get("valueTwo", 0)) for a in args]
    fail = 2 + sum(len(c) for c in conds) + 1  # index just past this block
    out = [(_LD_ABS, 0, 0, _NR), (_JEQ, 0, fail - 2, nr)]
    for cond in conds:
        passed = len(out) + len(cond)
        for code, jt, jf, k in cond:
            pos = len(out)
            out.append((code, _offset(jt, pos, passed, fail), _offset(jf, pos, passed, fail), k))
    out.append((_RET, 0, 0, action))
    return out


def _offset(label: int | str, pos: int, passed: int, fail: int) -> int:
    if isinstance(label, int):
        return label
    jump = (passed if label == "pass" else fail) - pos - 1
    if not 0 <= jump <= 255:
        raise InvalidArgument("seccomp rule too long for a classic BPF jump")
    return jump


def compile_bpf(profile: Mapping[str, Any]) -> bytes:
    """Compile an OCI `linux.seccomp` object to a classic BPF program; rules are tried in order.

    Unknown syscall names are skipped, like runc does, so one profile serves several kernels.
    """
    default = _action(profile.get("defaultAction", "SCMP_ACT_ALLOW"), profile.get("defaultErrnoRet"))
    prog: list[tuple[int, int, int, int]] = [
        (_LD_ABS, 0, 0, _ARCH),
        (_JEQ, 1, 0, AUDIT_ARCH_X86_64),
        (_RET, 0, 0, RET_KILL_PROCESS),
        (_LD_ABS, 0, 0, _NR),
        (_JGE, 0, 1, X32_SYSCALL_BIT),
        (_RET, 0, 0, RET_ERRNO | errno.EPERM),
    ]
    for rule in profile.get("syscalls") or []:
        action = _action(rule["action"], rule.get("errnoRet"))
        if action == default and not rule.get("args"):
            continue
        for name in rule.get("names") or [rule["name"]]:
            if name in NUMBERS:
                prog.extend(_rule_block(NUMBERS[name], action, rule.get("args") or []))
    prog.append((_RET, 0, 0, default))
    if len(prog) > 4096:  # BPF_MAXINSNS
        raise InvalidArgument(f"seccomp profile compiles to {len(prog)} BPF instructions (limit 4096)")
    return b"".join(struct.pack("<HBBI", *insn) for insn in prog)


def _kernel_at_least(release: str, minimum: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        return tuple(int("".join(c for c in p if c.isdigit()) or 0) for p in v.split("-")[0].split(".")[:2])

    return parts(release) >= parts(minimum)


def from_docker_profile(
    profile: Mapping[str, Any],
    caps: Iterable[str] = DOCKER_DEFAULT_CAPS,
    kernel: str | None = None,
    arch: str = "amd64",
) -> dict[str, Any]:
    """Translate a Docker seccomp profile (with includes/excludes by caps, arch, minKernel) to OCI form.

    Mirrors moby profiles/seccomp/seccomp_linux.go: a rule applies when all its included caps are held,
    the arch and kernel match, and none of its excluded caps/arches applies.
    """
    held = {c.upper() for c in caps}
    kernel = kernel or os.uname().release
    arches = [arch]
    oci_arches = list(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        oci_arches.extend([entry["architecture"], *entry.get("subArchitectures", [])])
    out: dict[str, Any] = {
        "defaultAction": profile["defaultAction"],
        "architectures": oci_arches,
        "syscalls": [],
    }
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    for rule in profile.get("syscalls") or []:
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if inc.get("caps") and not set(inc["caps"]) <= held:
            continue
        if inc.get("arches") and not set(inc["arches"]) & set(arches):
            continue
        if inc.get("minKernel") and not _kernel_at_least(kernel, inc["minKernel"]):
            continue
        if set(exc.get("caps") or []) & held or set(exc.get("arches") or []) & set(arches):
            continue
        oci = {"names": rule.get("names") or [rule["name"]], "action": rule["action"]}
        for key in ("errnoRet", "args"):
            if rule.get(key) is not None:
                oci[key] = rule[key]
        out["syscalls"].append(oci)
    return out
