"""`top`: the container's processes as the host's `ps` shows them, filtered to the PIDs in the
container's cgroup (Docker runs `ps` on the host the same way, default `-ef`, and keeps the lines whose
PID column is one of the container's)."""

from __future__ import annotations

import subprocess

from intermodal.engine.containers.record import PAUSED, RUNNING
from intermodal.engine.containers.service import ContainerService
from intermodal.errors import Conflict, IntermodalError, InvalidArgument
from intermodal.runtime.cgroups import open_cgroup


def top(svc: ContainerService, spec: str, ps_args: list[str]) -> tuple[list[str], list[list[str]]]:
    """(titles, one row per process) like Docker's ContainerTopOKBody."""
    record = svc.get(spec)
    if record.status not in (RUNNING, PAUSED):
        raise Conflict(f"container {spec} is not running")
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
