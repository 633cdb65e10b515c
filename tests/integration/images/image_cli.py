"""The `intermodal` CLI bound to one state root, for image-command tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

INTERMODAL = str(Path(sys.executable).with_name("intermodal"))


class Cli:
    def __init__(self, root: Path):
        self.root = root

    def __call__(
        self, *args: str, check: bool = True, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        env = {k: v for k, v in os.environ.items() if k != "INTERMODAL_ROOT"}
        proc = subprocess.run(
            [INTERMODAL, "--root", str(self.root), *args],
            capture_output=True,
            env=env,
            input=input,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"intermodal {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()}"
            )
        return proc

    def text(self, *args: str) -> str:
        return self(*args).stdout.decode()
