"""Container commands: start, stop, kill, restart, rm, ps, logs, wait, pause, rename, update, attach, prune (run and create: cli/run.py)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from intermodal.cli import LazyGroup
from intermodal.cli.output import for_each, human_size, print_formatted, print_table, time_ago
from intermodal.engine.containers.record import ContainerRecord
from intermodal.engine.containers.service import ContainerService
from intermodal.errors import InvalidArgument

if TYPE_CHECKING:
    pass

_TOOLS = (
    "exec",
    "inspect",
    "top",
    "stats",
    "cp",
    "diff",
    "commit",
    "export",
)  # in container_tools, loaded on use


def service(ctx: click.Context) -> ContainerService:
    return ContainerService(ctx.find_root().obj["root"])


@click.command("start")
@click.argument("containers", nargs=-1, required=True)
@click.option("-a", "--attach", is_flag=True, help="Attach STDOUT/STDERR and forward signals.")
@click.option("-i", "--interactive", is_flag=True, help="Attach container's STDIN.")
@click.pass_context
def start_cmd(ctx: click.Context, containers: tuple[str, ...], attach: bool, interactive: bool) -> None:
    """Start one or more stopped containers."""
    svc = service(ctx)
    if attach or interactive:
        if len(containers) > 1:
            raise InvalidArgument("you cannot start and attach multiple containers at once")
        sys.exit(svc.run_attached(containers[0], interactive=interactive))
    for_each(containers, lambda c: svc.start(c), echo=True)


@click.command("stop")
@click.argument("containers", nargs=-1, required=True)
@click.option("-t", "--time", "timeout", type=int, default=None, help="Seconds to wait before killing it.")
@click.option("-s", "--signal", "sig", default="", help="Signal to send to the container.")
@click.pass_context
def stop_cmd(ctx: click.Context, containers: tuple[str, ...], timeout: int | None, sig: str) -> None:
    """Stop one or more running containers."""
    svc = service(ctx)
    for_each(containers, lambda c: svc.stop(c, timeout), echo=True)


@click.command("kill")
@click.argument("containers", nargs=-1, required=True)
@click.option("-s", "--signal", "sig", default="SIGKILL", help="Signal to send to the container.")
@click.pass_context
def kill_cmd(ctx: click.Context, containers: tuple[str, ...], sig: str) -> None:
    """Kill one or more running containers."""
    svc = service(ctx)
    for_each(containers, lambda c: svc.kill(c, sig), echo=True)


@click.command("restart")
@click.argument("containers", nargs=-1, required=True)
@click.option("-t", "--time", "timeout", type=int, default=None, help="Seconds to wait before killing it.")
@click.pass_context
def restart_cmd(ctx: click.Context, containers: tuple[str, ...], timeout: int | None) -> None:
    """Restart one or more containers."""
    svc = service(ctx)
    for_each(containers, lambda c: svc.restart(c, timeout), echo=True)


@click.command("rm")
@click.argument("containers", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Force the removal of a running container (uses SIGKILL).")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes associated with the container.")
@click.pass_context
def rm_cmd(ctx: click.Context, containers: tuple[str, ...], force: bool, volumes: bool) -> None:
    """Remove one or more containers."""
    svc = service(ctx)
    for_each(containers, lambda c: svc.remove(c, force=force, volumes=volumes), echo=True)


@click.command("attach")
@click.argument("container")
@click.option("--no-stdin", is_flag=True, help="Do not attach STDIN.")
@click.option("--sig-proxy/--no-sig-proxy", default=True, help="Proxy all received signals to the process.")
@click.option("--detach-keys", default="ctrl-p,ctrl-q", help="Override the key sequence for detaching.")
@click.pass_context
def attach_cmd(ctx: click.Context, container: str, no_stdin: bool, sig_proxy: bool, detach_keys: str) -> None:
    """Attach local standard input, output, and error streams to a running container."""
    from intermodal.engine.containers import attach

    try:
        keys = attach.detach_keys(detach_keys)
    except ValueError as e:
        raise InvalidArgument(str(e)) from None
    try:
        code = service(ctx).attach(container, stdin=not no_stdin, sig_proxy=sig_proxy, keys=keys)
    except attach.Detached:
        click.echo("read escape sequence", err=True)
        sys.exit(1)
    sys.exit(code)


@click.command("update")
@click.argument("containers", nargs=-1, required=True)
@click.option("-m", "--memory", help="Memory limit.")
@click.option("--memory-swap", help="Swap limit equal to memory plus swap: -1 for unlimited.")
@click.option("--memory-reservation", help="Memory soft limit.")
@click.option("--cpus", help="Number of CPUs.")
@click.option("-c", "--cpu-shares", type=int, help="CPU shares (relative weight).")
@click.option("--cpu-quota", type=int, help="Limit CPU CFS quota.")
@click.option("--cpu-period", type=int, help="Limit CPU CFS period.")
@click.option("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1).")
@click.option("--pids-limit", type=int, help="Tune container pids limit.")
@click.option("--restart", help="Restart policy: no, on-failure[:N], always, unless-stopped.")
@click.pass_context
def update_cmd(ctx: click.Context, containers: tuple[str, ...], **kw: Any) -> None:
    """Update configuration of one or more containers (limits apply at once to running ones)."""
    changes = {key: value for key, value in kw.items() if value is not None}
    if not changes:
        raise InvalidArgument("you must provide one or more flags when using this command (see --help)")
    svc = service(ctx)
    for_each(containers, lambda spec: svc.update(spec, dict(changes)), echo=True)


@click.command("wait")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def wait_cmd(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Block until one or more containers stop, then print their exit codes."""
    svc = service(ctx)
    for_each(containers, lambda c: click.echo(svc.wait(c)))


