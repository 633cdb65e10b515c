"""BuildKit's shell-word lexer: variable expansion, quote removal and word splitting.

A port of ``frontend/dockerfile/shell/lex.go`` so that ``${VAR:-x}``, quoting and the escape character
behave exactly as in ``docker build``. This is deliberately *not* POSIX sh: there is no command or
arithmetic substitution, ``$1``/``$@`` are just unset names, and inside double quotes the escape character
only escapes ``"``, ``$`` and itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from intermodal.errors import InvalidArgument

# Go's unicode.IsSpace: Python's str.isspace also accepts \x1c-\x1f, which Go (and so BuildKit) does not.
GO_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)
_SPECIAL_PARAMS = frozenset("@*#?-$!0")


class ExpansionError(InvalidArgument):
    """A word could not be expanded (unterminated quote, bad ``${}``, ``${VAR:?msg}`` on an unset VAR).

    The message has no location: the caller knows which instruction it was expanding, so it wraps this
    with ``Dockerfile.error(line, ...)``.
    """


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand variables and remove quotes in one word, keeping its inner spaces (ENV, WORKDIR, USER…)."""
    return Lexer(escape).process_word(word, env)


def expand_words(word: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Expand, then split on unquoted white space *after* expansion (EXPOSE, VOLUME, COPY sources…)."""
    return Lexer(escape).process_words(word, env)


def expand_heredoc(content: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand ``$VAR`` in an unquoted-delimiter heredoc body; quotes in the body are data, not syntax."""
    return Lexer(escape, skip_quotes=True).process_word(content, env)


class Lexer:
    """The lexer with BuildKit's switches, which the parser also needs to find heredoc delimiters.

    ``raw_quotes``/``raw_escapes`` keep quote and escape characters in the output; ``skip_unset`` leaves
    ``$VAR`` untouched when VAR is not in the environment (used while scanning for ``<<EOF``).
    """

    def __init__(
        self,
        escape: str = "\\",
        *,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
        skip_unset: bool = False,
        skip_quotes: bool = False,
    ) -> None:
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset
        self.skip_quotes = skip_quotes

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        return _ShellWord(self, word, env).process()[0]

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        return _ShellWord(self, word, env).process()[1]


class _Words:
    """Word splitting that happens after expansion: unquoted spaces from ``$VAR`` split words too."""

    def __init__(self) -> None:
        self.buf = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch in GO_SPACE:
            if self.in_word and self.buf:
                self.words.append(self.buf)
                self.buf = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, s: str) -> None:
        self.buf += s
        self.in_word = True

    def add_string(self, s: str) -> None:
        for ch in s:
            self.add_char(ch)

    def get(self) -> list[str]:
        # An empty quoted word ("") never becomes a word, as in BuildKit.
        if self.buf:
            self.words.append(self.buf)
            self.buf = ""
            self.in_word = False
        return self.words


