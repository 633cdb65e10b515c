"""The VM runtime called in-process by the engine for foreground runs: the same operations as
`intermodal-vm-runtime` on the same state directory, without three more interpreter start-ups (create,
start, delete: ≈0.1 s each). conmon still gets the binary for detached containers."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from intermodal.errors import IntermodalError, NotFound
from intermodal.isolation.microvm import BUNDLE_INFO, lifecycle
from intermodal.isolation.oci import GuestProcess, OciRuntime, runtime_error
from intermodal.isolation.stdio import inherited_stdio


class VmRuntime(OciRuntime):
    def create(
        self,
        cid: str,
        bundle: Path,
        pid_file: Path,
        stdio: Sequence[int] | None = None,
        console_socket: Path | None = None,
    ) -> None:
        """The shim is forked from here and keeps fds 0-2: they become `stdio` for the fork."""
        self.state_root.mkdir(parents=True, exist_ok=True)
        try:
            with inherited_stdio(stdio):
                lifecycle.create(
                    self.state_root, cid, bundle, str(pid_file), str(console_socket or "") or None
                )
        except (IntermodalError, OSError) as e:
            raise runtime_error(self.name, "create", str(e)) from None

    def start(self, cid: str) -> None:
        try:
            lifecycle.start(self.state_root, cid)
        except (IntermodalError, OSError) as e:
            raise runtime_error(self.name, "start", str(e)) from None

    def kill(self, cid: str, sig: int | str, all_processes: bool = False) -> None:
        from intermodal.runtime.container import parse_signal

        with contextlib.suppress(IntermodalError, OSError):
            lifecycle.kill(self.state_root, cid, parse_signal(sig))

    def delete(self, cid: str, force: bool = True) -> None:
        if not (self.state_root / cid).exists():
            return
        with contextlib.suppress(NotFound):
            lifecycle.delete(self.state_root, cid, force)

    def files_changed(self, cid: str) -> None:
        with contextlib.suppress(IntermodalError, OSError):
            lifecycle.drop_guest_caches(self.state_root, cid)

    def oom_killed(self, cid: str, bundle: Path) -> bool:
        try:
            return bool(json.loads((bundle / BUNDLE_INFO).read_text()).get("OOMKilled"))
        except (OSError, ValueError):
            return False

    def guest_processes(self, cid: str) -> list[GuestProcess] | None:
        try:
            return lifecycle.guest_processes(self.state_root, cid)
        except (IntermodalError, OSError) as e:
            raise runtime_error(self.name, "ps", str(e)) from None

    def state(self, cid: str) -> dict[str, Any] | None:
        try:
            return lifecycle.state(self.state_root, cid)
        except (IntermodalError, OSError):
            return None
