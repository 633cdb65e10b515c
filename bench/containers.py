"""Container start-up and supervision cost against the peers measured in the same run.

`run --rm busybox true`: intermodal (our runtime, and crun under our engine) vs `crun run` and `runc run`
on an identical OCI bundle, `podman run --rm` and `docker run --rm` (a dockerd started here with its own
data root, then stopped). Then the engine's memory per idle detached container (PSS of conmon, the only
process we keep per container), and `ps` with 100 detached containers running.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from intermodal.runtime import spec as oci

RUNS = int(os.environ.get("BENCH_RUNS", "20"))
DETACHED = int(os.environ.get("BENCH_DETACHED", "100"))
INTERMODAL = str(Path(sys.executable).with_name("intermodal"))
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "INTERMODAL_ROOT")}
CRUN = ["unshare", "-m", "sh", "-c", 'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun "$@"', "crun"]


def once(argv: list[str], env: dict[str, str] | None = None) -> Callable[[], None]:
    """One run of a command (a candidate of the table); it raises if the command fails."""

    def run() -> None:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env or ENV)

    return run


def timed(argv: list[str], runs: int = RUNS, env: dict[str, str] | None = None) -> list[float]:
    run, out = once(argv, env), []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        out.append(time.perf_counter() - start)
    return out


def taking_turns(candidates: dict[str, Callable[[], None]]) -> tuple[dict[str, list[float]], dict[str, str]]:
    """RUNS rounds, one run of each candidate per round, so a change in the machine's load (a shared
    machine) hits them all alike; a candidate that fails drops out with its error."""
    results: dict[str, list[float]] = {name: [] for name in candidates}
    failed: dict[str, str] = {}
    for _ in range(RUNS):
        for name, fn in candidates.items():
            if name in failed:
                continue
            start = time.perf_counter()
            try:
                fn()
            except subprocess.CalledProcessError as e:
                failed[name] = (e.stderr or b"").decode().strip()[-80:]
                continue
            except Exception as e:  # a peer that cannot run here must not hide the others' figures
                failed[name] = str(e)
                continue
            results[name].append(time.perf_counter() - start)
    return results, failed


def summary(samples: list[float]) -> str:
    return (
        f"{statistics.median(samples) * 1000:8.1f} ms ({min(samples) * 1000:.1f}-{max(samples) * 1000:.1f})"
    )


def bundle_for(rootfs_source: Path, workdir: Path) -> Path:
    bundle = workdir / "bundle"
    shutil.copytree(rootfs_source, bundle / "rootfs", symlinks=True)
    spec = oci.default_spec(["true"], cgroups_path="/intermodal-bench/peer")
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def oci_run(argv: list[str], bundle: Path, state: Path) -> Callable[[], None]:
    names = (f"bench{i}" for i in itertools.count())

    def run() -> None:
        subprocess.run([*argv, "--root", str(state), "run", "--bundle", str(bundle), next(names)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)  # fmt: skip

    return run


def podman_cli(work: Path, archive: Path) -> tuple[list[str], dict[str, str]] | str:
    """podman with its own root in `work` (configured as machine.md says it runs here) and busybox loaded
    from `archive`: (argv prefix, environment), or why it cannot run."""
    if not shutil.which("podman"):
        return "podman is not installed (make bench installs it)"
    conf = work / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits=["nofile=20000:20000","nproc=32768:32768"]\n'
                    '[engine]\ncgroup_manager="cgroupfs"\nevents_logger="file"\nruntime="runc"\n')  # fmt: skip
    base = ["podman", "--root", str(work / "podman-root"), "--runroot", str(work / "podman-run")]
    env = {**ENV, "CONTAINERS_CONF": str(conf)}
    load = subprocess.run([*base, "load", "-i", str(archive)], env=env, capture_output=True, text=True)
    if load.returncode:
        return f"podman load failed: {load.stderr.strip().splitlines()[-1:]}"
    return base, env


def podman(work: Path, archive: Path) -> Callable[[], None] | str:
    cli = podman_cli(work, archive)
    if isinstance(cli, str):
        return cli
    base, env = cli
    return once([*base, "run", "--rm", "--network", "none", "busybox", "true"], env=env)


def docker(
    work: Path, archive: Path, load: bool = True
) -> tuple[Callable[[], None] | str, Callable[[], None]]:
    """Start a private dockerd (its own data root and socket, no iptables, no bridge); stop() ends it."""
    if not shutil.which("dockerd"):
        return "dockerd is not installed", lambda: None
    sock = work / "docker.sock"
    pidfile = work / "docker.pid"
    proc = subprocess.Popen(
        ["dockerd", "--iptables=false", "--bridge=none", "--data-root", str(work / "docker"),
         "--exec-root", str(work / "docker-exec"), "--host", f"unix://{sock}", "--pidfile", str(pidfile),
         "--storage-driver", "overlay2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def stop() -> None:
        with __import__("contextlib").suppress(ProcessLookupError, ValueError, FileNotFoundError):
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        proc.wait(timeout=30)

    client = ["/usr/bin/docker", "-H", f"unix://{sock}"]
    for _ in range(100):
        if subprocess.run([*client, "info"], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    else:
        stop()
        return "dockerd did not start", lambda: None
    if load:
        subprocess.run([*client, "load", "-i", str(archive)], check=True, capture_output=True)

    return once([*client, "run", "--rm", "--network", "none", "busybox", "true"]), stop


_MODULES_OF_RUN = """
import os, sys
sys.argv = ["intermodal", *sys.argv[1:]]
me, leave = os.getpid(), os._exit
def record_modules(code):
    if os.getpid() == me:
        print(",".join(m for m in sys.modules if m.split(".")[0] not in ("intermodal", "__main__")), file=sys.stderr)
    leave(code)
