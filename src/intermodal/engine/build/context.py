"""What a COPY or ADD reads: sources picked from a root (the build context, a stage's or an image's
filesystem), the digest of their content for the cache key, and the metadata cache that makes that digest
cheap when nothing changed.

Sources are resolved inside their root the way chroot(2) would (``runtime.rootfs.open_in_root``), so a
symlink in the context or in a stage can never make COPY read a host file. Only the local context is
filtered by ``.dockerignore``: BuildKit applies it to the context transfer, not to stages.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from intermodal.build.dockerignore import Matcher, go_clean, walk
from intermodal.errors import InvalidArgument
from intermodal.fsutil import atomic_write_bytes, read_json
from intermodal.runtime.rootfs import open_in_root

_CHUNK = 1 << 20
_GLOB = frozenset("*?[")


@dataclass(frozen=True)
class Entry:
    """One file system entry to copy: where it is on the host and where it goes below the destination."""

    path: str  # host path, inside the root it was selected from
    rel: str  # root-relative path (what .dockerignore and the metadata cache see)
    dest: str  # path relative to the copy's destination directory ("" is the destination itself)
    st: os.stat_result


class FileIndex:
    """Per-context metadata cache: path -> (size, mtime_ns, ctime_ns, inode, sha256).

    A file whose size, mtime, ctime and inode are unchanged since the last build is not read again to hash
    it (the issue's "context transfer" rule; ctime is added because mtime can be set back by anyone, ctime
    cannot). ``path`` None keeps the cache in memory only (a tar context unpacked into a temporary dir).
    """

    def __init__(self, path: Path | None):
        self.path = path
        self._entries: dict[str, list[int | str]] = (read_json(path, {}) if path else {}) or {}
        self._dirty = False
        self.hashed = 0  # bytes read to hash, for the tests and the benchmark

    def sha256(self, rel: str, host_path: str, st: os.stat_result) -> str:
        meta: list[int | str] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        known = self._entries.get(rel)
        if known is not None and known[:4] == meta:
            return str(known[4])
        digest = file_sha256(host_path)
        self.hashed += st.st_size
        self._entries[rel] = [*meta, digest]
        self._dirty = True
        return digest

    def save(self) -> None:
        if self.path is not None and self._dirty:
            data = json.dumps(self._entries, separators=(",", ":")).encode()
            atomic_write_bytes(self.path, data, durable=False)  # a lost cache only means hashing again
            self._dirty = False


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        while chunk := os.read(fd, _CHUNK):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def index_path(cache_dir: Path, context_dir: str) -> Path:
    """One metadata cache file per context directory (by its real path)."""
    key = hashlib.sha256(os.path.realpath(context_dir).encode()).hexdigest()[:32]
    return cache_dir / f"{key}.json"


def resolve_in(root: str, rel: str) -> str | None:
    """The host path of `rel` resolved inside `root` (symlinks followed as in a chroot), or None."""
    try:
        fd = open_in_root(root, rel)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise InvalidArgument(f"cannot resolve {rel}: {e.strerror or e}") from None
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def clean_source(source: str, fail: Callable[[str], Exception]) -> str:
    """A COPY source as a root-relative path; `..` out of the context is an error (Docker's classic rule)."""
    cleaned = go_clean("/" + source) if source.startswith("/") else go_clean(source)
    if cleaned == ".." or cleaned.startswith("../"):
        raise fail(f"{source}: forbidden path outside the build context")
    return cleaned.lstrip("/") or "."


def _go_glob(pattern: str) -> str:
    """Go's filepath.Match negates classes with `[^`; fnmatch spells it `[!`."""
    return pattern.replace("[^", "[!")


def select(
    root: str, source: str, matcher: Matcher, fail: Callable[[str], Exception]
) -> list[tuple[str, str]]:
    """The (host path, root-relative path) pairs one COPY source names, globs expanded, symlinks resolved.

    A wildcard that matches nothing and a path that does not exist (or is ignored) are errors, as in BuildKit.
    """
    rel = clean_source(source, fail)
    parts = [] if rel == "." else rel.split("/")
    if not any(c in _GLOB for c in rel):
        host = resolve_in(root, rel)
        if host is None or matcher.excluded(_root_rel(root, host)):
            raise fail(f"{source}: not found in the build context (or excluded by .dockerignore)")
        return [(host, _root_rel(root, host))]
    found: list[tuple[str, str]] = [(os.path.realpath(root), "")]
    for part in parts:
        nxt: list[tuple[str, str]] = []
        for host, prefix in found:
            if not any(c in _GLOB for c in part):
                child = resolve_in(root, f"{prefix}/{part}" if prefix else part)
                if child is not None:
                    nxt.append((child, _root_rel(root, child)))
                continue
            if not os.path.isdir(host):
                continue
            for name in sorted(os.listdir(host)):
                if fnmatch.fnmatchcase(name, _go_glob(part)):
                    child = resolve_in(root, f"{prefix}/{name}" if prefix else name)
                    if child is not None:
                        nxt.append((child, _root_rel(root, child)))
        found = nxt
    found = [(h, r) for h, r in found if not matcher.excluded(r)]
    if not found:
        raise fail(f"{source}: no source files were specified (the pattern matches nothing)")
    return found


def _root_rel(root: str, host: str) -> str:
    rel = os.path.relpath(host, os.path.realpath(root))
    return "" if rel == "." else rel


def entries(root: str, host: str, rel: str, matcher: Matcher, *, contents: bool) -> Iterator[Entry]:
    """Everything a selected source brings: a file itself, or (with `contents`) what is below a directory.

    Excluded paths are skipped, symlinks are entries (never followed) and special files are left out.
    """
    st = os.lstat(host)
    if not stat.S_ISDIR(st.st_mode):
        yield Entry(host, rel, "", st)
        return
    if not contents:
        yield Entry(host, rel, "", st)
    real_root = os.path.realpath(root)
    strip = len(rel) + 1 if rel else 0
    for sub in walk(real_root, matcher, start=rel):
        path = os.path.join(real_root, sub)
        sub_st = os.lstat(path)
        if stat.S_ISREG(sub_st.st_mode) or stat.S_ISDIR(sub_st.st_mode) or stat.S_ISLNK(sub_st.st_mode):
            yield Entry(path, sub, sub[strip:], sub_st)


def content_digest(items: list[tuple[Entry, str]], index: FileIndex | None) -> str:
    """The key material of a copy: destination names, types, modes, link targets and file bytes.

    mtimes are left out on purpose (touching a file must not invalidate the cache), and so is the source's
    ownership: COPY writes 0:0 or the --chown owner, never the context's owner.
    """
    h = hashlib.sha256()
    for entry, dest in items:
        st = entry.st
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISREG(st.st_mode):
            sha = index.sha256(entry.rel, entry.path, st) if index else file_sha256(entry.path)
            h.update(f"f {dest} {mode:o} {sha}\n".encode())
        elif stat.S_ISLNK(st.st_mode):
            h.update(f"l {dest} {os.readlink(entry.path)}\n".encode())
        else:
            h.update(f"d {dest} {mode:o}\n".encode())
    return h.hexdigest()
