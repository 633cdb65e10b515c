"""Name resolution on user networks with Debian's aardvark-dns (Podman's resolver).

Chosen over an embedded resolver because a daemonless engine has no process of its own that outlives the
CLI: aardvark-dns daemonizes, answers A queries for the names and aliases of the containers on each network
on that network's gateway address, forwards other names to the host's resolvers, and reloads its
configuration on SIGHUP, so containers coming and going update every container's view at once (an /etc/hosts
scheme would have to rewrite the bind-mounted file of every running container). It exits by itself on a
SIGHUP that finds no configuration left.

Config: one file per network named after it; first line the listen address, then
`<container id> <ipv4> <ipv6> <name,alias,…>` per container."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterable
from pathlib import Path

from intermodal.errors import NotFound
from intermodal.fsutil import atomic_write_bytes

CANDIDATES = ("/usr/lib/podman/aardvark-dns", "/usr/libexec/podman/aardvark-dns")


def binary() -> str:
    found = shutil.which("aardvark-dns") or next((c for c in CANDIDATES if os.path.exists(c)), None)
    if not found:
        raise NotFound("aardvark-dns not found: install Debian's aardvark-dns package for name resolution")
    return found


class Resolver:
    """The aardvark-dns instance of one engine root, configured from `config_dir`."""

    def __init__(self, config_dir: Path):
        self.dir = config_dir

    def _pid(self) -> int | None:
        try:
            pid = int((self.dir / "aardvark.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                alive = b"aardvark-dns" in f.read()
        except OSError:
            return None
        return pid if alive else None

    def update(self, network: str, gateway: str, entries: Iterable[tuple[str, str, list[str]]]) -> None:
        """Publish `network`'s (container id, address, names) records; no records = drop the network."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / network
        lines = [f"{cid} {address}  {','.join(names)}" for cid, address, names in entries]
        if lines:
            atomic_write_bytes(path, ("\n".join([gateway, *lines]) + "\n").encode(), durable=False)
        else:
            path.unlink(missing_ok=True)
        self._reload()

    def _reload(self) -> None:
        import subprocess

        pid = self._pid()
        configured = any(p.name != "aardvark.pid" and not p.name.startswith(".") for p in self.dir.iterdir())
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)  # with no config left it exits
            return
        if configured:
            subprocess.run(
                [binary(), "--config", str(self.dir), "-p", "53", "run"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )  # fmt: skip  (it forks into the background once it listens)
