"""`inspect NAME...`: whatever object has that name, looked up in Docker's order (container, image, volume)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from intermodal.cli.container_tools import print_inspected
from intermodal.cli.containers import service
from intermodal.errors import InvalidArgument, NotFound

_TYPES = ("container", "image", "volume")


@click.command("inspect")
@click.option("--type", "kind", type=click.Choice(_TYPES), help="Only look for objects of this type.")
@click.option("-f", "--format", "fmt", help="Format the output using a Go template.")
@click.option(
    "-s", "--size", is_flag=True, hidden=True, help="Accepted for compatibility; sizes are not shown."
)
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect_cmd(
    ctx: click.Context, kind: str | None, fmt: str | None, size: bool, names: tuple[str, ...]
) -> None:
    """Return low-level information on containers, images or volumes."""
    from intermodal.engine.containers.inspect import inspect

    svc = service(ctx)
    lookups: dict[str, Callable[[str], dict[str, Any]]] = {
        "container": lambda name: inspect(svc, svc.get(name)),
        "image": svc.images.inspect,
        "volume": svc.volumes.inspect,
    }
    results, missing = [], []
    for name in names:
        for lookup in [lookups[kind]] if kind else list(lookups.values()):
            try:
                results.append(lookup(name))
                break
            except (NotFound, InvalidArgument):  # not a valid name of that kind: not one of those
                continue
        else:
            missing.append(name)
    print_inspected(results, missing, fmt, kind or "object")
