""".dockerignore rules, with cases from Docker's documentation and moby/patternmatcher's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from intermodal.build.dockerignore import (
    Matcher,
    context_patterns,
    go_clean,
    read_dockerignore,
    read_patterns,
    walk,
)
from intermodal.errors import InvalidArgument


def excluded(patterns: list[str], path: str) -> bool:
    return Matcher(patterns).excluded(path)


def test_docs_example() -> None:
    # The example from the Dockerfile reference (.dockerignore section).
    pats = read_patterns("# comment\n*/temp*\n*/*/temp*\ntemp?\n")
    assert pats == ["*/temp*", "*/*/temp*", "temp?"]
    assert excluded(pats, "somedir/temporary.txt")
    assert excluded(pats, "somedir/temp")
    assert excluded(pats, "somedir/subdir/temporary.txt")
    assert excluded(pats, "tempa")
    assert not excluded(pats, "temp")
    assert not excluded(pats, "temporary.txt")
    assert not excluded(pats, "a/b/c/temp")


@pytest.mark.parametrize(
    ("pattern", "path", "hit"),
    [
        ("**/*.go", "main.go", True),
        ("**/*.go", "a/b/c/main.go", True),
        ("**/*.go", "main.goo", False),
        ("**", "anything/at/all", True),
        ("a/**", "a/b/c", True),
        ("a/**", "ab", False),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("**/foo", "foo", True),
        ("**/foo", "x/foo", True),
        ("**/foo", "xfoo", False),
        ("*.md", "README.md", True),
        ("*.md", "docs/README.md", False),  # * never crosses a directory
        ("docs", "docs/deep/file.txt", True),  # a directory match excludes its contents
        ("/abs/path", "abs/path", True),  # leading / is dropped
        ("./x/../y", "y", True),  # filepath.Clean
        ("../outside", "outside", False),  # never reaches into the context
        ("a?c", "abc", True),
        ("a?c", "a/c", False),
        ("[ab]x", "bx", True),
        ("[^a]x", "bx", True),
        ("[!a]x", "bx", False),  # moby hands brackets to Go's regexp: [!a] is the set {!, a}
        ("[!a]x", "!x", True),
        ("file(1).txt", "file(1).txt", True),  # regex specials are literal
        ("a+b", "aab", False),
        ("\\*", "*", True),
        ("data/*/keep", "data/x/keep/inner", True),
    ],
)
def test_patterns(pattern: str, path: str, hit: bool) -> None:
    assert excluded(read_patterns(pattern), path) is hit


def test_exceptions_last_match_wins() -> None:
    pats = read_patterns("*.md\n!README.md\n")
    assert excluded(pats, "CHANGES.md")
    assert not excluded(pats, "README.md")
    pats = read_patterns("*.md\n!README*.md\nREADME-secret.md\n")
    assert not excluded(pats, "README.md") and excluded(pats, "README-secret.md")
    # an exception re-includes only what it matches
    pats = read_patterns("build\n!build/keep.txt\n")
    assert excluded(pats, "build/other.txt") and not excluded(pats, "build/keep.txt")


def test_comments_blank_lines_and_bom() -> None:
    assert read_patterns("\ufeff# c\n\n  spaced  \n ! neg \n#x\n  #not-a-comment\n") == [
        "spaced",
        "!neg",
        "#not-a-comment",
    ]


def test_illegal_and_bad_patterns() -> None:
    with pytest.raises(InvalidArgument):
        Matcher(["!"])
    with pytest.raises(InvalidArgument):
        Matcher(["[unclosed"]).excluded("x")


def test_root_is_never_excluded() -> None:
    assert not excluded(["*"], ".")
    assert not excluded(["**"], "")


def test_go_clean() -> None:
    assert [go_clean(p) for p in ["", "a//b/", "./a/./b", "a/../..", "//x", "/../a"]] == [
        ".",
        "a/b",
        "a/b",
        "..",
        "/x",
        "/a",
    ]


def test_dockerfile_and_dockerignore_are_still_sent() -> None:
    pats = context_patterns(["*", "!src"], "Dockerfile")
    m = Matcher(pats)
    assert not m.excluded("Dockerfile") and not m.excluded(".dockerignore")
    assert m.excluded("other") and not m.excluded("src/x")
    assert context_patterns(["*.tmp"], "Dockerfile") == ["*.tmp"]
    assert not Matcher(context_patterns(["build"], "build/Dockerfile")).excluded("build/Dockerfile")


def _tree(root: Path, files: list[str]) -> None:
    for rel in files:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(rel)


def test_walk(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        [
            "Dockerfile",
            "README.md",
            "NOTES.md",
            "src/app.py",
            "node_modules/x/index.js",
            "logs/a.log",
            "keep/me",
        ],
    )
    (tmp_path / "link").symlink_to("src")
    m = Matcher(read_patterns("*.md\n!README.md\nnode_modules\nlogs\n"))
    assert list(walk(str(tmp_path), m)) == [
        "Dockerfile",
        "README.md",
        "keep",
        "keep/me",
        "link",
        "src",
        "src/app.py",
    ]


def test_walk_descends_only_when_an_exception_may_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path, ["vendor/a/keep.txt", "vendor/a/drop.txt", "vendor/b/drop.txt", "big/deep/file"])
    m = Matcher(read_patterns("vendor\nbig\n!vendor/*/keep.txt\n"))
    assert m.may_include_below("vendor") and m.may_include_below("vendor/a")
    assert not m.may_include_below("big")
    entered: list[str] = []
    import os

    real = os.scandir

    def spy(path: str):  # type: ignore[no-untyped-def]
        entered.append(os.path.relpath(path, tmp_path))
        return real(path)

    monkeypatch.setattr(os, "scandir", spy)
    # the excluded parents are yielded once, just before the first entry they lead to
    assert list(walk(str(tmp_path), m)) == ["vendor", "vendor/a", "vendor/a/keep.txt"]
    assert "big" not in entered


def test_walk_with_double_star_exception(tmp_path: Path) -> None:
    _tree(tmp_path, ["a/b/c/keep.txt", "a/b/other", "a/x/keep.txt"])
    m = Matcher(read_patterns("a\n!**/keep.txt\n"))
    assert list(walk(str(tmp_path), m)) == ["a", "a/b", "a/b/c", "a/b/c/keep.txt", "a/x", "a/x/keep.txt"]


def test_read_dockerignore_prefers_dockerfile_specific(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("general\n")
    assert read_dockerignore(str(tmp_path)) == ["general"]
    df = tmp_path / "app.Dockerfile"
    (tmp_path / "app.Dockerfile.dockerignore").write_text("specific\n")
    assert read_dockerignore(str(tmp_path), str(df)) == ["specific"]
    assert read_dockerignore(str(tmp_path / "nothing")) == []
