"""Dockerfile parser: BuildKit's line parser, then its instruction checks, then stage resolution.

Three layers, as in BuildKit, so each can be checked on its own:

* :func:`parse_ast` mirrors ``frontend/dockerfile/parser`` (directives, continuations, comments, heredocs,
  flag extraction, JSON vs shell form). Its output is compared with BuildKit's own parser in the tests.
* :func:`parse` adds ``frontend/dockerfile/instructions``: known keywords, flags and argument counts,
  grouped into stages. Words stay unexpanded: expansion depends on the ENV/ARG state at each step,
  which only the executor has, so it calls :func:`~intermodal.build.expand.expand` itself.
* :func:`resolve_stages` expands the FROM lines with the global ARGs and picks the stages a target needs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from intermodal.build.expand import GO_SPACE, ExpansionError, Lexer, expand
from intermodal.errors import InvalidArgument

__all__ = [
    "PREDEFINED_ARGS",
    "PROXY_ARGS",
    "Dockerfile",
    "DockerfileError",
    "HealthCheck",
    "Heredoc",
    "Instruction",
    "Mount",
    "Node",
    "ResolvedStage",
    "Stage",
    "global_args",
    "parse",
    "parse_ast",
    "parse_duration",
    "parse_mount",
    "resolve_arg",
    "resolve_stages",
]

# Predefined platform ARGs (this engine builds for the host, linux/amd64). BuildKit puts them in the global
# scope, so FROM lines see them; a stage must redeclare them with ``ARG TARGETARCH`` to use them.
PREDEFINED_ARGS: Mapping[str, str] = {
    "BUILDPLATFORM": "linux/amd64",
    "BUILDOS": "linux",
    "BUILDARCH": "amd64",
    "BUILDVARIANT": "",
    "TARGETPLATFORM": "linux/amd64",
    "TARGETOS": "linux",
    "TARGETARCH": "amd64",
    "TARGETVARIANT": "",
}
# Usable in RUN through --build-arg without an ARG line, and left out of the image history (Docker docs).
PROXY_ARGS = frozenset(
    n
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
    for n in (name, name.lower())
)

KEYWORDS = frozenset(
    [
        "add",
        "arg",
        "cmd",
        "copy",
        "entrypoint",
        "env",
        "expose",
        "from",
        "healthcheck",
        "label",
        "maintainer",
        "onbuild",
        "run",
        "shell",
        "stopsignal",
        "user",
        "volume",
        "workdir",
    ]
)
_DIRECTIVES = frozenset({"syntax", "escape", "check"})
_WS = re.compile(r"[\t\v\f\r ]+")  # BuildKit's reWhitespace / tokenWhitespace
_DIRECTIVE = re.compile(r"\A#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")
_HEREDOC = re.compile(r"\A([0-9]*)<<(-?)([^<]*)\Z")
_STAGE_NAME = re.compile(r"\A[a-z][a-z0-9-_.]*\Z")


class DockerfileError(InvalidArgument):
    """A Dockerfile problem, always reported as ``FILE:LINE: reason`` on one line."""

    def __init__(self, filename: str, line: int, reason: str) -> None:
        super().__init__(f"{filename}:{line}: {reason}")
        self.filename = filename
        self.line = line
        self.reason = reason


def _trim_space(s: str) -> str:
    """Go's strings.TrimSpace (Unicode spaces, but not the \\x1c-\\x1f that str.strip also removes)."""
    start, end = 0, len(s)
    while start < end and s[start] in GO_SPACE:
        start += 1
    while end > start and s[end - 1] in GO_SPACE:
        end -= 1
    return s[start:end]


def _trim_left_space(s: str) -> str:
    i = 0
    while i < len(s) and s[i] in GO_SPACE:
        i += 1
    return s[i:]


# ---------------------------------------------------------------------------------------------------------
# Layer 1: the line parser (BuildKit frontend/dockerfile/parser)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heredoc:
    """One ``<<EOF`` body. ``content`` is verbatim; :attr:`data` applies ``<<-`` tab stripping."""

    name: str
    content: str
    fd: int = 0
    expand: bool = True  # False when any part of the delimiter was quoted: <<"EOF", <<'EOF', <<E"OF"
    chomp: bool = False  # <<-EOF: leading tabs are stripped from the body and the terminator

    @property
    def data(self) -> str:
        return re.sub(r"(?m)^\t+", "", self.content) if self.chomp else self.content


@dataclass(frozen=True)
class Node:
    """One parsed line of BuildKit's AST, before any instruction-specific checks.

    ``args`` are the words BuildKit's line parser produced (JSON-decoded for the exec form, quotes kept
    for the shell form); ``trigger`` is the instruction inside ONBUILD.
    """

    keyword: str  # as written; BuildKit keeps the case here
    original: str  # the logical line, continuations joined
    start_line: int
    end_line: int
    flags: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    json: bool = False
    heredocs: tuple[Heredoc, ...] = ()
    trigger: Node | None = None


@dataclass(frozen=True)
class AST:
    nodes: tuple[Node, ...]
    escape: str
    directives: Mapping[str, str]
    warnings: tuple[str, ...]


class _Fail(Exception):
    """Internal: a parse failure whose location the caller adds."""


