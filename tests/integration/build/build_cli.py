"""The `intermodal` CLI on one state root for build tests, plus readers for plain progress and the store."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from intermodal.image.layer import open_decompressed
from intermodal.image.store import ImageStore

INTERMODAL = str(Path(sys.executable).with_name("intermodal"))
_STEP = re.compile(r"^#(\d+) \[(.*?)\] (.*)$")


class BuildCli:
    def __init__(self, root: Path):
        self.root = root

    def __call__(
        self, *args: str, check: bool = True, input: bytes | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "INTERMODAL_ROOT"}
        proc = subprocess.run(
            [INTERMODAL, "--root", str(self.root), *args],
            capture_output=True, env=env, input=input, timeout=300, cwd=cwd,
        )  # fmt: skip
        result = subprocess.CompletedProcess(
            proc.args,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"intermodal {' '.join(args)} exited {proc.returncode}: {result.stderr}")
        return result

    def build(self, context: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self("build", "--progress", "plain", *args, str(context), check=check)

    def image_id(self, proc: subprocess.CompletedProcess[str]) -> str:
        return self("image", "inspect", "-f", "{{.Id}}", proc.stdout.split()[-1]).stdout.strip()

    @property
    def store(self) -> ImageStore:
        return ImageStore(self.root / "images")


def steps(stderr: str) -> dict[str, str]:
    """Plain progress → {"RUN echo hi": "CACHED" | "DONE" | "ERROR"} (instruction text without the [n/N])."""
    names: dict[str, str] = {}
    status: dict[str, str] = {}
    for line in stderr.splitlines():
        m = _STEP.match(line)
        if m:
            names[m[1]] = m[3]
            continue
        num, _, rest = line.partition(" ")
        vid = num.lstrip("#")
        if vid in names and rest.split(" ")[0] in ("CACHED", "DONE", "ERROR:"):
            status[names[vid]] = rest.split(" ")[0].rstrip(":")
    return status


def blob_texts(store: ImageStore) -> list[bytes]:
    """Every blob in the content store (configs, manifests, layers), layers decompressed."""
    out = []
    for digest in store.content:
        path = store.content.path(digest)
        head = path.read_bytes()[:4]
        kind = "gzip" if head[:2] == b"\x1f\x8b" else "zstd" if head == b"\x28\xb5\x2f\xfd" else ""
        with open(path, "rb") as f:
            out.append(open_decompressed(f, kind).read())
    return out
