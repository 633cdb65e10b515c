"""Drive an OCI runtime through its command line (runtime-spec `runtime.md` operations, runc's CLI):
our own `intermodal-runtime`, crun or runc. The bundle is the whole interface, so they are interchangeable."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intermodal.errors import CannotInvoke, CommandNotFound, IntermodalError, InvalidArgument, NotFound
from intermodal.fsutil import atomic_write_bytes

if TYPE_CHECKING:
    import subprocess

BUILTIN = "intermodal"
VM = "vm"  # the micro-VM runtime (isolation/microvm), also chosen by --isolation=vm
_OURS = {BUILTIN: "intermodal-runtime", VM: "intermodal-vm-runtime"}


def _is_hybrid_cgroup() -> bool:
    """cgroup v1 controllers plus a cgroup2 mount at /sys/fs/cgroup/unified (see docs/machine facts)."""
    return os.path.isdir("/sys/fs/cgroup/memory") and os.path.exists("/sys/fs/cgroup/unified/cgroup.procs")


@dataclass(frozen=True)
class GuestProcess:
    """A process of a container whose processes are not the host's (a micro-VM's, in its guest)."""

    pid: int
    ppid: int
    uid: int
    started: float  # seconds since the epoch, by the host's clock
    cpu_seconds: float
    tty: str  # "?" without one, as ps shows it
    command: str


class OciRuntime:
    """One OCI runtime binary plus the state directory it keeps its container state in."""

    def __init__(self, name: str, state_root: Path, scratch: Path):
        self.name = name or BUILTIN
        self.state_root = state_root / os.path.basename(self.name)
        self.binary = self._binary(self.name, scratch)

    @staticmethod
    def _binary(name: str, scratch: Path) -> str:
        if name in _OURS:
            path = Path(sys.executable).with_name(_OURS[name])
            if not path.exists():
                found = shutil.which(_OURS[name])
                if not found:
                    raise NotFound(f"{_OURS[name]} is not installed: reinstall intermodal (make install)")
                path = Path(found)
            return str(path)
        found = name if "/" in name else shutil.which(name)
        if not found or not os.access(found, os.X_OK):
            raise InvalidArgument(
                f"unknown runtime {name!r}: give intermodal, crun, runc or the path of an OCI runtime"
            )
        if os.path.basename(found) == "crun" and _is_hybrid_cgroup():
            # crun refuses hybrid cgroup hosts unless the cgroup2 mount is hidden from it: give it a private
            # mount namespace without /sys/fs/cgroup/unified (machine facts: crun 1.8).
            wrapper = scratch / "crun-hybrid"
            script = (
                "#!/bin/sh\nexec unshare -m sh -c "
                f'\'umount /sys/fs/cgroup/unified 2>/dev/null; exec {found} "$@"\' crun "$@"\n'
            )
            if not wrapper.exists() or wrapper.read_text() != script:
                atomic_write_bytes(wrapper, script.encode(), mode=0o755)
            return str(wrapper)
        return found

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.state_root), *args]

    def _call(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        import subprocess

        self.state_root.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(self.argv(*args), capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise runtime_error(self.name, args[0], result.stderr or result.stdout)
        return result

    def create(
        self,
        cid: str,
        bundle: Path,
        pid_file: Path,
        stdio: Sequence[int] | None = None,
        console_socket: Path | None = None,
    ) -> None:
        """Create the container; with `stdio` the container process inherits those three fds."""
        import subprocess

        args = ["create", "--bundle", str(bundle), "--pid-file", str(pid_file)]
        if console_socket:
            args += ["--console-socket", str(console_socket)]
        self.state_root.mkdir(parents=True, exist_ok=True)
        fds = stdio or (subprocess.DEVNULL, subprocess.DEVNULL, subprocess.DEVNULL)
        # The container inherits the runtime's stdio, so the runtime's own errors go to a log file
        # (runc's --log/--log-format json, which crun and ours share) to tell them from the workload's output.
        log = bundle / "runtime.log"
        log.unlink(missing_ok=True)
        argv = [
            self.binary,
            "--root",
            str(self.state_root),
            "--log",
            str(log),
            "--log-format",
            "json",
            *args,
            cid,
        ]
        code = subprocess.run(argv, stdin=fds[0], stdout=fds[1], stderr=fds[2], close_fds=True).returncode
        if code != 0:
            try:
                errors = log.read_text(errors="replace")
            except FileNotFoundError:
                errors = ""
            raise runtime_error(self.name, "create", errors)

    def start(self, cid: str) -> None:
        self._call("start", cid)

    def kill(self, cid: str, sig: int | str, all_processes: bool = False) -> None:
        self._call(
            "kill", *(["--all"] if all_processes and self.name != BUILTIN else []), cid, str(sig), check=False
        )

    def delete(self, cid: str, force: bool = True) -> None:
        if not (self.state_root / cid).exists():
            return  # never created (or already deleted): skip starting the runtime at all
        self._call("delete", *(["--force"] if force else []), cid, check=False)

    def update(self, cid: str, resources: dict[str, Any]) -> None:
        """`update --resources FILE`, which runc, crun and ours share, for a created or running container."""
        path = self.state_root / f".{cid}.resources.json"
        atomic_write_bytes(path, json.dumps(resources).encode(), durable=False)
        try:
            self._call("update", "--resources", str(path), cid)
        finally:
            path.unlink(missing_ok=True)

    def files_changed(self, cid: str) -> None:
        """The host wrote into the running container's file system (`cp`). Namespaced containers see it
        at once; a runtime that caches the files elsewhere (a VM's guest kernel) refreshes that cache."""

    def oom_killed(self, cid: str, bundle: Path) -> bool:
        """Whether a kernel of the runtime's own (a VM's guest) killed the container's process for memory; the
        engine reads the host cgroup's OOM kills itself."""
        return False

    def guest_processes(self, cid: str) -> list[GuestProcess] | None:
        """None: the container's processes are the host's, those in its cgroup (`top` lists them with ps)."""
        return None

    def state(self, cid: str) -> dict[str, Any] | None:
        result = self._call("state", cid, check=False)
        if result.returncode != 0:
            return None
        state: dict[str, Any] = json.loads(result.stdout)
        return state

    def exec_argv(
        self,
        cid: str,
        process_file: Path,
        *,
        tty: bool,
        detach: bool,
        pid_file: Path | None,
        log: Path | None = None,
        console_socket: Path | None = None,
    ) -> list[str]:
        """`exec --process FILE`; with `log` the runtime's own errors go there (JSON lines), apart from
        the process's output on the shared stdio."""
        args = ["--log", str(log), "--log-format", "json"] if log else []
        args += ["exec", "--process", str(process_file)]
        if tty:
            args.append("--tty")
        if console_socket:
            args += ["--console-socket", str(console_socket)]
        if detach:
            args.append("--detach")
        if pid_file:
            args += ["--pid-file", str(pid_file)]
        return self.argv(*args, cid)


def runtime_error(runtime: str, operation: str, output: str) -> IntermodalError:
    """Map a runtime's failure text to Docker's exit codes: 127 not found, 126 cannot invoke, else 125."""
    text = " ".join(_messages(output)) or f"{runtime} {operation} failed"
    lowered = text.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered and "exec" in lowered:
        return CommandNotFound(f"{text}: check the command or the image's PATH")
    if (
        "permission denied" in lowered
        and "exec" in lowered
        or "is a directory" in lowered
        or "operation not permitted" in lowered
        and "open executable" in lowered  # crun's words
    ):
        return CannotInvoke(f"{text}: the command is not executable")
    return IntermodalError(f"{runtime} {operation}: {text}")


def _messages(output: str) -> list[str]:
    """runc/crun may log JSON lines (`{"level":"error","msg":…}`); keep only the messages."""
    out = []
    for line in output.strip().splitlines():
        try:
            obj = json.loads(line)
            if isinstance(obj, dict):
                if obj.get("level", "error") in ("error", "fatal"):
                    out.append(str(obj.get("msg", line)))
            else:
                out.append(line)
        except ValueError:
            out.append(line.strip())
    return [m for m in out if m]


def open_runtime(name: str, state_root: Path, scratch: Path) -> OciRuntime:
    """Our own runtimes run in-process for speed; any other is driven through its command line."""
    if (name or BUILTIN) == BUILTIN:
        from intermodal.isolation.builtin import BuiltinRuntime

        return BuiltinRuntime(BUILTIN, state_root, scratch)
    if name == VM:
        from intermodal.isolation.microvm.inprocess import VmRuntime

        return VmRuntime(VM, state_root, scratch)
    return OciRuntime(name, state_root, scratch)