def _extract_flags(line: str) -> tuple[str, list[str]]:
    """Split leading ``--flag[=value]`` words off an instruction's arguments (BuildKit's splitCommand).

    Quotes and backslashes inside flags are processed here, with ``\\`` whatever the escape directive.
    """
    words: list[str] = []
    word: list[str] = []
    phase, quote, blank_ok = "spaces", "", False
    n = len(line)
    pos = 0
    while pos <= n:
        ch = line[pos] if pos < n else ""
        if phase == "spaces":
            if pos == n:
                break
            if ch in GO_SPACE:
                pos += 1
                continue
            if ch != "-" or pos + 1 == n or line[pos + 1] != "-":
                return line[pos:], words
            phase = "word"
        if pos == n:
            w = "".join(word)
            if w != "--" and (blank_ok or w):
                words.append(w)
            break
        if phase == "word":
            if ch in GO_SPACE:
                phase = "spaces"
                w = "".join(word)
                if w == "--":
                    return line[pos:], words
                if blank_ok or w:
                    words.append(w)
                word, blank_ok = [], False
                pos += 1
                continue
            if ch in "'\"":
                quote, blank_ok, phase = ch, True, "quote"
                pos += 1
                continue
            if ch == "\\":
                if pos + 1 == n:
                    pos += 1
                    continue
                pos += 1
                ch = line[pos]
            word.append(ch)
            pos += 1
            continue
        # phase == "quote"
        if ch == quote:
            phase = "word"
            pos += 1
            continue
        if ch == "\\":
            if pos + 1 == n:
                phase = "word"
                pos += 1
                continue
            pos += 1
            ch = line[pos]
        word.append(ch)
        pos += 1
    return "", words


def _parse_words(rest: str, escape: str) -> list[str]:
    """Split ENV/LABEL/ARG arguments into words, keeping quotes and escapes for the later expansion."""
    words: list[str] = []
    buf: list[str] = []
    phase, quote, blank_ok = "spaces", "", False
    n = len(rest)
    pos = 0
    while pos <= n:
        ch = rest[pos] if pos < n else ""
        if phase == "spaces":
            if pos == n:
                break
            if ch in GO_SPACE:
                pos += 1
                continue
            phase = "word"
        if pos == n:
            if blank_ok or buf:
                words.append("".join(buf))
            break
        if phase == "word":
            if ch in GO_SPACE:
                phase = "spaces"
                if blank_ok or buf:
                    words.append("".join(buf))
                buf, blank_ok = [], False
                pos += 1
                continue
            if ch in "'\"":
                quote, blank_ok, phase = ch, True, "quote"
            if ch == escape:
                if pos + 1 == n:
                    pos += 1
                    continue  # an escape at the very end is dropped
                buf.append(ch)
                pos += 1
                ch = rest[pos]
            buf.append(ch)
            pos += 1
            continue
        # phase == "quote": the escape character works inside "…" but not inside '…'
        if ch == quote:
            phase = "word"
        if ch == escape and quote != "'":
            if pos + 1 == n:
                phase = "word"
                pos += 1
                continue
            pos += 1
            buf.append(ch)
            ch = rest[pos]
        buf.append(ch)
        pos += 1
    return words