@click.command("pause")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def pause_cmd(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Pause all processes within one or more containers."""
    svc = service(ctx)
    for_each(containers, lambda c: svc.pause(c), echo=True)


@click.command("unpause")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def unpause_cmd(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Unpause all processes within one or more containers."""
    svc = service(ctx)
    for_each(containers, lambda c: svc.unpause(c), echo=True)


@click.command("rename")
@click.argument("container")
@click.argument("new_name")
@click.pass_context
def rename_cmd(ctx: click.Context, container: str, new_name: str) -> None:
    """Rename a container."""
    service(ctx).rename(container, new_name)


def _status_text(record: ContainerRecord) -> str:
    state = record.state
    status = record.status
    if status == "running":
        return f"Up {time_ago(state['StartedAt']).removesuffix(' ago')}"
    if status == "paused":
        return f"Up {time_ago(state['StartedAt']).removesuffix(' ago')} (Paused)"
    if status == "restarting":
        return f"Restarting ({state['ExitCode']}) {time_ago(state['FinishedAt'])}"
    if status == "exited":
        return f"Exited ({state['ExitCode']}) {time_ago(state['FinishedAt'])}"
    return status.capitalize()


def _command_text(record: ContainerRecord, no_trunc: bool) -> str:
    args = list(record.config.get("Entrypoint") or []) + list(record.config.get("Cmd") or [])
    text = " ".join(args)
    if not no_trunc and len(text) > 20:
        text = text[:19] + "…"
    return json.dumps(text, ensure_ascii=False)


def _matches(record: ContainerRecord, filters: tuple[str, ...]) -> bool:
    for f in filters:
        key, _, value = f.partition("=")
        if key == "status" and record.status != value:
            return False
        if key == "name" and value not in record.name:
            return False
        if key == "id" and not record.id.startswith(value):
            return False
        if key == "ancestor" and value not in (
            record.image_name,
            record.image,
            record.image.removeprefix("sha256:")[:12],
        ):
            return False
        if key == "exited" and (record.status != "exited" or str(record.state["ExitCode"]) != value):
            return False
        if key == "label":
            name, has_value, wanted = value.partition("=")
            labels = record.config.get("Labels") or {}
            if name not in labels or (has_value and labels[name] != wanted):
                return False
        if key not in ("status", "name", "id", "ancestor", "exited", "label"):
            raise InvalidArgument(
                f"invalid filter {f!r}: supported are status, name, id, ancestor, exited, label"
            )
    return True


def _ps_row(svc: ContainerService, r: ContainerRecord, no_trunc: bool) -> dict[str, str]:
    """One `ps` row; the network module is loaded only for containers that have networks or ports."""
    networks = ports = ""
    mode = r.host_config.get("NetworkMode") or "bridge"
    if mode not in ("none", "host") and not mode.startswith("container:"):
        from intermodal.engine.networks import endpoints_config, format_ports

        networks = ",".join(endpoints_config(r))
        if r.status == "running" and (
            r.host_config.get("PortBindings") or r.host_config.get("PublishAllPorts")
        ):
            ports = format_ports(svc.networks.settings(r))
    return {
        "ID": r.id if no_trunc else r.id[:12],
        "Image": r.image_name,
        "Command": _command_text(r, no_trunc),
        "CreatedAt": r.created,
        "RunningFor": time_ago(r.created),
        "Ports": ports,
        "State": r.status,
        "Status": _status_text(r),
        "Names": r.name,
        "Labels": ",".join(f"{k}={v}" for k, v in (r.config.get("Labels") or {}).items()),
        "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in r.mounts),
        "Networks": networks or mode,
    }


def _size_text(svc: ContainerService, record: ContainerRecord) -> str:
    """Docker's `ps -s`: the writable layer, and with the image's layers the virtual size."""
    from intermodal.errors import NotFound
    from intermodal.fsutil import tree_size

    writable = tree_size(svc.paths(record.id).upper)
    try:
        image = svc.images.store.get(record.image).size
    except NotFound:
        image = 0
    return f"{human_size(writable)} (virtual {human_size(writable + image)})"


@click.command("ps")
@click.option(
    "-a", "--all", "show_all", is_flag=True, help="Show all containers (default shows just running)."
)
@click.option("-q", "--quiet", is_flag=True, help="Only display container IDs.")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided.")
@click.option("--format", "fmt", help="'json', 'table TEMPLATE' or a Go template.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option(
    "-n", "--last", type=int, default=-1, help="Show n last created containers (includes all states)."
)
@click.option("-l", "--latest", is_flag=True, help="Show the latest created container (includes all states).")
@click.option(
    "-s",
    "--size",
    is_flag=True,
    help="Display total file sizes (writable layer, and virtual with the image).",
)
@click.pass_context
def ps_cmd(
    ctx: click.Context, show_all: bool, quiet: bool, filters: tuple[str, ...], fmt: str | None, no_trunc: bool,
    last: int, latest: bool, size: bool,
) -> None:  # fmt: skip
    """List containers."""
    if latest:
        last = 1
    svc = service(ctx)
    records = svc.containers(all_containers=show_all or last > 0 or bool(filters))
    if not show_all and filters and not any(f.startswith(("status=", "exited=")) for f in filters):
        records = [r for r in records if r.status in ("running", "paused", "restarting")]
    records = [r for r in records if _matches(r, filters)]
    if last > 0:
        records = records[:last]
    if quiet:
        for r in records:
            click.echo(r.id if no_trunc else r.id[:12])
        return
    rows = [_ps_row(svc, r, no_trunc) for r in records]
    if size:
        for row, record in zip(rows, records, strict=True):
            row["Size"] = _size_text(svc, record)
    if fmt:
        print_formatted(fmt, rows, {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "RunningFor": "CREATED",
                                    "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES", "Size": "SIZE"})  # fmt: skip
        return
    columns = [
        "ID",
        "Image",
        "Command",
        "RunningFor",
        "Status",
        "Ports",
        "Names",
        *(["Size"] if size else []),
    ]
    print_table(
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
            *(["SIZE"] if size else []),
        ],
        [[r[c] for c in columns] for r in rows],
    )


