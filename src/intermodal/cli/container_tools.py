"""Container commands that look into or out of a container: exec, inspect, top, stats, cp, diff, commit."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from intermodal.cli.containers import service
from intermodal.cli.output import (
    binary_size,
    console_size,
    human_size,
    print_formatted,
    print_table,
    render_template,
    write_archive,
)
from intermodal.engine.containers.record import ContainerRecord
from intermodal.errors import NotFound


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY.")
@click.option("-d", "--detach", is_flag=True, help="Detached mode: run the command in the background.")
@click.option("-e", "--env", multiple=True, help="Set environment variables.")
@click.option("--env-file", multiple=True, help="Read in a file of environment variables.")
@click.option("-w", "--workdir", default="", help="Working directory inside the container.")
@click.option("-u", "--user", default="", help="Username or UID (format: <name|uid>[:<group|gid>]).")
@click.option("--privileged", is_flag=True, help="Give extended privileges to the command.")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_cmd(ctx: click.Context, container: str, command: tuple[str, ...], **kw: Any) -> None:
    """Execute a command in a running container."""
    from intermodal.engine.containers.exec import ExecOptions, exec_in

    opts = ExecOptions(
        command=list(command), interactive=kw["interactive"], tty=kw["tty"], detach=kw["detach"],
        env=list(kw["env"]), env_files=list(kw["env_file"]), workdir=kw["workdir"], user=kw["user"],
        privileged=kw["privileged"], console_size=console_size() if kw["tty"] else (0, 0),
    )  # fmt: skip
    sys.exit(exec_in(service(ctx), container, opts))


def print_inspected(results: list[Any], missing: list[str], fmt: str | None, kind: str) -> None:
    """Docker's inspect output: a JSON array (or one template line per object), then an error per name not
    found, and exit 1 if there was one."""
    if fmt:
        for item in results:
            click.echo(render_template(fmt, item))
    else:
        click.echo(json.dumps(results, indent=4))
    for name in missing:
        click.echo(f"Error: No such {kind}: {name}", err=True)
    if missing:
        sys.exit(1)


@click.command("inspect")
@click.option("-f", "--format", "fmt", help="Format the output using a Go template.")
@click.option(
    "-s", "--size", is_flag=True, hidden=True, help="Accepted for compatibility; sizes are not shown."
)
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def inspect_cmd(ctx: click.Context, containers: tuple[str, ...], fmt: str | None, size: bool) -> None:
    """Display detailed information on one or more containers."""
    from intermodal.engine.containers.inspect import inspect

    svc = service(ctx)
    results, missing = [], []
    for name in containers:
        try:
            results.append(inspect(svc, svc.get(name)))
        except NotFound:
            missing.append(name)
    print_inspected(results, missing, fmt, "container")


@click.command("top", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("container")
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def top_cmd(ctx: click.Context, container: str, ps_args: tuple[str, ...]) -> None:
    """Display the running processes of a container (`ps` options after the name; default -ef)."""
    from intermodal.engine.containers.top import top

    titles, rows = top(service(ctx), container, list(ps_args))
    print_table(titles, rows)


_STATS_HEADERS = {
    "Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
    "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
}  # fmt: skip
_STATS_TABLE = (
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
)


@click.command("stats")
@click.option(
    "-a", "--all", "show_all", is_flag=True, help="Show all containers (default shows just running)."
)
@click.option("--no-stream", is_flag=True, help="Disable streaming stats and only pull the first result.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@click.option("--format", "fmt", help="'json', 'table TEMPLATE' or a Go template.")
@click.argument("containers", nargs=-1)
@click.pass_context
def stats_cmd(
    ctx: click.Context,
    show_all: bool,
    no_stream: bool,
    no_trunc: bool,
    fmt: str | None,
    containers: tuple[str, ...],
) -> None:
    """Display a live stream of container resource usage statistics."""
    from intermodal.engine.containers.stats import measure

    svc = service(ctx)

    def records() -> list[ContainerRecord]:
        if containers:
            return [svc.get(c) for c in containers]
        return svc.containers(all_containers=show_all)

    while True:
        current = records()
        rows = [
            {
                "Container": r.name if containers else r.id[:12],
                "ID": r.id if no_trunc else r.id[:12],
                "Name": r.name,
                "CPUPerc": f"{u.cpu_percent:.2f}%",
                "MemUsage": f"{binary_size(u.memory)} / {binary_size(u.memory_limit)}",
                "MemPerc": f"{u.memory_percent:.2f}%",
                "NetIO": f"{human_size(u.net_rx)} / {human_size(u.net_tx)}",
                "BlockIO": f"{human_size(u.io_read)} / {human_size(u.io_write)}",
                "PIDs": str(u.pids),
            }
            for r, u in zip(current, measure(current, [svc.paths(r.id).bundle for r in current]), strict=True)
        ]
        if not no_stream:
            click.echo("\033[2J\033[H", nl=False)  # Docker redraws the table in place
        print_formatted(fmt or _STATS_TABLE, rows, _STATS_HEADERS)
        if no_stream:
            return


@click.command("cp")
@click.option("-a", "--archive", is_flag=True, help="Archive mode (copy all uid/gid information).")
@click.option("-L", "--follow-link", is_flag=True, help="Always follow symbol link in SRC_PATH.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress output (there is none).")
@click.argument("source")
@click.argument("dest")
@click.pass_context
def cp_cmd(ctx: click.Context, source: str, dest: str, archive: bool, follow_link: bool, quiet: bool) -> None:
    """Copy files/folders between a container and the local filesystem (`-` for a tar on stdin/stdout)."""
    from intermodal.engine.containers.copy import copy

    copy(service(ctx), source, dest, follow=follow_link, archive=archive)


@click.command("export")
@click.option("-o", "--output", help="Write to a file, instead of STDOUT.")
@click.argument("container")
@click.pass_context
def export_cmd(ctx: click.Context, container: str, output: str | None) -> None:
    """Export a container's filesystem as a tar archive (its own files: not volumes or bind mounts)."""
    from intermodal.engine.containers.copy import export

    svc = service(ctx)
    record = svc.get(container)
    write_archive(output, lambda out: export(svc, record, out))


@click.command("diff")
@click.argument("container")
@click.pass_context
def diff_cmd(ctx: click.Context, container: str) -> None:
    """Inspect changes to files or directories on a container's filesystem."""
    from intermodal.engine.containers.diff import changes

    svc = service(ctx)
    for kind, path in changes(svc, svc.get(container)):
        click.echo(f"{kind} {path}")


@click.command("commit")
@click.option(
    "-a", "--author", default="", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>").'
)
@click.option("-m", "--message", default="", help="Commit message.")
@click.option("-c", "--change", multiple=True, help="Apply Dockerfile instruction to the created image.")
@click.option(
    "-p", "--pause", type=click.BOOL, default=True, is_flag=False, flag_value=True, show_default=True,
    help="Pause container during commit (--pause=false to not).",
)  # fmt: skip
@click.argument("container")
@click.argument("repository", required=False, default="")
@click.pass_context
def commit_cmd(
    ctx: click.Context, container: str, repository: str, author: str, message: str, change: tuple[str, ...],
    pause: bool,
) -> None:  # fmt: skip
    """Create a new image from a container's changes."""
    from intermodal.engine.containers.commit import commit

    record = commit(
        service(ctx), container, repository, author=author, message=message, changes=list(change), pause=pause
    )
    click.echo(record.config)