_JSON = json.JSONDecoder(parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def _parse_json(rest: str) -> tuple[str, ...] | None:
    """The exec form. Like BuildKit's json.Decoder, text after the closing ``]`` is ignored."""
    rest = _trim_left_space(rest)
    if not rest.startswith("["):
        return None
    try:
        value, _ = _JSON.raw_decode(rest)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise _Fail("when using JSON array syntax, arrays must be comprised of strings only")
    return tuple(value)


def _maybe_json(rest: str) -> tuple[tuple[str, ...], bool]:
    if rest == "":
        return (), False
    parsed = _parse_json(rest)
    if parsed is not None:
        return parsed, True
    return (rest,), False  # invalid JSON falls back to the shell form, as in BuildKit


def _maybe_json_list(rest: str) -> tuple[tuple[str, ...], bool]:
    parsed = _parse_json(rest)
    if parsed is not None:
        return parsed, True
    return _split_ws(rest), False


def _split_ws(rest: str) -> tuple[str, ...]:
    return tuple(_WS.split(rest)) if rest else ()


def _name_val(rest: str, key: str, escape: str) -> tuple[str, ...]:
    """ENV/LABEL: ``k=v k2="v 2"`` or the legacy ``k v with spaces`` form, decided by the first word."""
    words = _parse_words(rest, escape)
    if not words:
        return ()
    if "=" not in words[0]:
        parts = _WS.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise _Fail(f"{key} must have two arguments")
        return (parts[0], parts[1])
    out: list[str] = []
    for word in words:
        if "=" not in word:
            raise _Fail(f"Syntax error - can't find = in {json.dumps(word)}. Must be of the form: name=value")
        k, v = word.split("=", 1)
        out += [k, v]
    return tuple(out)


def _health(rest: str) -> tuple[tuple[str, ...], bool]:
    sep = 0
    while sep < len(rest) and rest[sep] not in GO_SPACE:
        sep += 1
    if sep == 0:
        return (), False
    nxt = sep
    while nxt < len(rest) and rest[nxt] in GO_SPACE:
        nxt += 1
    cmd, is_json = _maybe_json(rest[nxt:])
    return (rest[:sep], *cmd), is_json


def _node_from_line(line: str, escape: str) -> Node:
    parts = _WS.split(_trim_space(line), maxsplit=1)
    keyword = parts[0]
    flags: list[str] = []
    rest = ""
    if len(parts) == 2:
        rest, flags = _extract_flags(parts[1])
    rest = _trim_space(rest)
    kw = keyword.lower()
    args: tuple[str, ...] = ()
    is_json = False
    trigger = None
    if kw in ("add", "copy", "volume"):
        args, is_json = _maybe_json_list(rest)
    elif kw in ("cmd", "entrypoint", "run", "shell"):
        args, is_json = _maybe_json(rest)
    elif kw in ("env", "label"):
        args = _name_val(rest, kw.upper(), escape)
    elif kw == "arg":
        args = tuple(_parse_words(rest, escape))
    elif kw in ("expose", "from"):
        args = _split_ws(rest)
    elif kw in ("maintainer", "stopsignal", "user", "workdir"):
        args = (rest,) if rest else ()
    elif kw == "healthcheck":
        args, is_json = _health(rest)
    elif kw == "onbuild":
        trigger = _node_from_line(rest, escape) if rest else None
    else:
        args = ("",)  # BuildKit's parseIgnore: unknown keywords are rejected one layer up
    return Node(keyword, line, 0, 0, tuple(flags), args, is_json, (), trigger)


def _heredoc_from_word(word: str) -> Heredoc | None:
    m = _HEREDOC.match(word)
    if not m or not m.group(3):
        return None
    rest = m.group(3)
    lexer = Lexer("\\", skip_unset=True)
    words = lexer.process_words(rest, {})
    if len(words) != 1:
        return None
    raw = Lexer("\\", skip_unset=True, raw_quotes=True).process_words(rest, {})
    if len(raw) != 1:
        raise _Fail(f"internal lexing of heredoc produced inconsistent results: {rest}")

    def quotes(s: str) -> int:
        return s.count("'") + s.count('"')

    return Heredoc(
        name=words[0],
        content="",
        fd=int(m.group(1) or 0),
        expand=quotes(words[0]) == quotes(raw[0]),
        chomp=m.group(2) == "-",
    )


def _heredocs_in(line: str) -> list[Heredoc]:
    """Find ``<<WORD`` tokens the way BuildKit does: lex the line (backslash escapes, quotes kept)."""
    lexer = Lexer("\\", raw_quotes=True, raw_escapes=True, skip_unset=True)
    try:
        words = lexer.process_words(line, {})
    except ExpansionError:
        return []
    return [h for w in words if (h := _heredoc_from_word(w)) is not None]


def _can_contain_heredoc(node: Node) -> bool:
    target = node.trigger if node.keyword.lower() == "onbuild" and node.trigger else node
    return target.keyword.lower() in ("add", "copy", "run") and not target.json


def _continuation(escape: str) -> re.Pattern[str]:
    e = re.escape(escape)
    return re.compile(rf"([^{e}]){e}[ \t]*\Z|\A{e}[ \t]*\Z")


def _split_lines(text: str) -> list[str]:
    """Lines with their "\\n" kept, split on "\\n" only (Go's scanner; str.splitlines splits on more)."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _is_comment(line: str) -> bool:
    return _trim_left_space(line.rstrip("\r\n")).startswith("#")


def parse_ast(text: str | bytes, filename: str = "Dockerfile") -> AST:
    """Parse into BuildKit's line-level AST. Raises :class:`DockerfileError` with the line on failure."""
    if isinstance(text, bytes):
        data = text
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DockerfileError(filename, data[: e.start].count(b"\n") + 1, "not valid UTF-8") from None
    text = text.removeprefix("\ufeff")
    lines = _split_lines(text)
    escape = "\\"
    cont = _continuation(escape)
    directives: dict[str, str] = {}
    directives_done = False
    nodes: list[Node] = []
    warnings: list[str] = []
    lineno = 0
    i = 0

    def trim_cont(s: str) -> tuple[str, bool]:
        if cont.search(s):
            return cont.sub(r"\1", s), False
        return s, True

    while i < len(lines):
        raw = lines[i]
        i += 1
        token = _trim_left_space(raw.rstrip("\r\n"))
        lineno += 1
        if not directives_done:
            m = _DIRECTIVE.match(token)
            key = m.group(1).lower() if m else ""
            if not m or key not in _DIRECTIVES:
                directives_done = True
            else:
                if key in directives:
                    raise DockerfileError(filename, lineno, f"only one {key} parser directive can be used")
                directives[key] = m.group(2)
                if key == "escape":
                    if m.group(2) not in ("\\", "`"):
                        raise DockerfileError(
                            filename, lineno, f"invalid escape token '{m.group(2)}' does not match ` or \\"
                        )
                    escape = m.group(2)
                    cont = _continuation(escape)
        if token.startswith("#"):
            token = ""
        start = lineno
        line, eol = trim_cont(token)
        if eol and line == "":
            continue
        empty_continuation = False
        while not eol and i < len(lines):
            raw = lines[i]
            i += 1
            lineno += 1
            if _is_comment(raw):
                continue  # comments inside a continuation are dropped
            piece = raw.rstrip("\r\n")
            if _trim_left_space(piece) == "":
                empty_continuation = True
                continue
            piece, eol = trim_cont(piece)
            line += piece
        if empty_continuation:
            warnings.append(f"{filename}:{start}: empty continuation line found in: {line}")
        try:
            node = _node_from_line(line, escape)
            heredocs: list[Heredoc] = []
            if _can_contain_heredoc(node) and "<<" in line:
                for doc in _heredocs_in(line):
                    body: list[str] = []
                    while True:
                        if i >= len(lines):
                            raise DockerfileError(
                                filename, start, f"unterminated heredoc <<{doc.name} (no line '{doc.name}')"
                            )
                        raw = lines[i]
                        i += 1
                        lineno += 1
                        candidate = raw.rstrip("\r\n")
                        if doc.chomp:
                            candidate = candidate.lstrip("\t")
                        if candidate == doc.name:
                            break
                        body.append(raw)
                    heredocs.append(
                        Heredoc(doc.name, "".join(body), doc.fd, expand=doc.expand, chomp=doc.chomp)
                    )
        except _Fail as e:
            raise DockerfileError(filename, start, str(e)) from None
        nodes.append(_located(node, start, lineno, tuple(heredocs)))
    if not nodes:
        raise DockerfileError(filename, max(lineno, 1), "file with no instructions")
    return AST(tuple(nodes), escape, directives, tuple(warnings))


def _located(node: Node, start: int, end: int, heredocs: tuple[Heredoc, ...]) -> Node:
    trigger = node.trigger
    if trigger is not None:
        # BuildKit hangs ONBUILD's heredocs on the outer node; they belong to the trigger instruction.
        trigger = _located(trigger, start, end, heredocs)
        heredocs = ()
    return Node(node.keyword, node.original, start, end, node.flags, node.args, node.json, heredocs, trigger)


# ---------------------------------------------------------------------------------------------------------
# Layer 2: instructions (BuildKit frontend/dockerfile/instructions)
# ---------------------------------------------------------------------------------------------------------

_STRING, _BOOL, _MULTI = "string", "bool", "multi"
_FLAGS: Mapping[str, Mapping[str, str]] = {
    "ADD": {
        "chown": _STRING,
        "chmod": _STRING,
        "link": _BOOL,
        "keep-git-dir": _BOOL,
        "checksum": _STRING,
        "exclude": _MULTI,
    },
    "COPY": {
        "from": _STRING,
        "chown": _STRING,
        "chmod": _STRING,
        "link": _BOOL,
        "parents": _BOOL,
        "exclude": _MULTI,
    },
    "FROM": {"platform": _STRING},
    "RUN": {"mount": _MULTI, "network": _STRING, "security": _STRING},
    "HEALTHCHECK": {
        "interval": _STRING,
        "timeout": _STRING,
        "start-period": _STRING,
        "start-interval": _STRING,
        "retries": _STRING,
    },
}
_NETWORK_MODES = frozenset({"default", "none", "host"})
_SECURITY_MODES = frozenset({"sandbox", "insecure"})


@dataclass(frozen=True)
class Mount:
    """A parsed ``RUN --mount=…`` (BuildKit runmount.go). Values are as written unless expanded."""

    type: str = "bind"
    target: str = ""
    source: str = ""
    from_: str = ""
    id: str = ""
    sharing: str = ""  # cache only: shared (default) | private | locked
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    readonly: bool = True
    required: bool = False
    size: str = ""  # tmpfs only, as written ("64m")
    env: str = ""  # secret only: expose the secret as this environment variable


_MOUNT_TYPES = frozenset({"bind", "cache", "tmpfs", "secret", "ssh"})
_MOUNT_CHECKED = frozenset({"type", "mode", "uid", "gid", "sharing", "readonly", "ro", "readwrite", "rw"})


def _go_bool(value: str) -> bool:
    """Go's strconv.ParseBool, which BuildKit uses for mount options."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(value)


def _csv_fields(spec: str) -> list[str]:
    """One record of Go's encoding/csv (quotes allowed around a whole field, "" is a literal quote)."""
    fields: list[str] = []
    i, n = 0, len(spec)
    while True:
        if i < n and spec[i] == '"':
            i += 1
            buf: list[str] = []
            while True:
                j = spec.find('"', i)
                if j < 0:
                    raise ValueError('extraneous or missing " in quoted-field')
                buf.append(spec[i:j])
                i = j + 1
                if i < n and spec[i] == '"':
                    buf.append('"')
                    i += 1
                    continue
                break
            if i < n and spec[i] != ",":
                raise ValueError('extraneous or missing " in quoted-field')
            fields.append("".join(buf))
        else:
            j = spec.find(",", i)
            j = n if j < 0 else j
            if '"' in spec[i:j]:
                raise ValueError('bare " in non-quoted-field')
            fields.append(spec[i:j])
            i = j
        if i >= n:
            return fields
        i += 1  # the comma


def parse_mount(spec: str, expand_value: Callable[[str], str] | None = None) -> Mount:
    """Parse one ``--mount`` value. ``expand_value`` expands each option value (the executor passes one
    bound to the step's environment); without it, values containing ``$`` are kept but not checked."""
    try:
        fields = _csv_fields(spec)
    except ValueError as e:
        raise InvalidArgument(f"failed to parse csv mounts: {e}") from None
    kw: dict[str, object] = {}
    mtype = "bind"
    ro_auto = True
    readonly = True
    for fld in fields:
        key, has_value, value = fld.partition("=")
        key = key.lower()
        if not has_value:
            if key in ("readonly", "ro"):
                readonly, ro_auto = True, False
            elif key in ("readwrite", "rw"):
                readonly, ro_auto = False, False
            elif key == "required":
                if mtype not in ("secret", "ssh"):
                    raise InvalidArgument(f"unexpected key '{key}' for mount type '{mtype}'")
                kw["required"] = True
            else:
                raise InvalidArgument(f"invalid field '{fld}' must be a key=value pair")
            continue
        if key == "from" and "$" in value[:-1]:
            raise InvalidArgument(f"'{key}' doesn't support variable expansion, define alias stage instead")
        if expand_value is not None:
            value = expand_value(value)
        elif "$" in value and key in _MOUNT_CHECKED:
            continue  # expanded (and checked) later with the step's environment
        try:
            if key == "type":
                if value.lower() not in _MOUNT_TYPES:
                    raise InvalidArgument(
                        f"unsupported mount type {value!r} (use one of {sorted(_MOUNT_TYPES)})"
                    )
                mtype = value.lower()
            elif key == "from":
                kw["from_"] = value
            elif key in ("source", "src"):
                kw["source"] = value
            elif key in ("target", "dst", "destination", "dest"):
                kw["target"] = value
            elif key in ("readonly", "ro"):
                readonly, ro_auto = _go_bool(value), False
            elif key in ("readwrite", "rw"):
                readonly, ro_auto = not _go_bool(value), False
            elif key == "required":
                if mtype not in ("secret", "ssh"):
                    raise InvalidArgument(f"unexpected key '{key}' for mount type '{mtype}'")
                kw["required"] = _go_bool(value)
            elif key == "size":
                if mtype != "tmpfs":
                    raise InvalidArgument(f"unexpected key '{key}' for mount type '{mtype}'")
                kw["size"] = value
            elif key == "id":
                kw["id"] = value
            elif key == "sharing":
                if mtype != "cache":
                    raise InvalidArgument(f"invalid cache sharing set for {mtype} mount")
                if value.lower() not in ("shared", "private", "locked"):
                    raise InvalidArgument(
                        f"unrecognized sharing parameter {value!r} (shared, private, locked)"
                    )
                kw["sharing"] = value.lower()
            elif key == "mode":
                kw["mode"] = int(value, 8)
            elif key in ("uid", "gid"):
                kw[key] = int(value, 10)
                if not 0 <= int(value, 10) < 2**32:
                    raise ValueError(value)
            elif key == "env":
                kw["env"] = value
            else:
                raise InvalidArgument(f"unexpected key '{key}' in '{fld}'")
        except ValueError:
            raise InvalidArgument(f"invalid value for {key}: {value}") from None
    if mtype not in ("secret", "ssh", "cache"):
        for opt in ("mode", "uid", "gid"):
            if kw.get(opt) is not None:
                raise InvalidArgument(f"{opt} not allowed for {mtype!r} type mounts")
    if ro_auto:
        readonly = mtype not in ("cache", "tmpfs")
    if mtype in ("secret", "ssh"):
        for opt, label in (("from_", "from"), ("source", "source")):
            if kw.get(opt):
                raise InvalidArgument(f"{mtype} mounts do not support a {label}")
    elif not kw.get("target"):
        raise InvalidArgument(f"{mtype} mount requires a target")
    return Mount(type=mtype, readonly=readonly, **kw)  # type: ignore[arg-type]


_DURATION = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9}
_UNIT_NS["h"] = 3600 * 10**9


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds (HEALTHCHECK --interval=1m30s)."""
    s = text
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(text)
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION.match(s, pos)
        if not m or m.group(1) in ("", "."):
            raise ValueError(text)
        total += float(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    return sign * round(total)


@dataclass(frozen=True)
class HealthCheck:
    """HEALTHCHECK as Docker stores it: ``test`` is ``["NONE"]``, ``["CMD", …]`` or ``["CMD-SHELL", cmd]``."""

    test: tuple[str, ...]
    interval: int = 0  # nanoseconds, 0 = inherit/default
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True)
class Instruction:
    """A checked instruction. Words are raw: the executor expands them with the env of its step.

    ``keyword`` is upper case. ``flags`` maps a flag name to every value given (``--mount`` repeats);
    booleans are normalised to "true"/"false".
    """

    keyword: str
    args: tuple[str, ...]
    line: int
    end_line: int
    original: str
    flags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    raw_flags: tuple[str, ...] = ()
    json: bool = False
    heredocs: tuple[Heredoc, ...] = ()
    trigger: Instruction | None = None  # ONBUILD's instruction
    mounts: tuple[Mount, ...] = ()  # RUN --mount, parsed without expansion
    health: HealthCheck | None = None

    def flag(self, name: str, default: str | None = None) -> str | None:
        """The last value of a single-valued flag, e.g. ``instr.flag("from")``."""
        values = self.flags.get(name)
        return values[-1] if values else default

    def flag_values(self, name: str) -> tuple[str, ...]:
        return self.flags.get(name, ())

    def flag_bool(self, name: str) -> bool:
        return self.flag(name) == "true"

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """ENV / LABEL as (key, value) pairs, both still to be expanded (quotes included)."""
        return tuple(zip(self.args[::2], self.args[1::2], strict=True))

    @property
    def arg_defs(self) -> tuple[tuple[str, str | None], ...]:
        """ARG as (name, default or None); the default is still to be expanded."""
        out: list[tuple[str, str | None]] = []
        for word in self.args:
            name, eq, default = word.partition("=")
            out.append((name, default if eq else None))
        return tuple(out)

    @property
    def sources(self) -> tuple[str, ...]:
        """COPY/ADD sources that are paths or URLs (heredoc sources are in :attr:`inline_sources`)."""
        return tuple(a for a in self.args[:-1] if _heredoc_from_word(a) is None)

    @property
    def inline_sources(self) -> tuple[Heredoc, ...]:
        """COPY/ADD ``<<EOF`` sources, in order; the file name is the heredoc's name."""
        by_name = {h.name: h for h in self.heredocs}
        found = (_heredoc_from_word(a) for a in self.args[:-1])
        return tuple(by_name[h.name] for h in found if h is not None and h.name in by_name)

    @property
    def dest(self) -> str:
        return self.args[-1]

    @property
    def prepend_shell(self) -> bool:
        """RUN/CMD/ENTRYPOINT in shell form run as ``SHELL + [command]``; the exec form runs as is."""
        return not self.json

    @property
    def onbuild_expression(self) -> str:
        """ONBUILD's trigger as stored in the image config (heredocs appended, as BuildKit does)."""
        text = re.sub(r"(?i)^\s*ONBUILD\s*", "", self.original)
        assert self.trigger is not None
        for doc in self.trigger.heredocs:
            text += "\n" + doc.content + doc.name
        return text


