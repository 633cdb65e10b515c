"""Image commands: images, image ls/inspect/history/prune/rm/tag/save/load/import/bootstrap."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from intermodal.cli.build import build_cmd as _build_cmd
from intermodal.cli.output import for_each, human_size, print_formatted, print_table, time_ago, write_archive
from intermodal.cli.registry import pull_cmd, push_cmd
from intermodal.engine.images import ImageService
from intermodal.errors import IntermodalError, InvalidArgument


def _service(ctx: click.Context) -> ImageService:
    return ImageService(ctx.find_root().obj["root"])


def _ref_parts(name: str) -> tuple[str, str]:
    from intermodal.image import reference

    ref = reference.parse(name)
    return ref.familiar_name, ref.tag or "<none>"


def _image_rows(service: ImageService, filters: tuple[str, ...], repo: str | None) -> list[dict[str, Any]]:
    dangling: bool | None = None
    patterns = []
    for f in filters:
        key, _, value = f.partition("=")
        if key == "dangling":
            dangling = value.lower() in ("true", "1")
        elif key == "reference":
            patterns.append(value)
        else:
            raise InvalidArgument(
                f"invalid filter {f!r}: supported are dangling=true|false and reference=PATTERN"
            )
    rows = []
    for record in service.records(dangling=dangling):
        names: list[str | None] = list(record.names) or [None]
        for name in names:
            repo_name, tag = _ref_parts(name) if name else ("<none>", "<none>")
            if repo and not _matches_repo(repo, repo_name, tag):
                continue
            if patterns and not any(_matches_pattern(p, repo_name, tag) for p in patterns):
                continue
            digest = next(
                (rd.split("@", 1)[1] for rd in record.repo_digests if rd.startswith(f"{repo_name}@")), ""
            )
            rows.append(
                {
                    "Containers": "N/A",
                    "CreatedAt": record.created,
                    "CreatedSince": time_ago(record.created) if record.created else "N/A",
                    "Digest": digest or "<none>",
                    "ID": record.config,
                    "Repository": repo_name,
                    "SharedSize": "N/A",
                    "Size": human_size(record.size),
                    "Tag": tag,
                    "UniqueSize": "N/A",
                    "VirtualSize": human_size(record.size),
                }
            )
    return rows


def _matches_repo(wanted: str, repo: str, tag: str) -> bool:
    name, _, want_tag = wanted.partition(":")
    from intermodal.image import reference

    try:
        full = reference.parse(name, default_tag=False).familiar_name
    except IntermodalError:
        return False
    return full == repo and (not want_tag or want_tag == tag)


def _matches_pattern(pattern: str, repo: str, tag: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(f"{repo}:{tag}", pattern) or fnmatch.fnmatchcase(repo, pattern)


@click.command("images")
@click.argument("repository", required=False)
@click.option("-a", "--all", "show_all", is_flag=True, help="Show all images (intermediate ones too).")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--digests", is_flag=True, help="Show digests.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="Filter: dangling=true|false, reference=PATTERN."
)
@click.option("--format", "fmt", help="'json', 'table TEMPLATE' or a Go template.")
@click.pass_context
def images_cmd(
    ctx: click.Context,
    repository: str | None,
    show_all: bool,
    quiet: bool,
    digests: bool,
    no_trunc: bool,
    filters: tuple[str, ...],
    fmt: str | None,
) -> None:
    """List images."""
    rows = _image_rows(_service(ctx), filters, repository)
    if not no_trunc:
        for row in rows:
            row["ID"] = row["ID"].removeprefix("sha256:")[:12]
    if quiet:
        seen = []
        for row in rows:
            if row["ID"] not in seen:
                seen.append(row["ID"])
        click.echo("\n".join(seen)) if seen else None
        return
    if fmt:
        print_formatted(
            fmt,
            rows,
            {
                "Repository": "REPOSITORY",
                "Tag": "TAG",
                "ID": "IMAGE ID",
                "CreatedSince": "CREATED",
                "Size": "SIZE",
                "Digest": "DIGEST",
            },
        )
        return
    headers = ["REPOSITORY", "TAG"] + (["DIGEST"] if digests else []) + ["IMAGE ID", "CREATED", "SIZE"]
    table = [
        [r["Repository"], r["Tag"]]
        + ([r["Digest"]] if digests else [])
        + [r["ID"], r["CreatedSince"], r["Size"]]
        for r in rows
    ]
    print_table(headers, table)


@click.command("inspect")
@click.argument("images", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", help="Format the output using a Go template.")
@click.pass_context
def inspect_cmd(ctx: click.Context, images: tuple[str, ...], fmt: str | None) -> None:
    """Display detailed information on one or more images."""
    service = _service(ctx)
    results = [service.inspect(spec) for spec in images]
    if fmt:
        print_formatted(fmt, results, {})
    else:
        click.echo(json.dumps(results, indent=4))


@click.command("history")
@click.argument("image")
@click.option(
    "-H", "--human", default=True, type=bool, help="Print sizes and dates in human readable format."
)
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--format", "fmt", help="'json', 'table TEMPLATE' or a Go template.")
@click.pass_context
def history_cmd(
    ctx: click.Context, image: str, human: bool, no_trunc: bool, quiet: bool, fmt: str | None
) -> None:
    """Show the history of an image."""
    rows = []
    for entry in _service(ctx).history(image):
        ident = entry.get("id", "<missing>")
        if ident != "<missing>" and not no_trunc:
            ident = ident.removeprefix("sha256:")[:12]
        created_by = entry["created_by"]
        if not no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append(
            {
                "ID": ident,
                "CreatedSince": time_ago(entry["created"])
                if human and entry["created"]
                else entry["created"],
                "CreatedAt": entry["created"],
                "CreatedBy": created_by,
                "Size": human_size(entry["size"]) if human else str(entry["size"]),
                "Comment": entry["comment"],
            }
        )
    if quiet:
        click.echo("\n".join(r["ID"] for r in rows))
    elif fmt:
        print_formatted(
            fmt,
            rows,
            {
                "ID": "IMAGE",
                "CreatedSince": "CREATED",
                "CreatedBy": "CREATED BY",
                "Size": "SIZE",
                "Comment": "COMMENT",
            },
        )
    else:
        print_table(
            ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            [[r["ID"], r["CreatedSince"], r["CreatedBy"], r["Size"], r["Comment"]] for r in rows],
        )


@click.command("tag")
@click.argument("source")
@click.argument("target")
@click.pass_context
def tag_cmd(ctx: click.Context, source: str, target: str) -> None:
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE."""
    _service(ctx).tag(source, target)


