"""`build` (also `image build`) and `builder prune`: Docker's flags, BuildKit's progress output."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from intermodal.cli.output import human_size
from intermodal.errors import IntermodalError, InvalidArgument


def _pairs(values: tuple[str, ...], flag: str) -> dict[str, str]:
    """`--build-arg K=V` / `--label K=V`; a bare `--build-arg K` takes K from the environment, as Docker does."""
    import os

    out: dict[str, str] = {}
    for value in values:
        key, eq, val = value.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {flag} {value!r}: expected KEY=VALUE")
        if eq:
            out[key] = val
        elif flag == "--build-arg" and key in os.environ:
            out[key] = os.environ[key]
        elif flag == "--label":
            out[key] = ""
    return out


class BuildFailed(IntermodalError):
    """`docker build` exits 1 whatever went wrong, and scripts test for that."""

    exit_code = 1


@click.command("build")
@click.argument("context")
@click.option("-t", "--tag", "tags", multiple=True, help="Name and optionally a tag (name:tag).")
@click.option("-f", "--file", "dockerfile", help="Name of the Dockerfile (default: CONTEXT/Dockerfile).")
@click.option("--build-arg", "build_args", multiple=True, help="Set a build-time variable (KEY=VALUE).")
@click.option("--target", help="Build this stage and the stages it needs, not the last one.")
@click.option("--no-cache", is_flag=True, help="Do not use the build cache.")
@click.option("--pull", is_flag=True, help="Always pull the base images.")
@click.option("--label", "labels", multiple=True, help="Set a label on the image (KEY=VALUE).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image ID.")
@click.option("--iidfile", help="Write the image ID to this file.")
@click.option(
    "--secret", "secrets", multiple=True, help="Secret for RUN --mount=type=secret (id=ID,src=PATH|env=VAR)."
)
@click.option("--progress", type=click.Choice(["auto", "plain", "tty", "quiet"]), default="auto",
              help="Progress output: plain for logs, tty for a live view.")  # fmt: skip
@click.option(
    "--runtime", default="intermodal", help="OCI runtime for RUN steps (intermodal, crun, runc, path)."
)
@click.pass_context
def build_cmd(
    ctx: click.Context,
    context: str,
    tags: tuple[str, ...],
    dockerfile: str | None,
    build_args: tuple[str, ...],
    target: str | None,
    no_cache: bool,
    pull: bool,
    labels: tuple[str, ...],
    quiet: bool,
    iidfile: str | None,
    secrets: tuple[str, ...],
    progress: str,
    runtime: str,
) -> None:
    """Build an image from a Dockerfile (CONTEXT is a directory, or - for a tar on standard input)."""
    from intermodal.engine.build.executor import BuildOptions, build
    from intermodal.engine.build.progress import make_progress
    from intermodal.engine.build.run import parse_secret
    from intermodal.image import reference

    for tag in tags:
        reference.parse(tag)
    parsed = [parse_secret(s) for s in secrets]
    opts = BuildOptions(
        context=context,
        dockerfile=dockerfile,
        tags=list(tags),
        build_args=_pairs(build_args, "--build-arg"),
        target=target,
        no_cache=no_cache,
        pull=pull,
        labels=_pairs(labels, "--label"),
        secrets={s.id: s for s in parsed},
        runtime=runtime,
        stdin=sys.stdin.buffer if "-" in (context, dockerfile) else None,
    )
    display = make_progress(progress, quiet or progress == "quiet")
    try:
        result = build(ctx.find_root().obj["root"], opts, display)
    except IntermodalError as e:
        display.close()
        if ctx.find_root().obj.get("debug"):
            raise
        raise BuildFailed(str(e)) from e
    display.close()
    for warning in result.warnings:
        display.note(warning)
    image_id = result.record.config
    if iidfile:
        Path(iidfile).write_text(image_id)
    if quiet or progress == "quiet":
        click.echo(image_id)
        return
    click.echo(f"Successfully built {image_id.removeprefix('sha256:')[:12]}")
    for tag in tags:
        click.echo(f"Successfully tagged {reference.parse(tag).familiar}")


@click.group("builder")
def builder_group() -> None:
    """Manage the build cache."""


@builder_group.command("prune")
@click.option(
    "-a", "--all", "all_entries", is_flag=True, help="Remove all build cache, not just dangling entries."
)
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
def builder_prune_cmd(ctx: click.Context, all_entries: bool, force: bool) -> None:
    """Remove build cache entries (with -a also cache mounts and context metadata)."""
    from intermodal.engine.build.cache import BuildCache
    from intermodal.image.store import ImageStore

    if not force:
        what = "all build cache" if all_entries else "all dangling build cache"
        click.confirm(f"WARNING! This will remove {what}.\nAre you sure you want to continue?", abort=True)
    root = ctx.find_root().obj["root"]
    removed, reclaimed = BuildCache(root, ImageStore(root / "images")).prune(all_entries=all_entries)
    click.echo(f"Deleted build cache objects: {removed}")
    click.echo(f"Total reclaimed space: {human_size(reclaimed)}")