@dataclass(frozen=True)
class Stage:
    """A build stage: its FROM line (unexpanded) and the instructions after it."""

    index: int
    name: str  # lower-cased AS name, "" when unnamed
    base: str  # the FROM image or stage, still to be expanded with the global ARGs
    platform: str | None
    line: int
    instructions: tuple[Instruction, ...]
    from_instruction: Instruction


@dataclass(frozen=True)
class Dockerfile:
    """A checked Dockerfile. ``meta_args`` are the ARGs before the first FROM (the global scope)."""

    filename: str
    escape: str
    directives: Mapping[str, str]
    meta_args: tuple[Instruction, ...]
    stages: tuple[Stage, ...]
    warnings: tuple[str, ...] = ()

    @property
    def syntax(self) -> str | None:
        return self.directives.get("syntax")

    @property
    def checks(self) -> Mapping[str, str]:
        """The ``# check=skip=…;error=true`` directive as a mapping (BuildKit's build-check settings)."""
        raw = self.directives.get("check", "")
        out: dict[str, str] = {}
        for part in raw.split(";"):
            key, _, value = part.partition("=")
            if key.strip():
                out[key.strip().lower()] = value.strip()
        return out

    def error(self, where: Instruction | int, reason: str) -> DockerfileError:
        """An error located in this file, for the executor (e.g. around :func:`expand`)."""
        line = where.line if isinstance(where, Instruction) else where
        return DockerfileError(self.filename, line, reason)

    def expand(self, where: Instruction, word: str, env: Mapping[str, str]) -> str:
        """:func:`expand` with this file's escape character, errors located at ``where``."""
        try:
            return expand(word, env, self.escape)
        except ExpansionError as e:
            raise self.error(where, str(e)) from None


