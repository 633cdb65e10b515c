"""`intermodal build` against `buildah bud` on the same 10-step Dockerfile with a 50 MB COPY context.

Three cases, medians of RUNS runs with min-max: (a) cold build (fresh state root with only busybox in it),
(b) no-op rebuild (everything cached), (c) rebuild after changing the content of one copied file.
The context is half incompressible (random) and half text, in 40 files.

buildah is configured for this machine (shared/guide/machine.md): `--isolation oci` with runc (crun 1.8 refuses hybrid cgroups), a private
`--root/--runroot`, a containers.conf with default_ulimits the caller's hard limit allows, `--layers` so it
caches like `docker build`, and its blob-info cache shadowed by a tmpfs (in a private mount namespace) so
no run remembers blobs from another. Both builders start from the same busybox image (ours, saved and
pulled into buildah as a docker-archive).
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
INTERMODAL = str(Path(sys.executable).with_name("intermodal"))
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "INTERMODAL_ROOT")}
DOCKERFILE = """\
FROM docker.io/library/busybox:latest
ENV APP=/app
WORKDIR /app
COPY data/ /app/data/
RUN du -s /app/data > /app/du.txt
COPY small.txt /app/
RUN wc -c /app/small.txt > /app/wc.txt
LABEL bench=build
RUN echo done > /app/done
CMD ["cat", "/app/done"]
"""
CONTAINERS_CONF = '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'


def make_context(path: Path) -> None:
    rng = random.Random(1509)
    data = path / "data"
    data.mkdir(parents=True)
    words = [b"layer", b"image", b"build", b"cache", b"step", b"copy", b"the", b"a", b"of", b"and"]
    for i in range(40):
        size = 1_250_000 + i  # 40 x 1.25 MB = 50 MB
        text = b" ".join(rng.choices(words, k=size // 4))[:size]
        blob = rng.randbytes(size) if i % 2 else text
        (data / f"file{i:02d}.bin").write_bytes(blob)
    (path / "small.txt").write_text("small\n")
    (path / "Dockerfile").write_text(DOCKERFILE)


def change_one(path: Path, n: int) -> None:
    target = path / "data" / "file07.bin"
    blob = bytearray(target.read_bytes())
    blob[:16] = f"change {n:09d}".encode()
    target.write_bytes(bytes(blob))


def run(argv: list[str], **kw: object) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, env=kw.pop("env", ENV), **kw)  # type: ignore[call-overload]
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:6]))} … failed: {proc.stderr.decode()[-600:]}")
    return elapsed


class Intermodal:
    name = "intermodal"

    def __init__(self, work: Path, busybox: Path):
        self.work, self.busybox, self.root = work, busybox, work / "root"

    def fresh(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        run([INTERMODAL, "--root", str(self.root), "load", "-i", str(self.busybox)])

    def build(self, context: Path) -> float:
        return run([INTERMODAL, "--root", str(self.root), "build", "-q", "-t", "bench:latest", str(context)])


class Buildah:
    name = "buildah bud"

    def __init__(self, work: Path, busybox: Path):
        self.work, self.busybox = work, busybox
        work.mkdir(parents=True, exist_ok=True)
        conf = work / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.env = {**ENV, "CONTAINERS_CONF": str(conf)}

    def _argv(self, *args: str) -> list[str]:
        # Shadow the global blob-info cache, which remembers blobs even with a private --root.
        script = 'mkdir -p /var/lib/containers/cache && mount -t tmpfs tmpfs /var/lib/containers/cache && exec "$@"'
        base = ["buildah", "--root", str(self.work / "root"), "--runroot", str(self.work / "runroot")]
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *base, *args]

    def fresh(self) -> None:
        for d in ("root", "runroot"):
            if (self.work / d).exists():
                subprocess.run(["umount", "-R", str(self.work / d)], capture_output=True)
                shutil.rmtree(self.work / d, ignore_errors=True)
        pulled = subprocess.run(self._argv("pull", "-q", f"docker-archive:{self.busybox}"), env=self.env,
                                capture_output=True, text=True, check=True).stdout.split()[-1]  # fmt: skip
        run(self._argv("tag", pulled, "docker.io/library/busybox:latest"), env=self.env)

    def build(self, context: Path) -> float:
        return run(
            self._argv(
                "bud",
                "--isolation",
                "oci",
                "--runtime",
                "runc",
                "--layers",
                "-q",
                "-t",
                "bench",
                str(context),
            ),
            env=self.env,
        )


def buildah_problem(work: Path, busybox: Path) -> str:
    if not shutil.which("buildah"):
        return "buildah is not installed (apt-get install buildah)"
    probe = Buildah(work / "probe", busybox)
    ctx = work / "probe-ctx"
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM docker.io/library/busybox:latest\nRUN true\n")
    try:
        probe.fresh()
        probe.build(ctx)
    except RuntimeError as e:
        return f"buildah cannot build here: {e}"
    return ""


def measure(builder: Intermodal | Buildah, context: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"cold": [], "noop": [], "changed": []}
    for _ in range(RUNS):
        builder.fresh()
        out["cold"].append(builder.build(context))
    for _ in range(RUNS):
        out["noop"].append(builder.build(context))
    for n in range(RUNS):
        change_one(context, n + 1000 * len(builder.name))
        out["changed"].append(builder.build(context))
    return out


def fmt(samples: list[float]) -> str:
    return f"{statistics.median(samples):6.2f} s ({min(samples):.2f}-{max(samples):.2f})"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-build-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        boot = work / "boot"
        run([INTERMODAL, "--root", str(boot), "image", "bootstrap", "busybox"])
        busybox = work / "busybox.tar"
        run([INTERMODAL, "--root", str(boot), "save", "-o", str(busybox), "busybox"])
        results: dict[str, dict[str, list[float]]] = {}
        builders: list[Intermodal | Buildah] = [Intermodal(work / "im", busybox)]
        why = buildah_problem(work / "buildah-probe", busybox)
        if why:
            print(f"skipping buildah: {why}")
        else:
            builders.append(Buildah(work / "buildah", busybox))
        for builder in builders:
            context = work / f"ctx-{builder.name.split()[0]}"
            make_context(context)
            results[builder.name] = measure(builder, context)
        print(f"\nbuild: 10-step Dockerfile, 50 MB COPY context, medians of {RUNS} (min-max)")
        print(f"{'case':34} " + " ".join(f"{name:>26}" for name in results) + "   ratio")
        for case, label in (("cold", "(a) cold build"), ("noop", "(b) no-op rebuild (all cached)"),
                            ("changed", "(c) one copied file changed")):  # fmt: skip
            row = [results[name][case] for name in results]
            ratio = ""
            if len(row) == 2:
                ratio = f"{statistics.median(row[0]) / statistics.median(row[1]):6.2f}x"
            print(f"{label:34} " + " ".join(f"{fmt(r):>26}" for r in row) + f"   {ratio}")


if __name__ == "__main__":
    main()
