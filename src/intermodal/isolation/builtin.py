"""Our own runtime called in-process: the same operations as `intermodal-runtime` (and so the same bundle
and state directory), without starting another Python interpreter for each of create, start and delete.
conmon still gets the `intermodal-runtime` binary for detached containers."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from intermodal.errors import IntermodalError, NotFound
from intermodal.isolation.oci import OciRuntime, runtime_error
from intermodal.isolation.stdio import inherited_stdio


class BuiltinRuntime(OciRuntime):
    def _runtime(self) -> Any:
        from intermodal.runtime.container import Runtime

        return Runtime(self.state_root)

    def create(
        self,
        cid: str,
        bundle: Path,
        pid_file: Path,
        stdio: Sequence[int] | None = None,
        console_socket: Path | None = None,
    ) -> None:
        """The forked container init inherits fds 0-2: they become `stdio` for the fork."""
        self.state_root.mkdir(parents=True, exist_ok=True)
        try:
            with inherited_stdio(stdio):
                self._runtime().create(cid, bundle, pid_file=pid_file, console_socket=console_socket)
        except (IntermodalError, OSError) as e:
            raise runtime_error(self.name, "create", str(e)) from None

    def start(self, cid: str) -> None:
        self._runtime().start(cid)

    def kill(self, cid: str, sig: int | str, all_processes: bool = False) -> None:
        with contextlib.suppress(IntermodalError):
            self._runtime().kill(cid, sig, all_processes=all_processes)

    def update(self, cid: str, resources: dict[str, Any]) -> None:
        try:
            self._runtime().update(cid, resources)
        except (IntermodalError, OSError) as e:
            raise runtime_error(self.name, "update", str(e)) from None

    def delete(self, cid: str, force: bool = True) -> None:
        if not (self.state_root / cid).exists():
            return
        with contextlib.suppress(NotFound):
            self._runtime().delete(cid, force=force)

    def state(self, cid: str) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = self._runtime().state(cid)
        except IntermodalError:
            return None
        return state
