"""RUN: one container per step on the step's overlay rootfs, through the OCI runtime, with this process as
its subreaper (``containers.attach.run_foreground``), no network, and the step's ``--mount``s.

Mounts never reach the layer: cache dirs and secrets are bind mounts, and the empty files/dirs the runtime
creates as mount points in the upper dir are removed after the step, as BuildKit removes its mount stubs.
"""

from __future__ import annotations

import json
import os
import posixpath
import secrets
import stat
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intermodal.build.dockerfile import Mount
from intermodal.engine.build.cache import BuildCache
from intermodal.engine.build.fs import StepFs
from intermodal.engine.containers.attach import run_foreground
from intermodal.engine.containers.userdb import resolve_user
from intermodal.errors import IntermodalError, InvalidArgument
from intermodal.isolation.oci import open_runtime
from intermodal.runtime import spec as oci
from intermodal.runtime.rootfs import open_in_root

HOSTNAME = "buildkitsandbox"  # what BuildKit's RUN containers are called


class RunFailed(IntermodalError):
    """A RUN command exited non-zero; `docker build` exits 1 then."""

    exit_code = 1


@dataclass(frozen=True)
class Secret:
    """``--secret id=…,src=…`` (a file) or ``--secret id=…,env=…`` (an environment variable)."""

    id: str
    src: str = ""
    env: str = ""

    def value(self) -> bytes:
        if self.env:
            if self.env not in os.environ:
                raise InvalidArgument(f"secret {self.id}: environment variable {self.env} is not set")
            return os.environ[self.env].encode()
        try:
            with open(self.src, "rb") as f:
                return f.read()
        except OSError as e:
            raise InvalidArgument(f"secret {self.id}: cannot read {self.src}: {e.strerror}") from None


def parse_secret(spec: str) -> Secret:
    """Docker's ``--secret`` syntax: id=…[,src=…|source=…][,env=…][,type=file|env]."""
    fields = dict(part.partition("=")[::2] for part in spec.split(",") if part)
    sid = fields.get("id", "")
    src = fields.get("src") or fields.get("source") or ""
    env = fields.get("env", "")
    if fields.get("type") == "env" and not env:
        env, src = src or sid, ""
    if not sid:
        raise InvalidArgument(f"invalid --secret {spec!r}: give id=NAME and src=FILE or env=VARIABLE")
    if not src and not env:
        env = sid if sid in os.environ else ""
        src = "" if env else sid
    return Secret(sid, src, env)


@dataclass
class RunMounts:
    """The OCI mounts of one RUN and what must be undone: stubs in the upper dir, locks, temp files."""

    oci: list[dict[str, Any]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)