def _parse_flags(keyword: str, raw: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """BuildKit's BFlags.Parse: known flags only, values where needed, no duplicates but --mount/--exclude."""
    allowed = _FLAGS.get(keyword, {})
    out: dict[str, list[str]] = {}
    for item in raw:
        name, has_value, value = item[2:].partition("=")
        kind = allowed.get(name)
        if kind is None:
            known = ", ".join(f"--{f}" for f in allowed) or "none"
            raise _Fail(f"unknown flag: --{name} for {keyword} (allowed: {known})")
        if name in out and kind != _MULTI:
            raise _Fail(f"duplicate flag specified: --{name}")
        if kind == _BOOL:
            if has_value and value == "":
                raise _Fail(f"missing a value on flag: --{name}")
            if value.lower() not in ("", "true", "false"):
                raise _Fail(f"expecting boolean value for flag --{name}, not: {value}")
            value = "false" if value.lower() == "false" else "true"
        elif not has_value:
            raise _Fail(f"missing a value on flag: --{name}")
        out.setdefault(name, []).append(value)
    return {k: tuple(v) for k, v in out.items()}


def _interval(flags: Mapping[str, tuple[str, ...]], name: str) -> int:
    value = flags.get(name, ("",))[-1]
    if value == "":
        return 0
    try:
        ns = parse_duration(value)
    except ValueError:
        raise _Fail(f"invalid duration for --{name}: {value!r} (use e.g. 30s, 1m30s)") from None
    if ns < 1_000_000:
        raise _Fail(f"--{name} cannot be less than 1ms (got {value})")
    return ns


def _instruction(node: Node) -> Instruction:
    """Check one node as BuildKit's ParseInstruction does and attach the parsed flags."""
    kw = node.keyword.upper()
    args = node.args
    if kw.lower() not in KEYWORDS:
        raise _Fail(f"unknown instruction: {node.keyword}")
    if kw == "HEALTHCHECK" and args and args[0].upper() == "NONE":
        flags: dict[str, tuple[str, ...]] = {}  # BuildKit does not even look at flags for NONE
    else:
        flags = _parse_flags(kw, node.flags)
    base = {
        "keyword": kw,
        "args": args,
        "line": node.start_line,
        "end_line": node.end_line,
        "original": node.original,
        "flags": flags,
        "raw_flags": node.flags,
        "json": node.json,
        "heredocs": node.heredocs,
    }

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise _Fail(msg)

    if kw in ("ENV", "LABEL"):
        need(bool(args), f"{kw} requires at least one argument")
        need(all(args[::2]), f"{kw} names can not be blank")
    elif kw in ("MAINTAINER", "WORKDIR", "USER", "STOPSIGNAL"):
        need(len(args) == 1, f"{kw} requires exactly one argument")
    elif kw in ("ADD", "COPY"):
        need(
            len(args) >= 2,
            f"{kw} requires at least two arguments, but only one was provided. "
            "Destination could not be determined",
        )
        need(_heredoc_from_word(args[-1]) is None, f"{kw} cannot accept a heredoc as a destination")
    elif kw == "FROM":
        need(
            len(args) == 1 or (len(args) == 3 and args[1].lower() == "as"),
            "FROM requires either one or three arguments (FROM image [AS name])",
        )
        if len(args) == 3:
            need(
                _STAGE_NAME.match(args[2].lower()) is not None,
                f"invalid name for build stage: {args[2]!r}, name can't start with a number or contain symbols",
            )
    elif kw == "ONBUILD":
        trig = node.trigger
        need(trig is not None, "ONBUILD requires at least one argument")
        assert trig is not None
        tkw = trig.keyword.upper()
        need(tkw != "ONBUILD", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        need(tkw not in ("FROM", "MAINTAINER"), f"{tkw} isn't allowed as an ONBUILD trigger")
        base["trigger"] = _instruction(trig)
        base["args"] = (trig.keyword, *trig.args)
    elif kw == "RUN":
        need(bool(args), "RUN requires at least one argument")
        mounts = []
        for spec in flags.get("mount", ()):
            try:
                mounts.append(parse_mount(spec))
            except InvalidArgument as e:
                raise _Fail(f"--mount={spec}: {e}") from None
        base["mounts"] = tuple(mounts)
        net = flags.get("network", ("default",))[-1]
        need(net in _NETWORK_MODES, f"unsupported network mode {net!r} (default, none, host)")
        sec = flags.get("security", ("sandbox",))[-1]
        need(sec in _SECURITY_MODES, f"unsupported security mode {sec!r} (sandbox, insecure)")
    elif kw == "HEALTHCHECK":
        need(bool(args), "HEALTHCHECK requires at least one argument")
        typ = args[0].upper()
        if typ == "NONE":
            need(len(args) == 1, "HEALTHCHECK NONE takes no arguments")
            base["health"] = HealthCheck(("NONE",))
        else:
            need(typ == "CMD", f"Unknown type {args[0]!r} in HEALTHCHECK (try CMD)")
            need(len(args) > 1, "Missing command after HEALTHCHECK CMD")
            retries = flags.get("retries", ("",))[-1]
            try:
                n_retries = int(retries, 10) if retries else 0
            except ValueError:
                raise _Fail(f"invalid --retries value {retries!r}: not an integer") from None
            need(n_retries >= 0, f"--retries cannot be negative ({n_retries})")
            base["health"] = HealthCheck(
                ("CMD", *args[1:]) if node.json else ("CMD-SHELL", *args[1:]),
                interval=_interval(flags, "interval"),
                timeout=_interval(flags, "timeout"),
                start_period=_interval(flags, "start-period"),
                start_interval=_interval(flags, "start-interval"),
                retries=n_retries,
            )
    elif kw == "EXPOSE":
        need(bool(args), "EXPOSE requires at least one argument")
    elif kw == "VOLUME":
        need(bool(args), "VOLUME requires at least one argument")
        need(all(_trim_space(a) for a in args), "VOLUME specified can not be an empty string")
    elif kw == "ARG":
        need(bool(args), "ARG requires at least one argument")
        need(all(not a.startswith("=") for a in args), "ARG names can not be blank")
    elif kw == "SHELL":
        need(node.json, 'SHELL requires the arguments to be in JSON form, e.g. SHELL ["/bin/sh", "-c"]')
        need(bool(args), "SHELL requires at least one argument")
    return Instruction(**base)  # type: ignore[arg-type]


def parse(text: str | bytes, filename: str = "Dockerfile") -> Dockerfile:
    """Parse and check a Dockerfile into stages. Every error names ``filename`` and the line."""
    ast = parse_ast(text, filename)
    meta_args: list[Instruction] = []
    stages: list[tuple[Instruction, list[Instruction]]] = []
    for node in ast.nodes:
        try:
            instr = _instruction(node)
        except _Fail as e:
            raise DockerfileError(filename, node.start_line, str(e)) from None
        if instr.keyword == "FROM":
            stages.append((instr, []))
        elif stages:
            stages[-1][1].append(instr)
        elif instr.keyword == "ARG":
            meta_args.append(instr)
        else:
            raise DockerfileError(
                filename, instr.line, f"{instr.keyword} before the first FROM (only ARG may come before FROM)"
            )
    if not stages:
        raise DockerfileError(filename, ast.nodes[-1].end_line, "no FROM instruction: nothing to build")
    built: list[Stage] = []
    seen: dict[str, int] = {}
    for index, (frm, body) in enumerate(stages):
        name = frm.args[2].lower() if len(frm.args) == 3 else ""
        if name and name in seen:
            raise DockerfileError(
                filename, frm.line, f"duplicate stage name {name!r} (first used on line {seen[name]})"
            )
        if name:
            seen[name] = frm.line
        built.append(Stage(index, name, frm.args[0], frm.flag("platform"), frm.line, tuple(body), frm))
    return Dockerfile(
        filename, ast.escape, dict(ast.directives), tuple(meta_args), tuple(built), ast.warnings
    )


# ---------------------------------------------------------------------------------------------------------
# Layer 3: ARG scoping and the stages a target needs (BuildKit dockerfile2llb)
# ---------------------------------------------------------------------------------------------------------


def global_args(dockerfile: Dockerfile, build_args: Mapping[str, str] | None = None) -> dict[str, str]:
    """The global scope: predefined platform ARGs plus the ARGs before the first FROM.

    Defaults are expanded in order with what came before; a ``--build-arg`` replaces a declared ARG's
    value. Undeclared build args do not enter the scope (BuildKit warns that they were not consumed).
    """
    build_args = build_args or {}
    scope = dict(PREDEFINED_ARGS)
    for instr in dockerfile.meta_args:
        for name, default in instr.arg_defs:
            if name in build_args:
                scope[name] = build_args[name]
            elif default is not None:
                scope[name] = dockerfile.expand(instr, default, scope)
    return scope


def resolve_arg(
    name: str,
    default: str | None,
    env: Mapping[str, str],
    build_args: Mapping[str, str],
    globals_: Mapping[str, str],
    escape: str = "\\",
) -> str | None:
    """The value an ``ARG name[=default]`` inside a stage takes (None: declared but unset).

    A --build-arg wins; otherwise the default, expanded with the step's ``env``; a bare ``ARG name``
    inherits the global value of the same name (that is how a global ARG is brought into a stage).
    """
    if name in build_args:
        return build_args[name]
    if default is not None:
        return expand(default, env, escape)
    return globals_.get(name)


@dataclass(frozen=True)
class ResolvedStage:
    """A stage with its FROM expanded: based on an image (``base_image``) or an earlier stage."""

    stage: Stage
    base_image: str | None  # None for "scratch" and for a stage base
    base_stage: int | None
    platform: str | None
    deps: tuple[int, ...]  # indexes of the stages this one needs (FROM, COPY --from, RUN --mount from=)

    @property
    def index(self) -> int:
        return self.stage.index

    @property
    def name(self) -> str:
        return self.stage.name


def _stage_ref(dockerfile: Dockerfile, ref: str, where: Instruction, flag: str) -> int | None:
    """A ``--from`` value: a stage index, a stage name (any stage, even later), or None for an image."""
    by_name = {s.name: s.index for s in dockerfile.stages if s.name}
    if ref.isdigit():
        index = int(ref)
        if index >= len(dockerfile.stages):
            raise dockerfile.error(
                where, f"{flag}={ref}: invalid stage index (there are {len(dockerfile.stages)})"
            )
        return index
    return by_name.get(ref.lower())


def resolve_stages(
    dockerfile: Dockerfile, build_args: Mapping[str, str] | None = None, target: str | None = None
) -> list[ResolvedStage]:
    """The stages needed to build ``target`` (default: the last stage), dependencies first.

    FROM can only name an *earlier* stage (a later name is an image name, as in BuildKit), while
    ``COPY --from``/``RUN --mount=from=`` may name any stage, so cycles are possible and are reported.
    """
    scope = global_args(dockerfile, build_args)
    stages = dockerfile.stages
    if target:
        matches = [s for s in stages if s.name == target.lower()]
        if not matches:
            names = ", ".join(s.name for s in stages if s.name) or "no named stages"
            raise InvalidArgument(
                f"{dockerfile.filename}: target stage {target!r} could not be found ({names})"
            )
        goal = matches[0].index
    else:
        goal = len(stages) - 1
    resolved: list[ResolvedStage] = []
    for st in stages:
        base = dockerfile.expand(st.from_instruction, st.base, scope)
        if not base:
            raise dockerfile.error(st.from_instruction, f"base name ({st.base}) should not be blank")
        platform = dockerfile.expand(st.from_instruction, st.platform, scope) if st.platform else None
        earlier = {s.name: s.index for s in stages[: st.index] if s.name}
        base_stage = earlier.get(base.lower())
        deps: list[int] = [] if base_stage is None else [base_stage]
        for instr in st.instructions:
            refs: list[tuple[str, str]] = []
            if instr.keyword == "COPY" and instr.flag("from"):
                ref = dockerfile.expand(instr, instr.flag("from") or "", scope)
                refs.append(("--from", ref))
            refs += [("--mount from", m.from_) for m in instr.mounts if m.from_]
            for flag, ref in refs:
                dep = _stage_ref(dockerfile, ref, instr, flag)
                if dep is not None and dep not in deps:
                    deps.append(dep)
        image = None if base_stage is not None or base.lower() == "scratch" else base
        resolved.append(ResolvedStage(st, image, base_stage, platform, tuple(deps)))

    order: list[int] = []
    state: dict[int, str] = {}

    def visit(index: int, path: list[int]) -> None:
        if state.get(index) == "done":
            return
        if state.get(index) == "active":
            cycle = path[path.index(index) :] + [index]
            names = " -> ".join(stages[i].name or str(i) for i in cycle)
            raise dockerfile.error(stages[index].line, f"circular dependency detected on stage: {names}")
        state[index] = "active"
        for dep in sorted(resolved[index].deps):
            visit(dep, [*path, index])
        state[index] = "done"
        order.append(index)

    visit(goal, [])
    return [resolved[i] for i in order]
