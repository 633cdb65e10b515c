"""`info` and `version`: what this engine is and what the host gives it, in the shape of Docker's
`GET /info` and `GET /version` (so `--format '{{.CgroupVersion}}'`-style scripts keep working)."""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path
from typing import Any

from intermodal import __version__
from intermodal.engine.containers.record import PAUSED, RUNNING
from intermodal.engine.containers.service import ContainerService
from intermodal.fsutil import read_json

API_VERSION = "1.41"  # the Docker Engine API this engine's objects follow (inspect, /info, /version)


def version() -> dict[str, Any]:
    client = {
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "PythonVersion": platform.python_version(),
        "Os": "linux",
        "Arch": _arch(),
        "KernelVersion": os.uname().release,
    }
    # daemonless: the command line is the engine, so the "server" is this same program (Podman's answer)
    return {"Client": client, "Server": dict(client)}


def info(root: Path) -> dict[str, Any]:
    from intermodal.engine.images import ImageService
    from intermodal.isolation.microvm import lifecycle, probe
    from intermodal.runtime import cgroups

    records = ContainerService(root).containers(all_containers=True)
    running = sum(r.status == RUNNING for r in records)
    paused = sum(r.status == PAUSED for r in records)
    config = read_json(root / "config.json", {}) or {}
    runtimes = {"intermodal": {"path": shutil.which("intermodal-runtime") or ""}}
    runtimes |= {name: {"path": path} for name in ("crun", "runc") if (path := shutil.which(name))}
    qemu = shutil.which("qemu-system-x86_64")
    if qemu:
        runtimes["vm"] = {"path": qemu}
    verdict = probe.cached_verdict(lifecycle.assets_dir(root / "run" / "vm"))
    security = ["name=seccomp,profile=builtin", *(["name=userns"] if config.get("userns") == "auto" else [])]
    return {
        "ID": "",
        "Containers": len(records),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": len(records) - running - paused,
        "Images": len(ImageService(root).records()),
        "Driver": "overlay",
        "LoggingDriver": "k8s-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": "2" if cgroups.detect() is cgroups.V2 else "1",
        "Runtimes": runtimes,
        "DefaultRuntime": "vm" if config.get("isolation") == "vm" else "intermodal",
        "Isolation": config.get("isolation") or "default",
        "VmAccelerator": verdict["accel"]
        if verdict
        else ("kvm (not probed yet)" if os.path.exists("/dev/kvm") else "tcg"),
        "SecurityOptions": security,
        "KernelVersion": os.uname().release,
        "OperatingSystem": _os_name(),
        "OSType": "linux",
        "Architecture": os.uname().machine,
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _mem_total(),
        "DockerRootDir": str(root),
        "Name": os.uname().nodename,
        "ServerVersion": __version__,
        "Warnings": [],
    }


def _arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    except OSError:
        return "Linux"
    return fields.get("PRETTY_NAME", "Linux").strip('"')


def _mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0
