"""Network commands (`network create|ls|inspect|rm|prune|connect|disconnect`) and `port`."""

from __future__ import annotations

import json
from typing import Any

import click

from intermodal.cli.output import for_each, print_formatted, print_table
from intermodal.engine.networks import NetworkService
from intermodal.errors import InvalidArgument


def service(ctx: click.Context) -> NetworkService:
    return NetworkService(ctx.find_root().obj["root"])


@click.group("network")
def network_group() -> None:
    """Manage networks."""


@network_group.command("create")
@click.argument("name")
@click.option("-d", "--driver", default="bridge", help="Driver to manage the network (bridge).")
@click.option("--subnet", default="", help="Subnet in CIDR format, e.g. 10.90.0.0/24.")
@click.option("--gateway", default="", help="IPv4 gateway of the subnet.")
@click.option("--internal", is_flag=True, help="Restrict external access to the network.")
@click.option("--label", multiple=True, help="Set metadata on a network.")
@click.option("-o", "--opt", multiple=True, help="Driver options (bridge.name, enable_ip_masquerade, mtu).")
@click.option("--ip-range", default="", help="Allocate container IPs from a sub-range (CIDR).")
@click.option("--attachable", is_flag=True, help="Enable manual container attachment.")
@click.option("--ipv6", is_flag=True, help="Enable IPv6 networking (not supported).")
@click.pass_context
def create_cmd(
    ctx: click.Context,
    name: str,
    driver: str,
    subnet: str,
    gateway: str,
    internal: bool,
    label: tuple[str, ...],
    opt: tuple[str, ...],
    ip_range: str,
    attachable: bool,
    ipv6: bool,
) -> None:
    """Create a network."""
    if ipv6:
        raise InvalidArgument("--ipv6 is not supported: networks here are IPv4 only")
    from intermodal.engine.containers.options import parse_labels

    net = service(ctx).create(
        name, subnet=subnet, gateway=gateway, internal=internal, driver=driver, labels=parse_labels(label),
        options=parse_labels(opt, "-o"), ip_range=ip_range, attachable=attachable,
    )  # fmt: skip
    click.echo(net["Id"])


@network_group.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display network IDs.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output.")
@click.option("--format", "fmt", help="'json', 'table TEMPLATE' or a Go template.")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter (name, id, driver, label, type).")
@click.pass_context
def ls_cmd(
    ctx: click.Context, quiet: bool, no_trunc: bool, fmt: str | None, filters: tuple[str, ...]
) -> None:
    """List networks."""
    svc = service(ctx)
    svc.gc()
    rows = [
        {"ID": n["Id"] if no_trunc else n["Id"][:12], "Name": n["Name"], "Driver": n["Driver"], "Scope": n["Scope"],
         "Internal": str(n["Internal"]).lower(), "Labels": ",".join(f"{k}={v}" for k, v in n["Labels"].items())}
        for n in svc.networks() if all(_matches(n, f) for f in filters)
    ]  # fmt: skip
    if quiet:
        for row in rows:
            click.echo(row["ID"])
    elif fmt:
        print_formatted(fmt, rows, {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE"})
    else:
        print_table(
            ["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
            [[r["ID"], r["Name"], r["Driver"], r["Scope"]] for r in rows],
        )


def _matches(net: dict[str, Any], spec: str) -> bool:
    """Docker's `network ls --filter`: name and id by substring and prefix, driver, label (KEY or KEY=VALUE),
    type (builtin: bridge, host, none; custom: the rest)."""
    key, sep, value = spec.partition("=")
    if not sep or key not in ("name", "id", "driver", "label", "type"):
        raise InvalidArgument(f"invalid filter {spec!r}: use name=, id=, driver=, label= or type=")
    if key == "name":
        return value in net["Name"]
    if key == "id":
        return bool(net["Id"].startswith(value))
    if key == "driver":
        return bool(net["Driver"] == value)
    if key == "type":
        if value not in ("builtin", "custom"):
            raise InvalidArgument(f"invalid filter {spec!r}: type is builtin or custom")
        return (net["Name"] in ("bridge", "host", "none")) == (value == "builtin")
    label, has_value, wanted = value.partition("=")
    return label in net["Labels"] and (not has_value or net["Labels"][label] == wanted)


@network_group.command("inspect")
@click.argument("networks", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", help="Format the output using a Go template.")
@click.pass_context
def inspect_cmd(ctx: click.Context, networks: tuple[str, ...], fmt: str | None) -> None:
    """Display detailed information on one or more networks."""
    svc = service(ctx)
    svc.gc()
    results = [svc.inspect(spec) for spec in networks]
    if fmt:
        print_formatted(fmt, results, {})
    else:
        click.echo(json.dumps(results, indent=4))


@network_group.command("rm")
@click.argument("networks", nargs=-1, required=True)
@click.pass_context
def rm_cmd(ctx: click.Context, networks: tuple[str, ...]) -> None:
    """Remove one or more networks."""
    svc = service(ctx)
    for_each(networks, svc.remove, echo=True)


@network_group.command("reload")
@click.pass_context
def reload_cmd(ctx: click.Context) -> None:
    """Send this root's firewall rules again (after something flushed the host's nftables ruleset)."""
    service(ctx).reload()


@network_group.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
def prune_cmd(ctx: click.Context, force: bool) -> None:
    """Remove all unused networks."""
    if not force:
        click.confirm(
            "WARNING! This will remove all custom networks not used by at least one container.\n"
            "Are you sure you want to continue?",
            abort=True,
        )
    svc = service(ctx)
    svc.gc()
    removed = svc.prune()
    if removed:
        click.echo("Deleted Networks:")
        click.echo("\n".join(removed))


@network_group.command("connect")
@click.argument("network")
@click.argument("container")
@click.option("--alias", multiple=True, help="Add network-scoped alias for the container.")
@click.option("--ip", default="", help="IPv4 address (e.g. 10.90.0.10).")
@click.pass_context
def connect_cmd(ctx: click.Context, network: str, container: str, alias: tuple[str, ...], ip: str) -> None:
    """Connect a container to a network."""
    svc = service(ctx)
    svc.gc()
    svc.connect(network, container, list(alias), ip)


@network_group.command("disconnect")
@click.argument("network")
@click.argument("container")
@click.option("-f", "--force", is_flag=True, help="Force the container to disconnect from a network.")
@click.pass_context
def disconnect_cmd(ctx: click.Context, network: str, container: str, force: bool) -> None:
    """Disconnect a container from a network."""
    svc = service(ctx)
    svc.gc()
    svc.disconnect(network, container)


@click.command("port")
@click.argument("container")
@click.argument("private_port", required=False)
@click.pass_context
def port_cmd(ctx: click.Context, container: str, private_port: str | None) -> None:
    """List port mappings or a specific mapping for the container."""
    from intermodal.engine.containers.service import ContainerService

    svc = ContainerService(ctx.find_root().obj["root"])
    record = svc.get(container)
    settings = svc.networks.settings(record)
    wanted = private_port if not private_port or "/" in private_port else f"{private_port}/tcp"
    found = False
    for key, binds in (settings["Ports"] or {}).items():
        if wanted and key != wanted:
            continue
        for b in binds or []:
            found = True
            click.echo(
                f"{b['HostIp']}:{b['HostPort']}" if wanted else f"{key} -> {b['HostIp']}:{b['HostPort']}"
            )
    if wanted and not found:
        raise InvalidArgument(f"no public port '{wanted}' published for {container}")
