"""Multi-stage builds, instruction semantics and the image config/history they produce."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from build_cli import BuildCli, steps

pytestmark = [pytest.mark.root, pytest.mark.slow]


def write(ctx: Path, dockerfile: str, **files: str) -> None:
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(text)


def run(cli: BuildCli, image: str, *cmd: str) -> str:
    return cli("run", "--rm", image, *cmd).stdout


def test_copy_from_and_target_build_only_needed_stages(cli: BuildCli, ctx: Path) -> None:
    write(
        ctx,
        "FROM busybox AS gen\n"
        "RUN echo generated > /gen.txt\n"
        "FROM busybox AS broken\n"
        "RUN exit 7\n"
        "FROM busybox AS app\n"
        "COPY --from=gen /gen.txt /srv/\n"
        "COPY page.html /srv/\n"
        'CMD ["cat", "/srv/gen.txt", "/srv/page.html"]\n'
        "FROM broken AS last\n",
        **{"page.html": "<p>hi</p>\n"},
    )
    proc = cli.build(ctx, "--target", "app", "-t", "app:1")
    assert "exit 7" not in proc.stderr  # the broken stage is not needed for app, so it never ran
    assert run(cli, "app:1") == "generated\n<p>hi</p>\n"
    # Without --target the last stage (based on the broken one) is built and fails.
    failed = cli.build(ctx, check=False)
    assert failed.returncode == 1


def test_env_arg_workdir_user_shell_apply_to_later_steps(cli: BuildCli, ctx: Path) -> None:
    write(
        ctx,
        "FROM busybox\n"
        "ARG GREETING=hi\n"
        "ENV TARGET=world DIR=/work\n"
        "WORKDIR $DIR\n"
        'RUN echo "$GREETING $TARGET" > out.txt && pwd >> out.txt\n'
        "WORKDIR sub\n"
        "RUN pwd > /work/pwd.txt\n"
        "USER nobody\n"
        "RUN id -u > /tmp/uid.txt\n"
        "USER root\n"
        'SHELL ["/bin/sh", "-ec"]\n'
        'RUN echo "$0 $-" > /work/shell.txt\n'
        "COPY a.txt $DIR/copied-${TARGET}.txt\n",
        **{"a.txt": "A\n"},
    )
    cli.build(ctx, "--build-arg", "GREETING=hello", "-t", "t:1")
    assert run(cli, "t:1", "cat", "/work/out.txt") == "hello world\n/work\n"
    assert run(cli, "t:1", "cat", "/work/pwd.txt") == "/work/sub\n"
    assert run(cli, "t:1", "cat", "/tmp/uid.txt") == "65534\n"
    assert "e" in run(cli, "t:1", "cat", "/work/shell.txt").split()[1]
    assert run(cli, "t:1", "cat", "/work/copied-world.txt") == "A\n"
    # ARG values are build-time only: not in the image's environment.
    assert "GREETING" not in run(cli, "t:1", "env")


def test_image_config_and_history_like_buildkit(cli: BuildCli, ctx: Path) -> None:
    write(
        ctx,
        "FROM busybox\n"
        "MAINTAINER someone@example.com\n"
        'LABEL org.example.a=1 "b c"="two words"\n'
        "ENV A=1\n"
        "ENV B=$A-2\n"
        "EXPOSE 80 53/udp 8000-8001\n"
        "VOLUME /data\n"
        'VOLUME ["/cache"]\n'
        "WORKDIR /app\n"
        "USER nobody:nogroup\n"
        "STOPSIGNAL SIGQUIT\n"
        "HEALTHCHECK --interval=30s --retries=3 CMD wget -q localhost || exit 1\n"
        'SHELL ["/bin/sh", "-xc"]\n'
        "ONBUILD RUN echo triggered\n"
        'ENTRYPOINT ["/bin/echo"]\n'
        "RUN true\n",
    )
    cli.build(ctx, "-t", "cfg:1", "--label", "from-cli=yes")
    store = cli.store
    record = store.get("cfg:1")
    raw = store.config(record).raw
    c = raw["config"]
    assert raw["author"] == "someone@example.com"
    assert c["Labels"] == {"org.example.a": "1", "b c": "two words", "from-cli": "yes"}
    assert c["Env"][-2:] == ["A=1", "B=1-2"]
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}
    assert c["Volumes"] == {"/data": {}, "/cache": {}}
    assert c["WorkingDir"] == "/app"
    assert c["User"] == "nobody:nogroup"
    assert c["StopSignal"] == "SIGQUIT"
    assert c["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q localhost || exit 1"],
        "Interval": 30_000_000_000,
        "Retries": 3,
    }
    assert c["Shell"] == ["/bin/sh", "-xc"]
    assert c["OnBuild"] == ["RUN echo triggered"]
    assert c["Entrypoint"] == ["/bin/echo"]
    assert "Cmd" not in c  # ENTRYPOINT resets the CMD inherited from busybox (BuildKit)
    history = raw["history"][1:]
    by = [h["created_by"] for h in history]
    assert by[0] == "MAINTAINER someone@example.com"
    assert "ENV B=1-2" in by
    assert 'ENTRYPOINT ["/bin/echo"]' in by
    assert "EXPOSE map[53/udp:{} 80/tcp:{} 8000/tcp:{} 8001/tcp:{}]" in by
    assert by[-1] == "RUN /bin/sh -xc true # buildkit"
    assert history[-1].get("empty_layer") is True  # `RUN true` changed nothing
    assert all(h.get("empty_layer") for h in history if not h["created_by"].startswith(("WORKDIR", "RUN")))
    assert len(raw["rootfs"]["diff_ids"]) == 1 + sum(not h.get("empty_layer") for h in history)
    # ONBUILD triggers run when the image is used as a base, and do not pass on to grandchildren.
    (ctx / "Dockerfile").write_text("FROM cfg:1\nUSER root\n")
    child = cli.build(ctx, "-t", "child:1")
    assert "triggered" in child.stderr
    assert "OnBuild" not in store.config(store.get("child:1")).config


def test_heredocs_for_run_and_copy(cli: BuildCli, ctx: Path) -> None:
    write(
        ctx,
        "FROM busybox\n"
        "ARG NAME=heredoc\n"
        "COPY <<EOF /etc/greeting\n"
        "hello $NAME\n"
        "EOF\n"
        "COPY <<'EOF' /etc/raw\n"
        "not $EXPANDED\n"
        "EOF\n"
        "RUN <<EOF\n"
        "set -e\n"
        "echo one > /one\n"
        "echo two > /two\n"
        "EOF\n"
        "RUN cat <<EOT > /three\n"
        "three\n"
        "EOT\n",
    )
    cli.build(ctx, "-t", "hd:1")
    assert run(cli, "hd:1", "cat", "/etc/greeting", "/etc/raw", "/one", "/two", "/three") == (
        "hello heredoc\nnot $EXPANDED\none\ntwo\nthree\n"
    )


def test_context_from_stdin_tar_dockerfile_only_and_iidfile(cli: BuildCli, ctx: Path, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (
            ("Dockerfile", b"FROM busybox\nCOPY hello.txt /\n"),
            ("hello.txt", b"from a tar\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    iid = tmp_path / "iid"
    proc = cli("build", "-q", "--iidfile", str(iid), "-t", "tarctx:1", "-", input=buf.getvalue())
    assert proc.stdout.strip() == iid.read_text() == cli.store.get("tarctx:1").config
    assert run(cli, "tarctx:1", "cat", "/hello.txt") == "from a tar\n"
    only = cli("build", "-q", "-t", "dfonly:1", "-", input=b"FROM busybox\nRUN echo ok > /ok\n")
    assert only.stdout.startswith("sha256:")
    assert run(cli, "dfonly:1", "cat", "/ok") == "ok\n"
    # A Dockerfile on stdin cannot COPY anything: its context is empty.
    bad = cli("build", "-", input=b"FROM busybox\nCOPY x /\n", check=False)
    assert bad.returncode == 1 and "Dockerfile:2" in bad.stderr


def test_plain_progress_format(cli: BuildCli, ctx: Path) -> None:
    write(ctx, "FROM busybox\nRUN echo line-one && echo line-two\n")
    proc = cli.build(ctx)
    assert "#2 [2/2] RUN echo line-one && echo line-two" in proc.stderr
    assert any(line.startswith("#2 ") and line.endswith(" line-two") for line in proc.stderr.splitlines())
    assert steps(proc.stderr) == {"FROM busybox": "DONE", "RUN echo line-one && echo line-two": "DONE"}
