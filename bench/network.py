"""Networking cost: a published port vs the same server on the host, and container start-up with a network.

Load: busybox httpd serving a small page (latency: sequential requests, one connection each) and a 64 MiB
file (throughput), fetched from the host on 127.0.0.1 through `-p 127.0.0.1:PORT:80` (nftables DNAT, and
the docker-proxy mode), through `podman run -p` (netavark) and directly from the same httpd binary on the
host. Start-up: `run --rm busybox true` with the default network vs `--network none`, taking turns (the
bridge comes up with the first run and stays up, as docker0 does). Every loop has a fixed count and a
deadline; traffic stays on 127.0.0.1. The root's bridge and table are taken down with `system reset`.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.containers import podman_cli

RUNS = int(os.environ.get("BENCH_RUNS", "20"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "300"))
DOWNLOADS = 5
BIG = 64 << 20
INTERMODAL = str(Path(sys.executable).with_name("intermodal"))
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "INTERMODAL_ROOT")}
DEADLINE = 120.0  # seconds per measurement loop


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        size = 0
        while chunk := response.read(1 << 20):
            size += len(chunk)
        return size
    finally:
        conn.close()


def wait_ready(port: int) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            get(port, "/small")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def load(port: int) -> tuple[float, float]:
    """(median request latency in ms, median download throughput in MB/s)."""
    wait_ready(port)
    latencies, rates = [], []
    deadline = time.monotonic() + DEADLINE
    for _ in range(REQUESTS):
        if time.monotonic() > deadline:
            break
        start = time.perf_counter()
        get(port, "/small")
        latencies.append(time.perf_counter() - start)
    for _ in range(DOWNLOADS):
        if time.monotonic() > deadline:
            break
        start = time.perf_counter()
        size = get(port, "/big")
        rates.append(size / (time.perf_counter() - start) / 1e6)
    return statistics.median(latencies) * 1000, statistics.median(rates)


class Engine:
    def __init__(self, root: Path):
        self.root = root

    def __call__(self, *args: str) -> str:
        proc = subprocess.run(
            [INTERMODAL, "--root", str(self.root), *args], capture_output=True, text=True, env=ENV
        )
        if proc.returncode:
            raise RuntimeError(f"intermodal {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def configure(self, **network: object) -> None:
        base = {
            "bridge": "imbench0",
            "table": "intermodal_bench",
            "subnet": "10.241.7.0/24",
            "pool": "10.242.0.0/16",
        }
        (self.root / "config.json").write_text(json.dumps({"network": {**base, **network}}))

    def start_times(self, *variants: tuple[str, ...]) -> list[list[float]]:
        """`run --rm busybox true` with each variant's flags, taking turns (noise hits all alike)."""
        out: list[list[float]] = [[] for _ in variants]
        deadline = time.monotonic() + DEADLINE
        for i in range(max(RUNS, 10)):
            if time.monotonic() > deadline and i >= 10:
                break
            for args, samples in zip(variants, out, strict=True):
                start = time.perf_counter()
                self("run", "--rm", *args, "busybox", "true")
                samples.append(time.perf_counter() - start)
        return out


def serve_in_container(engine: Engine, www: Path, port: int) -> str:
    return engine(
        "run", "-d", "-v", f"{www}:/www:ro", "-p", f"127.0.0.1:{port}:80", "busybox",
        "httpd", "-f", "-p", "80", "-h", "/www",
    ).strip()  # fmt: skip


def main() -> None:
    print("\n== network: published port vs host, start-up with a network ==")
    if os.geteuid() != 0:
        print("skipped: needs root")
        return
    with tempfile.TemporaryDirectory(prefix="intermodal-bench-net-") as tmp:
        work = Path(tmp)
        www = work / "www"
        www.mkdir()
        (www / "small").write_bytes(b"x" * 512)
        with open(www / "big", "wb") as f:
            f.truncate(BIG)
        engine = Engine(work / "root")
        engine.root.mkdir()
        engine.configure()
        engine("image", "bootstrap", "busybox")
        try:
            published(engine, work, www)
            start_up(engine)
        finally:  # the root's bridge and nftables table stay up until this
            engine("system", "reset", "--force")


def published(engine: Engine, work: Path, www: Path) -> None:
    rows = []
    host_port = free_port()
    server = subprocess.Popen(
        ["/bin/busybox", "httpd", "-f", "-p", f"127.0.0.1:{host_port}", "-h", str(www)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        rows.append(("host httpd (direct)", *load(host_port)))
    finally:
        server.terminate()
        server.wait(10)
    for label, proxy in (("published port (nftables DNAT)", False), ("published port (docker-proxy)", True)):
        engine.configure(userland_proxy=proxy)
        port = free_port()
        cid = serve_in_container(engine, www, port)
        try:
            rows.append((label, *load(port)))
        finally:
            engine("rm", "-f", cid)
    engine.configure()
    rows += podman_published(engine, work, www)
    direct = rows[0][2]
    print(f"{'server':34} {'latency (median)':>18} {'throughput (median)':>22} {'vs direct':>10}")
    for label, latency, rate in rows:
        print(f"{label:34} {latency:15.2f} ms {rate:16.0f} MB/s {rate / direct:9.2f}x")


def start_up(engine: Engine) -> None:
    first = time.perf_counter()
    engine("run", "--rm", "busybox", "true")  # brings the bridge up
    first = time.perf_counter() - first
    none, bridged = engine.start_times(("--network", "none"), ())
    print(f"\n{'run --rm busybox true':44} {'median':>9} {'range':>18}")
    for label, samples in (("--network none", none), ("default network", bridged)):
        lo, hi = min(samples) * 1000, max(samples) * 1000
        print(f"{label:44} {statistics.median(samples) * 1000:6.1f} ms {lo:8.1f}-{hi:.1f} ms")
    print(
        f"network cost: {1000 * (statistics.median(bridged) - statistics.median(none)):.1f} ms "
        f"(target <= 20 ms); the first run, which brings the bridge up: {first * 1000:.0f} ms"
    )


def podman_published(engine: Engine, work: Path, www: Path) -> list[tuple[str, float, float]]:
    """The same httpd in `podman run -d -p 127.0.0.1:PORT:80` (podman's default network, netavark)."""
    archive = work / "busybox.tar"
    engine("save", "-o", str(archive), "busybox")
    cli = podman_cli(work, archive)
    if isinstance(cli, str):
        print(f"podman run -p: skipped ({cli})")
        return []
    base, env = cli
    port = free_port()
    started = subprocess.run(
        [*base, "run", "-d", "-p", f"127.0.0.1:{port}:80", "-v", f"{www}:/www:ro", "busybox",
         "httpd", "-f", "-p", "80", "-h", "/www"], capture_output=True, text=True, env=env,
    )  # fmt: skip
    if started.returncode:
        print(f"podman run -p: failed ({started.stderr.strip()[-120:]})")
        return []
    try:
        return [("podman run -p (netavark)", *load(port))]
    finally:
        subprocess.run([*base, "rm", "-f", "-t", "0", started.stdout.strip()], capture_output=True, env=env)
