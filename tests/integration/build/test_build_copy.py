"""COPY and ADD: .dockerignore, ownership and modes, archives (also hostile ones), URLs."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from build_cli import BuildCli

pytestmark = [pytest.mark.root, pytest.mark.slow]


def listing(cli: BuildCli, image: str, path: str) -> list[str]:
    out = cli("run", "--rm", image, "find", path).stdout.split()
    return sorted(p for p in out if p != path)


def test_dockerignore_with_exceptions(cli: BuildCli, ctx: Path) -> None:
    for name in (
        "keep.txt",
        "app/main.sh",
        "app/secret.key",
        "logs/a.log",
        "logs/important.log",
        "node/x/y.js",
    ):
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(name)
    (ctx / ".dockerignore").write_text("**/*.key\nlogs\n!logs/important.log\nnode\nDockerfile\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY . /ctx/\n")
    cli.build(ctx, "-t", "ign:1")
    assert listing(cli, "ign:1", "/ctx") == [
        "/ctx/.dockerignore",
        "/ctx/app",
        "/ctx/app/main.sh",
        "/ctx/keep.txt",
        "/ctx/logs",
        "/ctx/logs/important.log",
    ]
    # An ignored file cannot be named either.
    (ctx / "Dockerfile.bad").write_text("FROM busybox\nCOPY app/secret.key /\n")
    bad = cli.build(ctx, "-f", str(ctx / "Dockerfile.bad"), check=False)
    assert bad.returncode == 1 and "Dockerfile.bad:2" in bad.stderr and "app/secret.key" in bad.stderr


def test_copy_chown_chmod_globs_and_dirs(cli: BuildCli, ctx: Path) -> None:
    (ctx / "a.sh").write_text("a")
    (ctx / "b.sh").write_text("b")
    (ctx / "c.txt").write_text("c")
    (ctx / "dir/sub").mkdir(parents=True)
    (ctx / "dir/sub/f").write_text("f")
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "COPY --chown=nobody:nogroup --chmod=0750 *.sh /scripts/\n"
        "COPY dir /copied\n"
        "COPY c.txt /renamed.txt\n"
        "COPY --parents dir/sub/f /p/\n"
    )
    cli.build(ctx, "-t", "cp:1")
    out = cli("run", "--rm", "cp:1", "sh", "-c", "stat -c '%n %U %G %a' /scripts/*.sh; cat /copied/sub/f /renamed.txt"
              " /p/dir/sub/f").stdout  # fmt: skip
    assert out.splitlines() == [
        "/scripts/a.sh nobody nogroup 750",
        "/scripts/b.sh nobody nogroup 750",
        "fcf",
    ]
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY a.sh b.sh /not-a-dir\n")
    bad = cli.build(ctx, check=False)
    assert bad.returncode == 1 and "Dockerfile:2" in bad.stderr and "must be a directory" in bad.stderr


def _tar(entries: list[tuple[tarfile.TarInfo, bytes]], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:  # type: ignore[call-overload]
        for info, data in entries:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def _file(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


def test_add_extracts_local_archives(cli: BuildCli, ctx: Path) -> None:
    (ctx / "app.tar.gz").write_bytes(_tar([(_file("app/readme"), b"gz\n")]))
    (ctx / "other.tar.xz").write_bytes(_tar([(_file("xz-file"), b"xz\n")], "w:xz"))
    (ctx / "plain.gz").write_bytes(b"\x1f\x8b not really gzip")
    (ctx / "Dockerfile").write_text("FROM busybox\nADD app.tar.gz other.tar.xz /opt/\nADD plain.gz /opt/\n")
    cli.build(ctx, "-t", "add:1")
    assert cli("run", "--rm", "add:1", "cat", "/opt/app/readme", "/opt/xz-file").stdout == "gz\nxz\n"
    assert listing(cli, "add:1", "/opt") == ["/opt/app", "/opt/app/readme", "/opt/plain.gz", "/opt/xz-file"]


def test_add_of_a_hostile_archive_stays_inside_the_destination(
    cli: BuildCli, ctx: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (ctx / "evil.tar").write_bytes(
        _tar(
            [
                (_file("escape", tarfile.SYMTYPE, str(victim)), b""),
                (_file("escape/owned"), b"pwned"),
                (_file("root", tarfile.SYMTYPE, "/"), b""),
                (_file("root/etc/evil"), b"pwned"),
            ],
            "w",
        )
    )
    (ctx / "Dockerfile").write_text("FROM busybox\nADD evil.tar /x/\n")
    cli.build(ctx, "-t", "evil:1")
    assert not (victim / "owned").exists() and not Path("/etc/evil").exists()
    # Links resolve with the destination as their root: both files land below /x, nothing in the image's /etc.
    found = cli(
        "run",
        "--rm",
        "evil:1",
        "sh",
        "-c",
        "cat /x/etc/evil; echo; find /x -name owned; ls /etc/evil 2>&1; true",
    )
    assert found.stdout.splitlines() == [
        "pwned",
        f"/x{victim}/owned",
        "ls: /etc/evil: No such file or directory",
    ]
    (ctx / "climb.tar").write_bytes(_tar([(_file("../../../climbed"), b"x")], "w"))
    (ctx / "Dockerfile").write_text("FROM busybox\nADD climb.tar /x/\n")
    bad = cli.build(ctx, check=False)
    assert bad.returncode == 1 and "Dockerfile:2" in bad.stderr and "outside" in bad.stderr


def test_add_url_offline_is_a_clear_error(cli: BuildCli, ctx: Path) -> None:
    (ctx / "Dockerfile").write_text("FROM busybox\nADD http://127.0.0.1:9/file.txt /\n")
    bad = cli.build(ctx, check=False)
    assert bad.returncode == 1
    assert "Dockerfile:2" in bad.stderr and "cannot download" in bad.stderr
