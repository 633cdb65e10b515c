"""RUN --mount=type=secret: visible to its step only, never in a layer, the history, the config or a key."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from build_cli import BuildCli, blob_texts, steps

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_secret_is_never_in_any_blob(cli: BuildCli, ctx: Path, tmp_path: Path) -> None:
    value = f"s3cr3t-{secrets.token_hex(16)}"
    src = tmp_path / "token"
    src.write_text(value)
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "RUN --mount=type=secret,id=token cat /run/secrets/token | wc -c > /len\n"
        "RUN --mount=type=secret,id=token,target=/etc/tok,uid=65534,mode=0400 "
        "sh -c 'stat -c %u:%a /etc/tok > /meta; ls /run/secrets 2>&1 | wc -l > /left'\n"
        'RUN --mount=type=secret,id=token,env=TOKEN sh -c \'test "$TOKEN" = "$(cat /run/secrets/token 2>/dev/null)"'
        " || echo env-ok > /env'\n"
    )
    proc = cli.build(ctx, "--secret", f"id=token,src={src}", "-t", "sec:1")
    assert value not in proc.stderr
    assert cli("run", "--rm", "sec:1", "cat", "/len", "/meta", "/env").stdout.split() == [
        str(len(value)), "65534:400", "env-ok",
    ]  # fmt: skip
    # The mount points the runtime created are gone: no /run/secrets, no /etc/tok in the image.
    assert (
        cli("run", "--rm", "sec:1", "sh", "-c", "ls /run/secrets /etc/tok 2>&1 | wc -l").stdout.strip() == "2"
    )
    for blob in blob_texts(cli.store):
        assert value.encode() not in blob
    for path in (cli.root / "buildcache").rglob("*"):
        if path.is_file():
            assert value.encode() not in path.read_bytes()
    # A new secret value does not invalidate the cache (its id, not its value, is in the key).
    src.write_text("another value")
    assert set(s for n, s in steps(cli.build(ctx, "--secret", f"id=token,src={src}").stderr).items()
               if n.startswith("RUN")) == {"CACHED"}  # fmt: skip


def test_missing_required_secret_fails(cli: BuildCli, ctx: Path) -> None:
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nRUN --mount=type=secret,id=nope,required cat /run/secrets/nope\n"
    )
    proc = cli.build(ctx, check=False)
    assert proc.returncode == 1 and "Dockerfile:2" in proc.stderr and "nope" in proc.stderr
