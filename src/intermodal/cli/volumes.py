"""Volume commands: volume create, ls, inspect, rm, prune (Docker's local driver)."""

from __future__ import annotations

import click

from intermodal.cli.containers import service
from intermodal.cli.output import for_each, human_size, print_formatted, print_table
from intermodal.engine.containers.options import parse_labels
from intermodal.engine.containers.service import ContainerService
from intermodal.errors import InvalidArgument


@click.group("volume")
def volume_group() -> None:
    """Manage volumes."""


@volume_group.command("create")
@click.argument("name", required=False, default="")
@click.option("--name", "name_option", default="", help="Specify volume name.")
@click.option("-d", "--driver", default="local", help="Specify volume driver name.")
@click.option("-l", "--label", multiple=True, help="Set metadata for a volume.")
@click.option("-o", "--opt", multiple=True, help="Set driver specific options (none are supported).")
@click.pass_context
def create_cmd(ctx: click.Context, name: str, name_option: str, driver: str, label: tuple[str, ...],
               opt: tuple[str, ...]) -> None:  # fmt: skip
    """Create a volume."""
    if name and name_option and name != name_option:
        raise InvalidArgument(
            "conflicting options: either specify --name or provide positional arg, not both"
        )
    if driver != "local":
        raise InvalidArgument(f"volume driver {driver!r} is not available: only the local driver is")
    if opt:
        raise InvalidArgument(f"invalid volume option {opt[0]!r}: the local driver takes no options here")
    meta = service(ctx).volumes.create(name or name_option, labels=parse_labels(list(label)))
    click.echo(meta["Name"])


def _dangling(svc: ContainerService, name: str) -> bool:
    return not svc.volume_users(name)


def _matches(svc: ContainerService, meta: dict[str, object], filters: tuple[str, ...]) -> bool:
    labels = meta["Labels"] if isinstance(meta["Labels"], dict) else {}
    for f in filters:
        key, _, value = f.partition("=")
        if key == "dangling":
            if value not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid filter {f!r}: dangling takes true or false")
            if _dangling(svc, str(meta["Name"])) != (value in ("true", "1")):
                return False
        elif key == "name":
            if value not in str(meta["Name"]):
                return False
        elif key == "label":
            label, has_value, wanted = value.partition("=")
            if label not in labels or (has_value and labels[label] != wanted):
                return False
        elif key == "driver":
            if value != meta["Driver"]:
                return False
        else:
            raise InvalidArgument(f"invalid filter {f!r}: supported are dangling, name, label and driver")
    return True


@volume_group.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display volume names.")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="Provide filter values (e.g. 'dangling=true')."
)
@click.option("--format", "fmt", help="'json', 'table TEMPLATE' or a Go template.")
@click.pass_context
def ls_cmd(ctx: click.Context, quiet: bool, filters: tuple[str, ...], fmt: str | None) -> None:
    """List volumes."""
    svc = service(ctx)
    metas = [svc.volumes.inspect(n) for n in svc.volumes.names()]
    metas = [m for m in metas if _matches(svc, m, filters)]
    if quiet:
        for m in metas:
            click.echo(m["Name"])
        return
    rows = [
        {
            "Driver": m["Driver"], "Name": m["Name"], "Mountpoint": m["Mountpoint"], "Scope": m["Scope"],
            "Labels": ",".join(f"{k}={v}" for k, v in m["Labels"].items()), "Links": str(len(svc.volume_users(m["Name"]))),
            "Size": "N/A",
        }
        for m in metas
    ]  # fmt: skip
    if fmt:
        print_formatted(fmt, rows, {"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT",
                                    "Scope": "SCOPE", "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE"})  # fmt: skip
        return
    print_table(["DRIVER", "VOLUME NAME"], [[r["Driver"], r["Name"]] for r in rows])


@volume_group.command("inspect")
@click.option("-f", "--format", "fmt", help="Format the output using a Go template.")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect_cmd(ctx: click.Context, fmt: str | None, names: tuple[str, ...]) -> None:
    """Display detailed information on one or more volumes."""
    from intermodal.cli.container_tools import print_inspected
    from intermodal.errors import NotFound

    volumes = service(ctx).volumes
    results, missing = [], []
    for name in names:
        try:
            results.append(volumes.inspect(name))
        except NotFound:
            missing.append(name)
    print_inspected(results, missing, fmt, "volume")


@volume_group.command("rm")
@click.option("-f", "--force", is_flag=True, help="Do not fail when the volume does not exist.")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm_cmd(ctx: click.Context, force: bool, names: tuple[str, ...]) -> None:
    """Remove one or more volumes. A volume in use by a container (even a stopped one) is refused."""
    svc = service(ctx)
    for_each(
        names, lambda name: svc.volumes.remove(name, in_use_by=svc.volume_users(name), force=force), echo=True
    )


@volume_group.command("prune")
@click.option(
    "-a", "--all", "all_volumes", is_flag=True, help="Remove all unused volumes, not just anonymous ones."
)
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.option("--filter", "filters", multiple=True, help="Provide filter values (e.g. 'label=<label>').")
@click.pass_context
def prune_cmd(ctx: click.Context, all_volumes: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove unused volumes: anonymous ones only unless -a (Docker 23+)."""
    if not force:
        what = "all local volumes" if all_volumes else "anonymous local volumes"
        click.confirm(
            f"WARNING! This will remove {what} not used by at least one container.\n"
            "Are you sure you want to continue?",
            abort=True,
        )
    from intermodal.engine.prune import unused_volumes

    svc = service(ctx)
    removed, reclaimed = unused_volumes(
        svc, all_volumes=all_volumes, matches=lambda meta: _matches(svc, meta, filters)
    )
    if removed:
        click.echo("Deleted Volumes:")
        click.echo("\n".join(removed))
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(reclaimed)}")
