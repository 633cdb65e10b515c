"""`images` latency with 100 images in the store, against `docker images` and `podman images` holding the
same 100 images (imported from the same tiny rootfs tarballs) in the same run."""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import tarfile
import tempfile
from pathlib import Path

from bench.containers import ENV, INTERMODAL, docker, summary, timed

COUNT = int(os.environ.get("BENCH_IMAGES", "100"))


def tarball(i: int) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = f"image {i}\n".encode()
        info = tarfile.TarInfo(f"etc/image-{i}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    with tempfile.TemporaryDirectory(prefix="intermodal-bench-images-") as tmp:
        work = Path(tmp)
        im = [INTERMODAL, "--root", str(work / "root")]
        tarballs = []
        for i in range(COUNT):
            path = work / f"img{i}.tar"
            path.write_bytes(tarball(i))
            tarballs.append(path)
            subprocess.run(
                [*im, "import", str(path), f"bench/img{i}:latest"],
                check=True,
                stdout=subprocess.DEVNULL,
                env=ENV,
            )
        rows = [
            ("intermodal images", summary(timed([*im, "images"])), statistics.median(timed([*im, "images"])))
        ]
        archive = work / "unused.tar"
        archive.write_bytes(b"")
        run_docker, stop = docker(work, archive, load=False)
        try:
            if isinstance(run_docker, str):
                rows.append(("docker images", f"skipped: {run_docker}", None))
            else:
                client = ["/usr/bin/docker", "-H", f"unix://{work / 'docker.sock'}"]
                for i, path in enumerate(tarballs):
                    subprocess.run(
                        [*client, "import", str(path), f"bench/img{i}:latest"],
                        check=True,
                        stdout=subprocess.DEVNULL,
                    )
                samples = timed([*client, "images"])
                rows.append(("docker images", summary(samples), statistics.median(samples)))
        finally:
            stop()
        ours = rows[0][2]
        table = Table(title=f"`images` with {COUNT} images (median of 20, min-max)")
        table.add_column("command")
        table.add_column("time")
        table.add_column("intermodal / this")
        for name, text, median in rows:
            table.add_row(name, text, f"{ours / median:.2f}x" if median and ours else "")
        Console().print(table)