@click.command("rmi")
@click.argument("images", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Force removal of the image.")
@click.pass_context
def rmi_cmd(ctx: click.Context, images: tuple[str, ...], force: bool) -> None:
    """Remove one or more images."""
    service = _service(ctx)

    def remove(spec: str) -> None:
        for line in service.remove(spec, force=force):
            click.echo(line)

    for_each(images, remove)


@click.command("prune")
@click.option(
    "-a", "--all", "all_images", is_flag=True, help="Remove all unused images, not just dangling ones."
)
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
def prune_cmd(ctx: click.Context, all_images: bool, force: bool) -> None:
    """Remove unused images."""
    if not force:
        what = (
            "all images without at least one container associated to them"
            if all_images
            else "all dangling images"
        )
        click.confirm(f"WARNING! This will remove {what}.\nAre you sure you want to continue?", abort=True)
    deleted, reclaimed = _service(ctx).prune(all_images=all_images)
    if deleted:
        click.echo("Deleted Images:")
        for image_id in deleted:
            click.echo(f"deleted: {image_id}")
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(reclaimed)}")


_SAVE_FORMATS = {"docker-archive": "docker", "oci-archive": "oci-archive", "oci-dir": "oci-dir"}


@click.command("save")
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", help="Write to a file (a directory for oci-dir), instead of STDOUT.")
@click.option(
    "--format", "fmt", type=click.Choice(list(_SAVE_FORMATS)), default="docker-archive", show_default=True
)
@click.pass_context
def save_cmd(ctx: click.Context, images: tuple[str, ...], output: str | None, fmt: str) -> None:
    """Save one or more images to a tar archive (streamed to STDOUT by default)."""
    service = _service(ctx)
    kind = _SAVE_FORMATS[fmt]
    if kind == "oci-dir":
        if not output:
            raise InvalidArgument("--format oci-dir needs -o DIRECTORY")
        service.save(list(images), Path(output), format=kind)
        return
    write_archive(output, lambda out: service.save(list(images), out, format=kind))


@click.command("load")
@click.option("-i", "--input", "input_path", help="Read from a tar archive file, instead of STDIN.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output.")
@click.pass_context
def load_cmd(ctx: click.Context, input_path: str | None, quiet: bool) -> None:
    """Load images from a tar archive (docker-archive or OCI) or STDIN."""
    service = _service(ctx)
    if input_path:
        with open(input_path, "rb") as f:
            records = service.load(f)
    else:
        if sys.stdin.isatty():
            raise InvalidArgument(
                "requested load from stdin, but stdin is empty: use -i FILE or pipe an archive"
            )
        records = service.load(sys.stdin.buffer)
    if quiet:
        return
    from intermodal.image import reference

    for record in records:
        if record.names:
            for name in record.names:
                click.echo(f"Loaded image: {reference.parse(name).familiar}")
        else:
            click.echo(f"Loaded image ID: {record.config}")


@click.command("import")
@click.argument("source")
@click.argument("repository", required=False)
@click.option("-c", "--change", "changes", multiple=True, help="Apply a Dockerfile instruction to the image.")
@click.option("-m", "--message", default="", help="Set a commit message for the imported image.")
@click.pass_context
def import_cmd(
    ctx: click.Context, source: str, repository: str | None, changes: tuple[str, ...], message: str
) -> None:
    """Import the contents from a tarball (or - for STDIN) to create a filesystem image."""
    service = _service(ctx)
    if source == "-":
        record = service.import_rootfs(sys.stdin.buffer, repository, list(changes), message)
    elif "://" in source:
        raise InvalidArgument(
            f"cannot import {source}: importing from a URL is not supported; download it first"
        )
    else:
        try:
            f = open(source, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise InvalidArgument(f"cannot import {source}: no such file") from None
        with f:
            record = service.import_rootfs(f, repository, list(changes), message)
    click.echo(record.config)


@click.command("bootstrap")
@click.argument("what")
@click.option("-t", "--tag", help="Name for the image (default: busybox:latest or debian:SUITE).")
@click.pass_context
def bootstrap_cmd(ctx: click.Context, what: str, tag: str | None) -> None:
    """Build a base image offline: `busybox` (from busybox-static) or `debian:SUITE` (debootstrap)."""
    from intermodal.engine.bootstrap import bootstrap

    record = bootstrap(_service(ctx).store, what, tag)
    click.echo(record.config)


@click.group("image")
def image_group() -> None:
    """Manage images."""


image_group.add_command(images_cmd, "ls")
for _command in (inspect_cmd, history_cmd, tag_cmd, prune_cmd, save_cmd, load_cmd, import_cmd, bootstrap_cmd):
    image_group.add_command(_command)
image_group.add_command(rmi_cmd, "rm")
image_group.add_command(pull_cmd)
image_group.add_command(push_cmd)
image_group.add_command(_build_cmd)
