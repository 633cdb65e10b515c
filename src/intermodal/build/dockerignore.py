"""``.dockerignore``: Docker's pattern rules (moby/patternmatcher) and the context walk that uses them.

Patterns are ``filepath.Clean``-ed, a leading ``/`` is dropped, ``*`` and ``?`` stop at ``/``, ``**``
spans any number of directories, and the *last* matching pattern wins, so ``!`` lines re-include.
A pattern that matches a directory also matches everything below it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from intermodal.errors import InvalidArgument

__all__ = ["Matcher", "context_patterns", "go_clean", "read_dockerignore", "read_patterns", "walk"]


def go_clean(path: str) -> str:
    """Go's ``path/filepath.Clean`` (posixpath.normpath keeps a leading ``//``; Go does not)."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    cleaned = "/".join(out)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def read_patterns(text: str) -> list[str]:
    """Parse a .dockerignore file the way Docker's ``ignorefile.ReadAll`` does."""
    patterns: list[str] = []
    for lineno, line in enumerate(text.split("\n")):
        if lineno == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue  # only a '#' in the first column starts a comment
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


@dataclass(frozen=True)
class _Pattern:
    text: str  # cleaned, without the '!'
    exclusion: bool
    kind: str  # exact | prefix | suffix | regexp
    regex: re.Pattern[str] | None

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regex is not None
        return self.regex.match(path) is not None


_REGEX_SPECIAL = frozenset(".+()|{}$")


def _compile(text: str, exclusion: bool) -> _Pattern:
    """patternmatcher's Pattern.compile: cheap exact/prefix/suffix checks, a regex otherwise."""
    out = ["^"]
    kind = "exact"
    i, n = 0, len(text)
    first = True
    while i < n:
        ch = text[i]
        i += 1
        if ch == "*":
            if i < n and text[i] == "*":
                i += 1
                if i < n and text[i] == "/":
                    i += 1  # "**/" is "**"
                if i == n:
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        out.append(".*")
                        kind = "regexp"
                else:
                    out.append("(.*/)?")
                    kind = "regexp"
                if first:
                    kind = "suffix"
            else:
                out.append("[^/]*")
                kind = "regexp"
        elif ch == "?":
            out.append("[^/]")
            kind = "regexp"
        elif ch in _REGEX_SPECIAL:
            out.append("\\" + ch)
        elif ch == "\\":
            if i < n:
                out.append("\\" + text[i])
                i += 1
                kind = "regexp"
            else:
                out.append("\\\\")
        elif ch in "[]":
            out.append(ch)
            kind = "regexp"
        else:
            out.append(ch)
        first = False
    regex = None
    if kind == "regexp":
        try:
            regex = re.compile("".join(out) + r"\Z")
        except re.error as e:
            raise InvalidArgument(f".dockerignore: bad pattern {text!r}: {e}") from None
    return _Pattern(text, exclusion, kind, regex)


class Matcher:
    """Decides whether a context path is excluded (moby ``MatchesOrParentMatches``)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in patterns:
            p = raw.strip()
            if not p:
                continue
            p = go_clean(p)
            exclusion = p.startswith("!")
            if exclusion:
                if len(p) == 1:
                    raise InvalidArgument('.dockerignore: illegal exclusion pattern: "!"')
                p = p[1:]
            self.patterns.append(_compile(p, exclusion))
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    def excluded(self, relpath: str) -> bool:
        """True when ``relpath`` (slash-separated, relative to the context) is left out of the context."""
        path = go_clean(relpath.lstrip("/"))
        if path == ".":
            return False  # the context root itself is never excluded
        parent = os.path.dirname(path) or "."
        parents = parent.split("/")
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue  # an include only matters while not excluded, an exception only once excluded
            hit = pattern.match(path)
            if not hit and parent != ".":
                hit = any(pattern.match("/".join(parents[: i + 1])) for i in range(len(parents)))
            if hit:
                matched = not pattern.exclusion
        return matched

    def may_include_below(self, reldir: str) -> bool:
        """Could an ``!`` exception re-include something under the excluded directory ``reldir``?

        moby's archiver only checks whether an exception's text starts with ``dir/``; we compare path
        components so that ``!**/keep.txt`` or ``!src/*/keep`` also keep the walk going, never less.
        """
        dirs = go_clean(reldir).split("/")
        for pattern in self.patterns:
            if pattern.exclusion and _could_match_below(pattern.text.split("/"), dirs):
                return True
        return False


def _component_matches(pattern: str, name: str) -> bool:
    return _compile(pattern, False).match(name)


def _could_match_below(pattern_parts: list[str], dirs: list[str]) -> bool:
    for i, d in enumerate(dirs):
        if i >= len(pattern_parts):
            return False  # the exception ends above this directory (and did not re-include it)
        part = pattern_parts[i]
        if "**" in part:
            return True
        if not _component_matches(part, d):
            return False
    return len(pattern_parts) > len(dirs)


def read_dockerignore(context_dir: str, dockerfile: str | None = None) -> list[str]:
    """Patterns for a build: ``<Dockerfile>.dockerignore`` next to the Dockerfile wins over the
    context's ``.dockerignore`` (BuildKit); no file means no patterns."""
    candidates = []
    if dockerfile:
        candidates.append(dockerfile + ".dockerignore")
    candidates.append(os.path.join(context_dir, ".dockerignore"))
    for path in candidates:
        try:
            with open(path, encoding="utf-8") as fh:
                return read_patterns(fh.read())
        except FileNotFoundError:
            continue
    return []


def context_patterns(patterns: Iterable[str], dockerfile: str = "Dockerfile") -> list[str]:
    """Docker CLI's TrimBuildFilesFromExcludes: the Dockerfile and .dockerignore are still sent.

    ``dockerfile`` is the Dockerfile's path relative to the context. The classic builder needs both
    files in the context it receives, so an ignore pattern never removes them there; BuildKit-style COPY
    semantics (where ``COPY . .`` honours the pattern) use the patterns unchanged.
    """
    out = list(patterns)
    probe = Matcher(out)
    for keep in (".dockerignore", go_clean(dockerfile)):
        if probe.excluded(keep):
            out.append("!" + keep)
    return out


def walk(context_dir: str, matcher: Matcher, start: str = "") -> Iterator[str]:
    """Yield the included entries of a build context as sorted slash-separated relative paths.

    With ``start`` (a directory relative to the context) only the entries below it are walked, so a
    ``COPY src/ …`` does not scan the rest of a large context; paths stay relative to the context.

    Directories come before their contents. An excluded directory is not entered unless an exception
    pattern could re-include something inside it; if one does, the directory itself is yielded just
    before its first included entry (as BuildKit's fsutil does), so its metadata can be sent too.
    Symlinks are yielded, never followed.
    """

    pending: list[str] = []  # excluded ancestors not yet yielded, shared by the whole walk

    def scan(abs_dir: str, rel_dir: str) -> Iterator[str]:
        try:
            entries = sorted(os.scandir(abs_dir), key=lambda e: e.name)
        except OSError as e:
            raise InvalidArgument(f"cannot read build context directory {abs_dir}: {e.strerror}") from None
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if matcher.excluded(rel):
                if is_dir and matcher.has_exclusions and matcher.may_include_below(rel):
                    pending.append(rel)
                    yield from scan(entry.path, rel)
                    if pending and pending[-1] == rel:
                        pending.pop()
                continue
            yield from pending
            pending.clear()
            yield rel
            if is_dir:
                yield from scan(entry.path, rel)

    start = start.strip("/")
    yield from scan(os.path.join(context_dir, start) if start else context_dir, start)