class _ShellWord:
    def __init__(self, lexer: Lexer, text: str, env: Mapping[str, str]) -> None:
        self.lx = lexer
        self.text = text
        self.pos = 0
        self.env = env
        self.raw_escapes = lexer.raw_escapes

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    def process(self) -> tuple[str, list[str]]:
        try:
            return self.stop_on("", self.raw_escapes)
        except ExpansionError as e:
            raise ExpansionError(f"failed to process {self.text!r}: {e}") from None

    def stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Read up to ``stop`` (or the end when empty), returning the joined text and the split words."""
        result: list[str] = []
        words = _Words()
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            while (ch := self.peek()) != "":
                if stop and ch == stop:
                    self.next()
                    return "".join(result), words.get()
                if ch == "$":
                    tmp = self.dollar()
                    result.append(tmp)
                    words.add_string(tmp)
                elif ch in "'\"" and not self.lx.skip_quotes:
                    tmp = self.single_quote() if ch == "'" else self.double_quote()
                    result.append(tmp)
                    words.add_raw(tmp)
                else:
                    ch = self.next()
                    if ch == self.lx.escape:
                        if self.raw_escapes:
                            words.add_raw(ch)
                            result.append(ch)
                        ch = self.next()
                        if ch == "":
                            break  # a trailing escape character is dropped
                        words.add_raw(ch)
                    else:
                        words.add_char(ch)
                    result.append(ch)
            if stop:
                raise ExpansionError(f"unexpected end of statement while looking for matching {stop}")
            return "".join(result), words.get()
        finally:
            self.raw_escapes = saved

    def single_quote(self) -> str:
        opening = self.next()
        out = [opening] if self.lx.raw_quotes else []
        while True:
            ch = self.next()
            if ch == "":
                raise ExpansionError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        opening = self.next()
        out = [opening] if self.lx.raw_quotes else []
        while True:
            ch = self.peek()
            if ch == "":
                raise ExpansionError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.lx.escape:
                if self.raw_escapes:
                    out.append(ch)
                nxt = self.peek()
                if nxt == "":
                    continue  # the missing closing quote is reported on the next turn
                if nxt in ('"', "$", self.lx.escape):
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        out: list[str] = []
        while (ch := self.peek()) != "":
            if not out and ch.isdecimal():
                while self.peek() != "" and self.peek().isdecimal():
                    out.append(self.next())
                return "".join(out)
            if not out and ch in _SPECIAL_PARAMS:
                return self.next()
            if not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            out.append(self.next())
        return "".join(out)

    def lookup(self, name: str) -> str | None:
        return self.env.get(name)

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value = self.lookup(name)
            if value is None:
                return "$" + name if self.lx.skip_unset else ""
            return value
        self.next()
        if self.peek() == "":
            raise ExpansionError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if ch == "":
            raise ExpansionError("syntax error: missing '}'")
        if ch == "}":
            value = self.lookup(name)
            if value is None:
                return "${" + name + "}" if self.lx.skip_unset else ""
            return value
        if ch == "/":
            return self.substitute(name)
        modifier = ch
        null_is_unset = False
        if ch == ":":
            # Go's `fallthrough`: whatever follows ':' is read as the modifier, valid or not.
            null_is_unset = True
            ch = self.next()
            modifier += ch
        elif ch not in "+-?#%":
            raise ExpansionError(f"unsupported modifier ({modifier}) in substitution")
        pattern_like = ch in "#%"
        if null_is_unset and pattern_like:
            raise ExpansionError(f"unsupported modifier ({modifier}) in substitution")
        word = self.closing(lambda: self.stop_on("}", pattern_like)[0], "syntax error: missing '}'")
        value = self.lookup(name)
        if value is None and self.lx.skip_unset:
            return "${" + name + modifier + word + "}"
        unset = value is None or (null_is_unset and value == "")
        if ch == "-":
            return word if unset else value or ""
        if ch == "+":
            return "" if unset else word
        if ch == "?":
            if value is None:
                raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
            if unset:
                raise ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if ch in "#%":
            greedy = word.startswith(ch)
            if greedy:
                word = word[1:]
            if ch == "%":
                return _trim_suffix(word, value or "", greedy)
            return _trim_prefix(word, value or "", greedy)
        raise ExpansionError(f"unsupported modifier ({modifier}) in substitution")

    def substitute(self, name: str) -> str:
        """``${VAR/pattern/repl}`` and ``${VAR//pattern/repl}`` (dockerfile 1.7 syntax)."""
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        pattern = self.closing(lambda: self.stop_on("/", True)[0], "syntax error: missing '/' in ${}")
        repl = self.closing(lambda: self.stop_on("}", True)[0], "syntax error: missing '}'")
        value = self.lookup(name)
        if value is None and self.lx.skip_unset:
            return "${" + name + "/" + pattern + "/" + repl + "}"
        rx = _shell_pattern(pattern, greedy=True, anchored=False)
        value = value or ""
        if replace_all:
            return rx.sub(lambda _m: repl, value)
        m = rx.search(value)
        return value[: m.start()] + repl + value[m.end() :] if m else value

    def closing(self, read: Callable[[], str], missing: str) -> str:
        """Run a ``stop_on`` reader, turning "ran out of input" into BuildKit's specific message."""
        try:
            return read()
        except ExpansionError:
            if self.peek() == "":
                raise ExpansionError(missing) from None
            raise


def _shell_pattern(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """Shell wildcard (``*``, ``?``, backslash escapes; no brackets, as in BuildKit) to a regex."""
    out = ["^"] if anchored else []
    i = 0
    while i < len(pattern):
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(".*" if greedy else ".*?")
            continue
        if tok == "?":
            out.append(".")
            continue
        if tok == "\\":
            # "}" and "/" had to be escaped inside ${}, but the escape is not part of the pattern.
            if i < len(pattern) and pattern[i] in "}/":
                continue
            tok = pattern[i] if i < len(pattern) else ""
            i += 1
            if tok not in ("*", "?", "\\"):
                raise ExpansionError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{tok}'")
            out.append("\\" + tok)
            continue
        out.append("\\" + tok if tok in "[]{}.+()|^$" else tok)
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _shell_pattern(pattern, greedy=greedy, anchored=True).search(value)
    return value[m.end() :] if m else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern but keep each ``\\x`` escape pair in order, so ``a\\*c`` becomes ``c\\*a``."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            out.append(pattern[i : i + 2])
            i += 2
        else:
            out.append(pattern[i])
            i += 1
    return "".join(reversed(out))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # A regex cannot find the shortest rightmost match, so (like BuildKit) reverse both and trim a prefix.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]
