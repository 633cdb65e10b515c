"""`top`: the container's processes as the host's `ps` shows them, filtered to the PIDs in the
container's cgroup (Docker runs `ps` on the host the same way, default `-ef`, and keeps the lines whose
PID column is one of the container's). A micro-VM's processes are its guest's, not the host's (its cgroup
holds QEMU): the runtime lists them, and they are shown in `ps -ef`'s columns, with guest PIDs and the
user names of the container's /etc/passwd, as Kata Containers shows a sandbox's."""

from __future__ import annotations

import subprocess
import time

from intermodal.engine.containers.record import PAUSED, RUNNING
from intermodal.engine.containers.service import ContainerService
from intermodal.engine.containers.userdb import read_in_root
from intermodal.errors import Conflict, IntermodalError, InvalidArgument
from intermodal.isolation.oci import GuestProcess
from intermodal.runtime.cgroups import open_cgroup

PS_EF = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]


def top(svc: ContainerService, spec: str, ps_args: list[str]) -> tuple[list[str], list[list[str]]]:
    """(titles, one row per process) like Docker's ContainerTopOKBody."""
    record = svc.get(spec)
    if record.status not in (RUNNING, PAUSED):
        raise Conflict(f"container {spec} is not running")
    guest = svc.runtime(record).guest_processes(record.id)
    if guest is not None:
        if ps_args:
            raise InvalidArgument(
                f"ps options are not supported for micro-VM {spec}: its processes are its guest's, shown in "
                "`ps -ef`'s columns"
            )
        passwd = read_in_root(str(svc.paths(record.id).rootfs), "/etc/passwd")
        names = {
            int(f[2]): f[0]
            for f in (line.split(":") for line in passwd.splitlines())
            if len(f) > 2 and f[2].isdigit()
        }
        return PS_EF, [ps_ef_row(p, names, time.time()) for p in guest]
    pids = set(open_cgroup(f"intermodal/{record.id}").pids())
    result = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True)
    if result.returncode != 0:
        raise IntermodalError(f"ps {' '.join(ps_args)} failed: {result.stderr.strip()}")
    return parse_ps(result.stdout, pids)


def parse_ps(output: str, pids: set[int]) -> tuple[list[str], list[list[str]]]:
    """moby's parsePSOutput: split on blanks, the last column (the command) keeps its spaces."""
    lines = output.splitlines()
    titles = lines[0].split() if lines else []
    if "PID" not in titles:
        raise InvalidArgument("couldn't find PID field in ps output: keep the PID column in the ps options")
    pid_index = titles.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) == len(titles) and fields[pid_index].isdigit() and int(fields[pid_index]) in pids:
            rows.append(fields)
    return titles, rows


def ps_ef_row(p: GuestProcess, names: dict[int, str], now: float) -> list[str]:
    """procps' `ps -ef` fields: C is the CPU time over the lifetime in percent, STIME the start as HH:MM
    today, else as MonDD (else the year), TIME the CPU time as [DD-]HH:MM:SS."""
    elapsed = max(now - p.started, 1e-6)
    started, today = time.localtime(p.started), time.localtime(now)
    if started[:3] == today[:3]:
        stime = time.strftime("%H:%M", started)
    else:
        stime = time.strftime("%b%d" if started.tm_year == today.tm_year else "%Y", started)
    seconds = int(p.cpu_seconds)
    days, rest = divmod(seconds, 86400)
    cpu = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return [
        names.get(p.uid, str(p.uid)), str(p.pid), str(p.ppid), str(min(int(p.cpu_seconds * 100 / elapsed), 99)),
        stime, p.tty, f"{days}-{cpu}" if days else cpu, p.command,
    ]  # fmt: skip
