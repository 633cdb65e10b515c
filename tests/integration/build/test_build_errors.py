"""Bad input: every error names the Dockerfile line, exits 1, and leaves no image and no cache entry."""

from __future__ import annotations

from pathlib import Path

import pytest
from build_cli import BuildCli

pytestmark = [pytest.mark.root, pytest.mark.slow]


def images(cli: BuildCli) -> list[str]:
    return [r.config for r in cli.store.records()]


def entries(cli: BuildCli) -> set[str]:
    path = cli.root / "buildcache" / "entries"
    return {p.name for p in path.iterdir()} if path.is_dir() else set()


@pytest.mark.parametrize(
    ("dockerfile", "line", "words"),
    [
        ("FROM busybox\nCOPY ../outside /x\n", 2, "outside the build context"),
        ("FROM busybox\nRUN true\nCOPY missing.txt /x\n", 3, "missing.txt"),
        ("FROM busybox\nFROBNICATE all\n", 2, "unknown instruction"),
        ("FROM busybox\nRUN <<EOF\necho never ends\n", 2, "unterminated heredoc"),
        ('FROM busybox\nRUN echo "unterminated\n', None, ""),
        ("FROM no-such-image:1.0\n", 1, "no-such-image:1.0"),
        ("FROM busybox AS a\nCOPY --from=b / /\nFROM busybox AS b\nCOPY --from=a / /\n", 3, "circular"),
        ("FROM busybox\nUSER nobody\nCOPY --chown=nosuchuser Dockerfile /\n", 3, "nosuchuser"),
    ],
)
def test_bad_input_names_the_line(
    cli: BuildCli, ctx: Path, dockerfile: str, line: int | None, words: str
) -> None:
    (ctx / "Dockerfile").write_text(dockerfile)
    before = images(cli)
    proc = cli.build(ctx, "-t", "bad:1", check=False)
    if line is None:  # the shell, not the parser, finds this one: still exit 1 and no image
        assert proc.returncode == 1
    else:
        assert proc.returncode == 1, proc.stderr
        assert f"Dockerfile:{line}" in proc.stderr and words in proc.stderr
    assert images(cli) == before


def test_failing_run_shows_exit_code_and_last_lines(cli: BuildCli, ctx: Path) -> None:
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nRUN echo ok > /ok\nRUN for i in $(seq 1 30); do echo line-$i; done; echo oops >&2; exit 3\n"
    )
    before = images(cli)
    proc = cli("build", "-q", "-t", "fail:1", str(ctx), check=False)  # quiet: only the failure is shown
    assert proc.returncode == 1
    assert "exit code: 3" in proc.stderr and "Dockerfile:3" in proc.stderr
    assert "line-30" in proc.stderr and "oops" in proc.stderr and "line-5\n" not in proc.stderr
    assert images(cli) == before
    cached = entries(cli)
    # The step before the failure is cached; the failing one is not, so fixing it re-runs only it.
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo ok > /ok\nRUN echo fixed\n")
    again = cli.build(ctx)
    assert "#2 CACHED" in again.stderr and "fixed" in again.stderr
    assert len(entries(cli)) == len(cached) + 1