@click.command("logs")
@click.argument("container")
@click.option("-f", "--follow", is_flag=True, help="Follow log output.")
@click.option("-n", "--tail", default="all", help="Number of lines to show from the end of the logs.")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.option("--since", default="", help="Show logs since timestamp or relative (e.g. 42m).")
@click.option("--until", default="", help="Show logs before a timestamp or relative (e.g. 42m).")
@click.pass_context
def logs_cmd(
    ctx: click.Context, container: str, follow: bool, tail: str, timestamps: bool, since: str, until: str
) -> None:
    """Fetch the logs of a container."""
    from intermodal.engine.containers import logs

    svc = service(ctx)
    record = svc.get(container)
    if record.log_driver == "none":
        raise InvalidArgument(f"container {container} keeps no logs: it runs with --log-driver none")
    if tail != "all" and not tail.lstrip("-").isdigit():
        raise InvalidArgument(f"invalid --tail {tail!r}: give a number of lines or 'all'")
    tail_n = None if tail == "all" or int(tail) < 0 else int(tail)

    def running() -> bool:
        return svc.get(record.id).status in ("running", "paused", "restarting")

    for line in logs.read(
        svc.paths(record.id).log,
        tail=tail_n,
        since=logs.parse_since(since) if since else None,
        until=logs.parse_since(until) if until else None,
        follow=running if follow else None,
    ):
        sink = sys.stderr.buffer if line.stream == "stderr" else sys.stdout.buffer
        sink.write((line.timestamp.encode() + b" " if timestamps else b"") + line.text + b"\n")
        sink.flush()


@click.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
def prune_cmd(ctx: click.Context, force: bool) -> None:
    """Remove all stopped containers."""
    if not force:
        click.confirm(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?",
            abort=True,
        )
    removed = service(ctx).prune()
    if removed:
        click.echo("Deleted Containers:")
        click.echo("\n".join(removed))
        click.echo()
    click.echo("Total reclaimed space: 0B")


@click.command("cleanup", hidden=True)
@click.option("--instance", default=None, help="the exiting conmon's token (monitor.launch)")
@click.argument("container")
@click.pass_context
def cleanup_cmd(ctx: click.Context, container: str, instance: str | None) -> None:
    """conmon's exit command: record the exit and apply the restart policy."""
    service(ctx).cleanup(container, instance)


@click.group(
    "container",
    cls=LazyGroup,
    lazy={
        **{n: f"container_tools:{n}_cmd" for n in _TOOLS},
        "run": "run:run_cmd",
        "create": "run:create_cmd",
    },
)
def container_group() -> None:
    """Manage containers."""


for _name, _command in {
    "start": start_cmd, "stop": stop_cmd, "kill": kill_cmd,
    "restart": restart_cmd, "rm": rm_cmd, "wait": wait_cmd, "pause": pause_cmd, "unpause": unpause_cmd,
    "rename": rename_cmd, "update": update_cmd, "attach": attach_cmd, "ls": ps_cmd, "ps": ps_cmd, "logs": logs_cmd, "prune": prune_cmd, "cleanup": cleanup_cmd,
}.items():  # fmt: skip
    container_group.add_command(_command, _name)
