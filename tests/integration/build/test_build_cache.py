"""The build cache: reused exactly when a step's inputs are unchanged, never otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from build_cli import BuildCli, steps

from intermodal.engine.build.context import FileIndex

pytestmark = [pytest.mark.root, pytest.mark.slow]

DOCKERFILE = """\
FROM busybox
ARG MODE
RUN echo base > /base
COPY one.txt /one.txt
RUN cat /one.txt > /derived
COPY two.txt /two.txt
RUN echo "mode=$MODE" > /mode
CMD ["cat", "/derived"]
"""


@pytest.fixture
def project(ctx: Path) -> Path:
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "one.txt").write_text("one\n")
    (ctx / "two.txt").write_text("two\n")
    return ctx


def test_noop_rebuild_is_all_cached_with_the_same_image_id(cli: BuildCli, project: Path) -> None:
    first = cli.build(project, "-q")
    again = cli.build(project)
    status = steps(again.stderr)
    assert [s for name, s in status.items() if not name.startswith("FROM")] == ["CACHED"] * 5
    assert cli.image_id(again) == first.stdout.strip()


def test_changed_content_invalidates_that_step_and_later_only(cli: BuildCli, project: Path) -> None:
    cli.build(project)
    (project / "two.txt").write_text("TWO\n")
    status = steps(cli.build(project, "-t", "c:1").stderr)
    assert status["RUN echo base > /base"] == "CACHED"
    assert status["COPY one.txt /one.txt"] == "CACHED"
    assert status["RUN cat /one.txt > /derived"] == "CACHED"
    assert status["COPY two.txt /two.txt"] == "DONE"
    assert status['RUN echo "mode=$MODE" > /mode'] == "DONE"
    assert cli("run", "--rm", "c:1", "cat", "/two.txt").stdout == "TWO\n"
    # Same size, same content length: still a change.
    (project / "one.txt").write_text("ONE\n")
    status = steps(cli.build(project).stderr)
    assert status["COPY one.txt /one.txt"] == "DONE"


def test_touching_mtime_or_mode_of_unused_file_does_not_invalidate(cli: BuildCli, project: Path) -> None:
    first = cli.build(project, "-q")
    os.utime(project / "one.txt", (1, 1))
    (project / "unused.txt").write_text("not copied\n")
    again = cli.build(project)
    assert set(steps(again.stderr).values()) <= {"CACHED", "DONE"}
    assert [s for name, s in steps(again.stderr).items() if not name.startswith("FROM")] == ["CACHED"] * 5
    assert cli.image_id(again) == first.stdout.strip()
    # A mode change is content for COPY (it is copied into the layer).
    os.chmod(project / "one.txt", 0o600)
    assert steps(cli.build(project).stderr)["COPY one.txt /one.txt"] == "DONE"


def test_build_arg_change_invalidates_from_its_first_use(cli: BuildCli, ctx: Path) -> None:
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nCOPY one.txt /\nARG MODE\nCOPY two.txt /\nRUN echo $MODE > /mode\nRUN cat /mode\n"
    )
    (ctx / "one.txt").write_text("1")
    (ctx / "two.txt").write_text("2")
    cli.build(ctx, "--build-arg", "MODE=a")
    status = steps(cli.build(ctx, "--build-arg", "MODE=b", "-t", "m:1").stderr)
    # The ARG line itself and a COPY that does not use it stay cached; RUN sees MODE in its environment.
    assert status["COPY one.txt /"] == status["COPY two.txt /"] == "CACHED"
    assert status["RUN echo $MODE > /mode"] == status["RUN cat /mode"] == "DONE"
    assert cli("run", "--rm", "m:1", "cat", "/mode").stdout == "b\n"
    assert steps(cli.build(ctx, "--build-arg", "MODE=a").stderr)["RUN cat /mode"] == "CACHED"


def test_no_cache_and_builder_prune(cli: BuildCli, project: Path) -> None:
    cli.build(project)
    status = steps(cli.build(project, "--no-cache").stderr)
    assert "CACHED" not in status.values()
    entries = cli.root / "buildcache" / "entries"
    assert any(entries.iterdir())
    pruned = cli("builder", "prune", "-a", "-f").stdout
    assert "Total reclaimed space" in pruned
    assert not any(entries.iterdir())
    assert "CACHED" not in steps(cli.build(project).stderr).values()
    # Image GC keeps the blobs of cache entries (store pins), so a later build still finds them cached.
    cli("image", "prune", "-f")  # removes the dangling images this test built
    assert [s for name, s in steps(cli.build(project).stderr).items() if not name.startswith("FROM")] == [
        "CACHED"
    ] * 5


def test_metadata_cache_reads_only_changed_files(tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(1 << 16))
    index_file = tmp_path / "index.json"
    first = FileIndex(index_file)
    digest = first.sha256("data.bin", str(data), os.lstat(data))
    first.save()
    assert first.hashed == 1 << 16
    again = FileIndex(index_file)
    assert again.sha256("data.bin", str(data), os.lstat(data)) == digest
    assert again.hashed == 0  # size, mtime, ctime and inode unchanged: not read
    os.utime(data, (5, 5))
    assert again.sha256("data.bin", str(data), os.lstat(data)) == digest
    assert again.hashed == 1 << 16  # metadata changed: read again, same digest


def test_cache_mount_persists_but_stays_out_of_the_layer(cli: BuildCli, ctx: Path) -> None:
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "ARG N\n"
        "RUN --mount=type=cache,target=/var/cache/app sh -c 'echo run$N >> /var/cache/app/log;"
        " cat /var/cache/app/log > /seen'\n"
    )
    cli.build(ctx, "--build-arg", "N=1")
    cli.build(ctx, "--build-arg", "N=2", "-t", "cm:1")
    assert cli("run", "--rm", "cm:1", "cat", "/seen").stdout == "run1\nrun2\n"
    # The mount point stub is gone too: the layer does not even have /var/cache.
    assert cli("run", "--rm", "cm:1", "ls", "-a", "/var").stdout.split() == [".", ".."]