def prepare_mounts(
    mounts: list[Mount],
    *,
    workdir: str,
    cache: BuildCache,
    secrets_by_id: Mapping[str, Secret],
    bind_root: Callable[[Mount], str],
    scratch: Path,
    stack: ExitStack,
) -> RunMounts:
    """Turn the step's ``--mount``s into OCI mounts. ``bind_root`` gives the host dir a bind or cache
    ``from=`` refers to (the context or a stage mounted read-only); ``stack`` holds locks until the end."""
    out = RunMounts()
    for m in mounts:
        target = posixpath.normpath(posixpath.join(workdir or "/", m.target)) if m.target else ""
        if m.type == "cache":
            mid = m.id or target
            if m.sharing in ("locked", "private"):
                stack.enter_context(cache.mount_lock(mid))  # private is served as locked: one user at a time
            path = cache.mount_dir(mid)
            if not any(path.iterdir()):
                os.chmod(path, m.mode if m.mode is not None else 0o755)
                os.chown(path, m.uid or 0, m.gid or 0)
            out.oci.append(oci.bind_mount(str(path), target, readonly=m.readonly))
        elif m.type == "secret":
            sid = m.id or posixpath.basename(m.target)
            secret = secrets_by_id.get(sid)
            if secret is None:
                if m.required:
                    raise InvalidArgument(
                        f"secret {sid} is required but was not given with --secret id={sid}"
                    )
                continue
            if m.env:
                out.env[m.env] = secret.value().decode(errors="replace")
                if not m.target:
                    continue
            target = target or f"/run/secrets/{sid}"
            # A private copy with the mount's owner and mode; removed with the step's scratch dir.
            copy = scratch / f"secret-{secrets.token_hex(8)}"
            fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)
            try:
                os.write(fd, secret.value())
                os.fchown(fd, m.uid or 0, m.gid or 0)
                os.fchmod(fd, m.mode if m.mode is not None else 0o400)
            finally:
                os.close(fd)
            out.oci.append(oci.bind_mount(str(copy), target, readonly=True))
        elif m.type == "bind":
            root = bind_root(m)
            source = _resolve(root, m.source or "/")
            # Writes to a bind mount are discarded in BuildKit; a read-only mount keeps the context safe.
            out.oci.append(oci.bind_mount(source, target, readonly=True))
        elif m.type == "tmpfs":
            opts = ["nosuid", "nodev", *([f"size={m.size}"] if m.size else [])]
            out.oci.append({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": opts})
        else:
            raise InvalidArgument(f"RUN --mount=type={m.type} is not supported by this builder")
        out.targets.append(out.oci[-1]["destination"])
    return out


def _resolve(root: str, path: str) -> str:
    try:
        fd = open_in_root(root, path)
    except OSError:
        raise InvalidArgument(f"bind mount source {path} does not exist") from None
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


@contextmanager
def mount_stubs(fs: StepFs, targets: list[str]) -> Iterator[None]:
    """Remember which mount targets do not exist yet; after the step remove the stubs the runtime made
    (and directories that were only copied up because a stub went into them) from the upper dir."""
    rootfs = fs.rootfs
    plans: list[tuple[list[str], list[tuple[str, tuple[int, int, int]]]]] = []
    for target in targets:
        parts = [p for p in target.split("/") if p]
        created: list[str] = []
        existing: list[tuple[str, tuple[int, int, int]]] = []
        for i in range(len(parts)):
            rel = "/".join(parts[: i + 1])
            st = _stat_in(rootfs, rel)
            if st is None:
                created.append(rel)
            elif not created:
                existing.append((rel, (st.st_mode, st.st_uid, st.st_gid)))
        if created:
            plans.append((created, existing))
    yield

    def cleanup() -> None:
        upper = str(fs.paths.upper)
        for created, existing in plans:
            for rel in reversed(created):
                _remove_if_empty(os.path.join(upper, rel))
            for rel, meta in reversed(existing):
                path = os.path.join(upper, rel)
                st = _lstat(path)
                if st is None or not stat.S_ISDIR(st.st_mode) or (st.st_mode, st.st_uid, st.st_gid) != meta:
                    break
                if os.listdir(path) or _opaque(path):
                    break
                os.rmdir(path)

    fs.after_unmount.append(cleanup)


def _stat_in(rootfs: str, rel: str) -> os.stat_result | None:
    try:
        fd = open_in_root(rootfs, rel)
    except OSError:
        return None
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _remove_if_empty(path: str) -> None:
    st = _lstat(path)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode) and not os.listdir(path):
        os.rmdir(path)
    elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
        os.unlink(path)


def run_step(
    fs: StepFs,
    *,
    args: list[str],
    env: Mapping[str, str],
    user: str,
    workdir: str,
    mounts: RunMounts,
    runtime_name: str,
    state_root: Path,
    output: Callable[[bytes], None],
) -> None:
    """Run `args` in a container on the mounted step rootfs; raise RunFailed on a non-zero exit."""
    who = resolve_user(fs.rootfs, user or "0")
    environ = dict(env)
    environ.setdefault("HOME", who.home)
    environ.update(mounts.env)
    spec = oci.default_spec(
        args,
        env=environ,
        cwd=workdir or "/",
        uid=who.uid,
        gid=who.gid,
        additional_gids=who.additional_gids,
        hostname=HOSTNAME,
        rootfs=fs.rootfs,
        mounts=mounts.oci,
        cgroups_path=f"intermodal-build/{fs.paths.dir.name}",
    )
    paths = fs.paths
    paths.bundle.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(spec, f)  # 0600: a secret's env= value may be in it; the step dir is removed afterwards
    runtime = open_runtime(runtime_name, state_root / "run", state_root / "bin")
    cid = f"build-{secrets.token_hex(8)}"
    with mount_stubs(fs, mounts.targets):
        try:
            code = run_foreground(
                runtime, cid, paths, interactive=False, terminal=False,
                on_started=lambda _pid: None, output=lambda _stream, data: output(data),
            )  # fmt: skip
        finally:
            runtime.delete(cid)
            paths.config.unlink(missing_ok=True)
    if code != 0:
        raise RunFailed(f'process "{" ".join(args)}" did not complete successfully: exit code: {code}')
