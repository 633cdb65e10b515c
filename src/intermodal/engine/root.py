"""Where the engine keeps its state: `--root`, else `$INTERMODAL_ROOT`, else /var/lib/intermodal."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_ROOT = Path("/var/lib/intermodal")


def resolve_root(option: str | None) -> Path:
    return Path(option or os.environ.get("INTERMODAL_ROOT") or DEFAULT_ROOT).absolute()
