"""System commands: disk usage, prune, the store check and reset."""

from __future__ import annotations

import sys

import click

from intermodal.cli.output import human_size, print_table
from intermodal.engine.images import ImageService


@click.group("system")
def system_group() -> None:
    """Manage intermodal."""


@click.command("df")
@click.option("--format", "fmt", help="'json' for machine-readable output.")
@click.pass_context
def df_cmd(ctx: click.Context, fmt: str | None) -> None:
    """Show disk usage."""
    usage = ImageService(ctx.find_root().obj["root"]).disk_usage()
    size, reclaim = usage["Size"], usage["Reclaimable"]
    pct = f" ({100 * reclaim // size}%)" if size else ""
    row = {
        "Type": "Images",
        "TotalCount": str(usage["Images"]),
        "Active": str(usage["Active"]),
        "Size": human_size(size),
        "Reclaimable": f"{human_size(reclaim)}{pct}",
    }
    if fmt == "json":
        import json

        click.echo(json.dumps(row))
        return
    print_table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], [list(row.values())])


@click.command("check")
@click.option("--repair", is_flag=True, help="Remove corrupt blobs, broken images and unreferenced content.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
@click.pass_context
def check_cmd(ctx: click.Context, repair: bool, quiet: bool) -> None:
    """Verify every blob's digest and every image's references. Exits 1 when errors are found."""
    report = ImageService(ctx.find_root().obj["root"]).check(repair=repair)
    for line in report.errors:
        click.echo(f"error: {line}")
    if not quiet:
        for line in report.notes:
            click.echo(f"note: {line}")
    if repair:
        click.echo(f"repaired: removed {report.repaired} entries")
    elif report.errors or report.notes:
        click.echo(f"{len(report.errors)} errors, {len(report.notes)} notes; run with --repair to clean up")
    else:
        click.echo("ok: no problems found")
    if report.errors and not repair:
        sys.exit(1)


@click.command("reset")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
def reset_cmd(ctx: click.Context, force: bool) -> None:
    """Remove every container, image, volume and network, and take this root's bridges and rules down."""
    root = ctx.find_root().obj["root"]
    if not force:
        click.confirm(
            f"This removes all containers, images, volumes and networks under {root}. Continue?", abort=True
        )
    from intermodal.engine.system import reset

    reset(root)


@click.command("prune")
@click.option(
    "-a",
    "--all",
    "all_images",
    is_flag=True,
    help="Remove all unused images and build cache, not just dangling ones.",
)
@click.option("--volumes", is_flag=True, help="Prune anonymous volumes.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
def prune_cmd(ctx: click.Context, all_images: bool, volumes: bool, force: bool) -> None:
    """Remove unused data: stopped containers, unused networks, dangling images and build cache."""
    if not force:
        items = ["all stopped containers", "all networks not used by at least one container",
                 *(["all anonymous volumes not used by at least one container"] if volumes else []),
                 "all images without at least one container associated to them" if all_images else "all dangling images",
                 "all build cache" if all_images else "unused build cache"]  # fmt: skip
        click.confirm(
            "WARNING! This will remove:\n"
            + "".join(f"  - {item}\n" for item in items)
            + "\nAre you sure you want to continue?",
            abort=True,
        )
    from intermodal.engine import prune

    pruned = prune.system(ctx.find_root().obj["root"], all_images=all_images, volumes=volumes)
    for title, names in (("Deleted Containers", pruned.containers), ("Deleted Networks", pruned.networks),
                         ("Deleted Volumes", pruned.volumes), ("Deleted Images", [f"deleted: {i}" for i in pruned.images])):  # fmt: skip
        if names:
            click.echo(f"{title}:\n" + "".join(f"{n}\n" for n in names))
    if pruned.build_cache:
        click.echo(f"Deleted build cache objects: {pruned.build_cache}\n")
    click.echo(f"Total reclaimed space: {human_size(pruned.reclaimed)}")


system_group.add_command(df_cmd)
system_group.add_command(prune_cmd)
system_group.add_command(reset_cmd)
system_group.add_command(check_cmd)
