"""Layer write/apply throughput against GNU tar piped through gzip(1) and zstd(1).

Builds a deterministic ~200 MB tree (many small text files, some medium files, a few large compressible and
incompressible ones) on tmpfs when there is room (so the disk's writeback does not drown the comparison),
then times five runs of each operation (three for the gzip writes, which alone would take minutes) and
prints median (min-max) seconds, MB/s of tree content, and our speed relative to the tool's. Levels match on both sides: gzip -6 (gzip(1)'s default,
and what write_layer uses, like Docker) and zstd -3. Applies read the same blob (the one write_layer made)
on both sides; tar -x runs as root, so it restores owners and modes too, but not xattrs. Our writes also
hash the stream twice (digest and diff ID), which tar | gzip does not do at all.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from intermodal.image.layer import apply_layer, open_decompressed, write_layer

RUNS = 5
GZIP_WRITE_RUNS = 3  # deflate at level 6 runs at ~15 MB/s per core: 2 x 5 runs would blow the time budget
SEED = 20240601
WORDS = [
    "layer", "image", "container", "rootfs", "overlay", "digest", "manifest", "config", "registry", "blob",
    "the", "a", "of", "and", "to", "in", "is", "for", "on", "with", "as", "by", "at", "from", "or",
    "namespace", "cgroup", "mount", "socket", "process", "signal", "kernel", "device", "network", "volume",
]  # fmt: skip
TOOLS = {"gzip": ("gzip -6", "gzip -dc"), "zstd": ("zstd -3 -q", "zstd -dc -q"), "": (None, None)}


def _text(rng: random.Random, size: int) -> bytes:
    """Word salad with line breaks: compresses about as well as source code or config files."""
    out = bytearray()
    while len(out) < size:
        line = " ".join(rng.choices(WORDS, k=rng.randint(4, 14)))
        out += line.encode() + (b";\n" if rng.random() < 0.3 else b"\n")
    return bytes(out[:size])


def build_tree(root: Path) -> int:
    """Write the tree; return its regular-file bytes."""
    rng = random.Random(SEED)
    total = 0
    for i in range(20_000):  # small text files across 200 directories: ~40 MB
        d = root / "src" / f"pkg{i % 200:03d}"
        d.mkdir(parents=True, exist_ok=True)
        data = _text(rng, rng.randint(400, 3600))
        (d / f"file{i:05d}.txt").write_bytes(data)
        total += len(data)
    (root / "lib").mkdir()
    for i in range(40):  # medium: ~40 MB, half text, half binary-like (random bytes with long zero runs)
        if i % 2:
            data = b"".join(rng.randbytes(256) + bytes(768) for _ in range(1024))
        else:
            data = _text(rng, 1 << 20)
        (root / "lib" / f"lib{i:02d}.so").write_bytes(data)
        total += len(data)
    (root / "data").mkdir()
    for i in range(2):  # large: 2 x 30 MB compressible, 2 x 30 MB incompressible
        text, noise = _text(rng, 30 << 20), rng.randbytes(30 << 20)
        (root / "data" / f"log{i}.txt").write_bytes(text)
        (root / "data" / f"random{i}.bin").write_bytes(noise)
        total += len(text) + len(noise)
    return total


def measure(
    fn: Callable[[], object], reset: Callable[[], object] | None = None, runs: int = RUNS
) -> list[float]:
    times = []
    for _ in range(runs):
        if reset:
            reset()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def shell(command: str) -> Callable[[], object]:
    return lambda: subprocess.run(["sh", "-c", command], check=True)


def scratch_dir() -> Path:
    """tmpfs if it has room for the tree, the blobs and one unpacked copy (~1 GB), else the temp dir."""
    shm = Path("/dev/shm")
    if shm.is_dir() and (st := os.statvfs(shm)).f_bavail * st.f_frsize > 2 << 30:
        return Path(tempfile.mkdtemp(prefix="intermodal-bench-layers-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="intermodal-bench-layers-"))


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 120))
    work = scratch_dir()
    try:
        tree, out, dst = work / "tree", work / "out", work / "dst"
        tree.mkdir()
        out.mkdir()
        console.print(f"building the benchmark tree in {work} ...")
        size = build_tree(tree)
        mb = size / 1e6

        def fresh_dst() -> None:
            shutil.rmtree(dst, ignore_errors=True)
            dst.mkdir()

        rows: list[tuple[str, list[float], str, list[float]]] = []
        sizes: dict[str, tuple[int, int]] = {}
        for compression, (compress, decompress) in TOOLS.items():
            label = compression or "none"
            blob = out / f"ours.{label}"

            def ours_write(blob: Path = blob, compression: str = compression) -> None:
                with open(blob, "wb") as f:
                    write_layer(f, tree, compression=compression)

            tool_blob = out / f"tool.{label}"
            pipe = f" | {compress}" if compress else ""
            tool_write = shell(f"tar -cf - -C {tree} .{pipe} > {tool_blob}")
            runs = GZIP_WRITE_RUNS if compression == "gzip" else RUNS
            rows.append(
                (
                    f"write {label}",
                    measure(ours_write, runs=runs),
                    f"tar -c{pipe}",
                    measure(tool_write, runs=runs),
                )
            )
            sizes[label] = (blob.stat().st_size, tool_blob.stat().st_size)

            def ours_apply(blob: Path = blob, compression: str = compression) -> None:
                with open(blob, "rb") as f:
                    apply_layer(open_decompressed(f, compression), dst)

            tool_apply = shell(
                f"{decompress} {blob} | tar -xf - -C {dst}" if decompress else f"tar -xf {blob} -C {dst}"
            )
            tool_name = f"{decompress.split()[0]} -dc | tar -x" if decompress else "tar -x"
            rows.append(
                (f"apply {label}", measure(ours_apply, fresh_dst), tool_name, measure(tool_apply, fresh_dst))
            )

        table = Table(title=f"Layers: {mb:.0f} MB tree in {work.parent}, median (min-max) seconds")
        for column in (
            "operation",
            "runs",
            "ours s",
            "ours MB/s",
            "tool",
            "tool s",
            "tool MB/s",
            "ours/tool speed",
        ):
            table.add_column(column, justify="left" if column in ("operation", "tool") else "right")
        for name, ours, tool_name, tool in rows:
            o, t = statistics.median(ours), statistics.median(tool)
            table.add_row(
                name,
                str(len(ours)),
                f"{o:.2f} ({min(ours):.2f}-{max(ours):.2f})",
                f"{mb / o:.0f}",
                tool_name,
                f"{t:.2f} ({min(tool):.2f}-{max(tool):.2f})",
                f"{mb / t:.0f}",
                f"{t / o:.2f}x",
            )
        console.print(table)
        console.print(
            "compressed sizes (ours / tool): "
            + ", ".join(f"{label} {a / 1e6:.1f} / {b / 1e6:.1f} MB" for label, (a, b) in sizes.items())
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
