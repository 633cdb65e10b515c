"""BuildKit's word expansion rules (expected values from BuildKit's lex tests and the Dockerfile docs)."""

from __future__ import annotations

import pytest

from intermodal.build.expand import ExpansionError, expand, expand_heredoc, expand_words

ENV = {"A": "hello", "EMPTY": "", "P": "a/b/c.tar.gz", "SP": "x  y", "W": "*"}


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("$A", "hello"),
        ("${A}", "hello"),
        ("${A}world", "helloworld"),
        ("$Aworld", ""),  # the name runs on: $Aworld is unset
        ("$UNSET", ""),
        ("$", "$"),
        ("a$", "a$"),
        ("$1", ""),  # positional names are just unset
        # defaults and alternatives, with and without ':'
        ("${UNSET:-def}", "def"),
        ("${EMPTY:-def}", "def"),
        ("${EMPTY-def}", ""),
        ("${UNSET-def}", "def"),
        ("${A:-def}", "hello"),
        ("${A:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("${UNSET:-$A}", "hello"),
        ("${UNSET:-${A:+nested}}", "nested"),
        ("${UNSET:-a b}", "a b"),
        ("${UNSET:-\\}}", "}"),
        # pattern removal (dockerfile 1.7)
        ("${P#*/}", "b/c.tar.gz"),
        ("${P##*/}", "c.tar.gz"),
        ("${P%.*}", "a/b/c.tar"),
        ("${P%%.*}", "a/b/c"),
        ("${P#nomatch}", "a/b/c.tar.gz"),
        ("${P%c.tar.g?}", "a/b/"),
        ("${W#\\*}", ""),
        ("${UNSET#x}", ""),
        # substitution
        ("${P/\\//_}", "a_b/c.tar.gz"),
        ("${P//\\//_}", "a_b_c.tar.gz"),
        ("${P/b*/X}", "a/X"),
        # quotes and escapes
        ("'$A'", "$A"),
        ('"$A"', "hello"),
        ('"a \\"b\\" c"', 'a "b" c'),
        ('"\\n"', "\\n"),  # inside double quotes only " $ and \\ are escapable
        ("\\n", "n"),
        ("\\$A", "$A"),
        ('"\\$A"', "$A"),
        ("a\\ b", "a b"),
        ("'it''s'", "its"),
        ("trailing\\", "trailing"),
        ("mixed\"$A\"'$A'", "mixedhello$A"),
    ],
)
def test_expand(word: str, expected: str) -> None:
    assert expand(word, ENV) == expected


def test_backtick_escape() -> None:
    assert expand("`$A", ENV, "`") == "$A"
    assert expand("C:\\path", ENV, "`") == "C:\\path"  # backslash is an ordinary character then
    assert expand('"a`"b"', ENV, "`") == 'a"b'


def test_word_splitting_happens_after_expansion() -> None:
    assert expand_words("$SP z", ENV) == ["x", "y", "z"]
    assert expand_words('"$SP" z', ENV) == ["x  y", "z"]
    assert expand_words("a\\ b c", ENV) == ["a b", "c"]
    assert expand_words('"" x', ENV) == ["x"]  # an empty quoted word disappears, as in BuildKit
    assert expand("$SP z", ENV) == "x  y z"


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("${UNSET:?}", "UNSET: is not allowed to be unset"),
        ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
        ("${UNSET?custom message}", "UNSET: custom message"),
        ("${A", "missing '}'"),
        ("${A:-x", "missing '}'"),
        ("${}", "bad substitution"),
        ("${:x}", "bad substitution"),
        ("${A:#x}", "unsupported modifier (:#)"),
        ("${A=x}", "unsupported modifier (=)"),
        ("${A/x", "missing '/' in ${}"),
        ("'open", "matching single-quote"),
        ('"open', "matching double-quote"),
        ("${P#\\q}", "invalid escape"),
    ],
)
def test_errors(word: str, message: str) -> None:
    with pytest.raises(ExpansionError) as info:
        expand(word, ENV)
    assert message in str(info.value)


def test_question_mark_passes_when_set() -> None:
    assert expand("${EMPTY?unset}", ENV) == ""
    assert expand("${A:?x}", ENV) == "hello"


def test_heredoc_body_keeps_quotes() -> None:
    assert expand_heredoc("echo \"$A\" '$A'\n", ENV) == "echo \"hello\" 'hello'\n"