os._exit = record_modules
from intermodal.cli import main
main()
"""


def python_floors(im: list[str]) -> dict[str, Callable[[], None]]:
    """What any Python front end pays before doing anything: the interpreter's start, and the interpreter
    importing the library modules (standard library and click) that `run` loads, without our own code."""
    done = subprocess.run([sys.executable, "-c", _MODULES_OF_RUN, *im[1:], "run", "--rm", "--network", "none",
                           "busybox", "true"], check=True, capture_output=True, text=True, env=ENV)  # fmt: skip
    modules = done.stderr.strip().splitlines()[-1]
    return {
        "floor: python3 -c pass": once([sys.executable, "-c", "pass"]),
        f"floor: python3 importing the {modules.count(',') + 1} library modules run loads": once(
            [sys.executable, "-c", f"import {modules}"]
        ),
    }


def pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    with tempfile.TemporaryDirectory(prefix="intermodal-bench-") as tmp:
        work = Path(tmp)
        root = work / "root"
        im = [INTERMODAL, "--root", str(root)]
        subprocess.run([*im, "image", "bootstrap", "busybox"], check=True, capture_output=True, env=ENV)
        archive = work / "busybox.tar"
        subprocess.run([*im, "save", "-o", str(archive), "busybox"], check=True, env=ENV)
        rootfs = work / "rootfs"
        rootfs.mkdir()
        subprocess.run(["tar", "-xf", str(archive), "-C", str(work)], check=True)
        layer = next(p for p in (work / "blobs" / "sha256").iterdir() if p.stat().st_size > 500_000)
        subprocess.run(["tar", "-xzf", str(layer), "-C", str(rootfs)], check=True)
        bundle = bundle_for(rootfs, work)
        subprocess.run([*im, "run", "--rm", "busybox", "true"], check=True, env=ENV)  # warm the layer cache

        rows: list[tuple[str, str, float | None]] = []
        candidates: dict[str, Callable[[], None] | str] = {
            "intermodal run --rm --network none": once([*im, "run", "--rm", "--network", "none", "busybox", "true"]),
            "intermodal run --rm (default bridge network)": once([*im, "run", "--rm", "busybox", "true"]),
            "intermodal run --rm --network none --runtime crun": once(
                [*im, "run", "--rm", "--network", "none", "--runtime", "crun", "busybox", "true"]
            ),
            "crun run (bundle)": oci_run(CRUN, bundle, work / "crun-state"),
            "runc run (bundle)": oci_run(["runc"], bundle, work / "runc-state"),
            "podman run --rm": podman(work, archive),
        }  # fmt: skip
        docker_run, stop_docker = docker(work, archive)
        candidates["docker run --rm"] = docker_run
        candidates.update(python_floors(im))
        try:
            results, failed = taking_turns({n: fn for n, fn in candidates.items() if not isinstance(fn, str)})
        finally:
            stop_docker()
        for name, fn in candidates.items():
            if isinstance(fn, str):
                rows.append((name, f"skipped: {fn}", None))
            elif name in failed:
                rows.append((name, f"failed: {failed[name]}", None))
            else:
                rows.append((name, summary(results[name]), statistics.median(results[name])))
        none = statistics.median(results["intermodal run --rm --network none"])
        bridged = statistics.median(results["intermodal run --rm (default bridge network)"])
        table = Table(
            title=f"run --rm busybox true (median of {RUNS}, taking turns, min-max; peers with --network none)"
        )
        table.add_column("command")
        table.add_column("time")
        table.add_column("intermodal (none) ÷ this")
        table.add_column("intermodal (bridge) ÷ this")
        for name, text, median in rows:
            table.add_row(
                name, text, *((f"{none / median:.2f}x", f"{bridged / median:.2f}x") if median else ("", ""))
            )
        Console().print(table)
        try:
            detached(im, root)
        finally:  # the root's bridge and nftables table stay up until this
            subprocess.run([*im, "system", "reset", "--force"], check=True, env=ENV)


def detached(im: list[str], root: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    start = time.perf_counter()
    for i in range(DETACHED):
        subprocess.run([*im, "run", "-d", "--name", f"idle{i}", "busybox", "sleep", "600"], check=True,
                       stdout=subprocess.DEVNULL, env=ENV)  # fmt: skip
    start_all = time.perf_counter() - start
    ps = timed([*im, "ps"], runs=RUNS)
    conmons = [
        int((p / "conmon.pid").read_text())
        for p in (root / "containers").iterdir()
        if (p / "conmon.pid").exists()
    ]
    pss = [pss_kib(pid) for pid in conmons]
    start = time.perf_counter()
    ids = subprocess.run(
        [*im, "ps", "-aq"], check=True, capture_output=True, text=True, env=ENV
    ).stdout.split()
    subprocess.run([*im, "rm", "-f", *ids], check=True, stdout=subprocess.DEVNULL, env=ENV)
    remove_all = time.perf_counter() - start
    table = Table(title=f"{DETACHED} detached `sleep` containers")
    table.add_column("measure")
    table.add_column("intermodal")
    table.add_column("target / peers (machine facts)")
    table.add_row("start all", f"{start_all:.1f} s", "podman 20.1 s, docker 34.3 s")
    table.add_row("ps with all running", summary(ps), "≤ 100 ms; podman 159 ms, docker 65 ms")
    table.add_row("monitor PSS per container", f"{statistics.median(pss) / 1024:.2f} MiB (conmon)",
                  "≤ 2 MiB; conmon 0.35 MiB, containerd-shim 2.56 MiB")  # fmt: skip
    table.add_row("rm -f all", f"{remove_all:.1f} s", "podman 6.9 s, docker 5.0 s")
    Console().print(table)
