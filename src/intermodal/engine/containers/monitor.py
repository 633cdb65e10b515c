"""Detached containers are supervised by conmon (Debian's, as Podman does): it calls the OCI runtime's
`create`, holds the container's stdio, writes the k8s-file log, records the exit code in `exits/<id>`, and
runs `intermodal container cleanup <id>` when the container exits (where restart policies are applied).
It is tiny (≈0.35 MB PSS here), which a Python monitor could not be."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from intermodal.engine.containers.record import ContainerRecord, Paths
from intermodal.errors import IntermodalError, NotFound
from intermodal.isolation.oci import OciRuntime, runtime_error


def conmon_binary() -> str:
    found = shutil.which("conmon") or ("/usr/bin/conmon" if os.path.exists("/usr/bin/conmon") else None)
    if not found:
        raise NotFound("conmon not found: install Debian's conmon package (apt-get install conmon)")
    return found


def intermodal_binary() -> str:
    path = Path(sys.executable).with_name("intermodal")
    return str(path) if path.exists() else shutil.which("intermodal") or "intermodal"


def launch(
    root: Path,
    record: ContainerRecord,
    paths: Paths,
    runtime: OciRuntime,
    keep_fds: Sequence[int] = (),
    token: str = "",
) -> int:
    """Start conmon, which creates the container; returns the container's PID once `create` succeeded.
    conmon inherits `keep_fds` and holds them while it lives (the sockets reserving published ports); its
    exit command names `token`, so that it finalizes this instance only (a `restart` may have started the
    next one by the time it runs)."""
    import subprocess

    runtime.state_root.mkdir(parents=True, exist_ok=True)
    paths.exits.mkdir(exist_ok=True)
    (paths.dir / "attach").mkdir(exist_ok=True)
    log_max = record.host_config.get("LogConfig", {}).get("Config", {}).get("max-size")
    argv = [
        conmon_binary(), "--api-version", "1",
        "-c", record.id, "-u", record.id, "-n", record.name,
        "-r", runtime.binary, "--runtime-arg", "--root", "--runtime-arg", str(runtime.state_root),
        "-b", str(paths.bundle), "-p", str(paths.dir / "pidfile"), "-P", str(paths.dir / "conmon.pid"),
        "-l", f"k8s-file:{paths.log if record.log_driver != 'none' else os.devnull}", "--exit-dir", str(paths.exits),
        "--socket-dir-path", str(paths.dir / "attach"), "--full-attach",
        "--log-level", "error",
        "--exit-command", intermodal_binary(),
        "--exit-command-arg", "--root", "--exit-command-arg", str(root),
        "--exit-command-arg", "container", "--exit-command-arg", "cleanup",
        "--exit-command-arg", "--instance", "--exit-command-arg", token, "--exit-command-arg", record.id,
    ]  # fmt: skip
    if log_max:
        from intermodal.engine.containers.options import parse_size

        argv += ["--log-size-max", str(parse_size(log_max, "log max-size"))]
    if record.config.get("Tty"):
        argv.append("-t")
    if record.config.get("OpenStdin"):
        argv += ["-i", "--leave-stdin-open"]
    sync_r, sync_w = os.pipe()
    env = {**os.environ, "_OCI_SYNCPIPE": str(sync_w)}
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # the long-lived conmon keeps what it inherits: never a pipe we wait on
        pass_fds=(sync_w, *keep_fds),
        env=env,
        start_new_session=True,
    )
    os.close(sync_w)
    try:
        message = _read_sync_message(sync_r)
    finally:
        os.close(sync_r)
        proc.wait()
    if message is None:
        raise IntermodalError(
            "conmon exited without reporting the container: see `intermodal logs` for output"
        )
    pid = int(str(message.get("data", -1)))
    if pid > 0:
        return pid
    raise runtime_error(runtime.name, "create", str(message.get("message") or ""))


def _read_sync_message(fd: int) -> dict[str, object] | None:
    """conmon writes one JSON object per event on the sync pipe and keeps it open; read just the first."""
    decoder = json.JSONDecoder()
    buffer = ""
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return None
        buffer += chunk.decode(errors="replace")
        try:
            obj, _ = decoder.raw_decode(buffer.lstrip())
        except ValueError:
            continue
        return obj if isinstance(obj, dict) else None


def monitor_pid(paths: Paths) -> int:
    try:
        return int((paths.dir / "conmon.pid").read_text().strip())
    except (OSError, ValueError):
        return 0
