"""The three OCI runtimes (ours, crun, runc) behind one command-line driver, and busybox bundles for them.

A plain module (not conftest) so test modules can import it by name without clashing with other conftests."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intermodal.runtime import spec as oci

BUSYBOX = "/bin/busybox"
OURS = shutil.which("intermodal-runtime") or str(Path(__file__).parents[2] / ".venv/bin/intermodal-runtime")
# crun 1.8 refuses hybrid cgroups unless the (empty) unified hierarchy is out of sight.
CRUN = ["unshare", "-m", "sh", "-c", 'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun "$@"', "crun"]


def mounts_mentioning(path: Path) -> list[str]:
    """Host mount table lines about `path` (the whole table would count other programs' mounts too)."""
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if str(path) in line]


def build_busybox_rootfs(path: Path) -> Path:
    """A minimal rootfs: static busybox, one relative symlink per applet, /etc/passwd and /etc/group."""
    bindir = path / "bin"
    bindir.mkdir(parents=True)
    shutil.copy2(BUSYBOX, bindir / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", bindir / applet)
    for d in ("etc", "tmp", "proc", "sys", "dev", "root"):
        (path / d).mkdir(exist_ok=True)
    (path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
    (path / "etc/group").write_text("root:x:0:\nnobody:x:65534:\n")
    return path


def build_bundle(path: Path, args: list[str], *, cgroups_path: str | None = None, **options: Any) -> Path:
    """A bundle at `path` running `args` with our Docker-like spec; `options` go to `spec.default_spec`."""
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "rootfs").exists():
        build_busybox_rootfs(path / "rootfs")
    spec = oci.default_spec(
        args, cgroups_path=cgroups_path or f"/intermodal-test/{uuid.uuid4().hex[:12]}", **options
    )
    (path / "config.json").write_text(json.dumps(spec, indent=1))
    return path


@dataclass
class Result:
    code: int
    out: str
    err: str


class Runtime:
    """Drives one OCI runtime through runc's command line, reaping container inits as a subreaper does."""

    def __init__(self, name: str, argv: list[str], root: Path) -> None:
        self.name, self.argv, self.root = name, argv, root

    def __call__(self, *args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
        kw.setdefault("capture_output", "stdout" not in kw)
        proc = subprocess.run([*self.argv, "--root", str(self.root), *args], text=True, timeout=30, **kw)
        if check and proc.returncode:
            raise AssertionError(f"{self.name} {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def create(self, cid: str, bundle: Path, **kw: Any) -> int:
        pid_file = bundle / f"{cid}.pid"
        self("create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid, **kw)
        return int(pid_file.read_text())

    def state(self, cid: str) -> dict[str, Any]:
        return json.loads(self("state", cid).stdout)

    def run(self, bundle: Path, cid: str | None = None, keep: bool = False) -> Result:
        """create + start + reap the init; stdout/stderr go through files (the init outlives `create`)."""
        cid = cid or f"t-{uuid.uuid4().hex[:10]}"
        out, err = bundle / f"{cid}.out", bundle / f"{cid}.err"
        with open(out, "w") as o, open(err, "w") as e:
            pid = self.create(cid, bundle, stdin=subprocess.DEVNULL, stdout=o, stderr=e)
        self("start", cid)
        code = self.wait(pid)
        if not keep:
            self("delete", cid)
        return Result(code, out.read_text(), err.read_text())

    def cleanup(self) -> None:
        """Force-delete whatever a failed test left behind and reap the inits, so nothing outlives the test."""
        if not self.root.is_dir():
            return
        for cid in [p.name for p in self.root.iterdir() if p.is_dir()]:  # runc, crun and ours: a dir per id
            pid = self.state(cid).get("pid") if self("state", cid, check=False).returncode == 0 else None
            self("delete", "--force", cid, check=False)
            if pid:
                with contextlib.suppress(ChildProcessError, AssertionError):
                    self.wait(pid, timeout=5)

    @staticmethod
    def wait(pid: int, timeout: float = 20.0) -> int:
        """Reap a re-parented container init and return its exit code (128+N when killed by signal N)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got, status = os.waitpid(pid, os.WNOHANG)
            if got == pid:
                code = os.waitstatus_to_exitcode(status)
                return 128 - code if code < 0 else code
            time.sleep(0.01)
        os.kill(pid, 9)
        raise AssertionError(f"container init {pid} did not exit within {timeout}s")


@functools.cache
def _crun_usable(tmp: Path) -> str:
    """'' if crun can run a container here, else why not."""
    bundle = build_bundle(tmp / "crun-probe", ["true"])
    proc = subprocess.run([*CRUN, "--root", str(tmp / "crun-probe-state"), "run", "--bundle", str(bundle), "probe"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    return "" if proc.returncode == 0 else f"crun cannot run containers here: {proc.stderr.strip()}"
