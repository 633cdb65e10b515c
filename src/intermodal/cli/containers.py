"""Container commands: run, create, start, stop, kill, restart, rm, ps, logs, wait, pause, rename, prune."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from intermodal.cli import LazyGroup
from intermodal.cli.output import for_each, print_formatted, print_table, time_ago
from intermodal.engine.containers.record import ContainerRecord
from intermodal.engine.containers.service import ContainerService
from intermodal.errors import IntermodalError, InvalidArgument

if TYPE_CHECKING:
    from intermodal.engine.containers.options import RunOptions

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


def run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The flags `run` and `create` share, in Docker's spelling."""
    options = [
        click.option(
            "-d", "--detach", is_flag=True, help="Run in the background and print the container ID."
        ),
        click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open."),
        click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY."),
        click.option("--rm", "auto_remove", is_flag=True, help="Remove the container when it exits."),
        click.option("--name", default="", help="Assign a name to the container."),
        click.option("-e", "--env", multiple=True, help="Set environment variables."),
        click.option("--env-file", multiple=True, help="Read in a file of environment variables."),
        click.option("-w", "--workdir", default="", help="Working directory inside the container."),
        click.option("-u", "--user", default="", help="Username or UID (format: <name|uid>[:<group|gid>])."),
        click.option("-h", "--hostname", default="", help="Container host name."),
        click.option("--entrypoint", default=None, help="Overwrite the default ENTRYPOINT of the image."),
        click.option("-l", "--label", multiple=True, help="Set metadata on a container."),
        click.option(
            "--init",
            is_flag=True,
            help="Run an init inside the container that forwards signals and reaps processes.",
        ),
        click.option("--stop-signal", default="", help="Signal to stop the container."),
        click.option(
            "--stop-timeout", type=int, default=None, help="Timeout (in seconds) to stop a container."
        ),
        click.option(
            "--restart", default="no", help="Restart policy: no, on-failure[:N], always, unless-stopped."
        ),
        click.option("-m", "--memory", default="", help="Memory limit."),
        click.option(
            "--memory-swap", default="", help="Swap limit equal to memory plus swap: -1 for unlimited."
        ),
        click.option("--cpus", default="", help="Number of CPUs."),
        click.option("-c", "--cpu-shares", type=int, default=0, help="CPU shares (relative weight)."),
        click.option("--pids-limit", type=int, default=0, help="Tune container pids limit."),
        click.option("--cpuset-cpus", default="", help="CPUs in which to allow execution (0-3, 0,1)."),
        click.option("-v", "--volume", multiple=True, help="Bind mount a volume."),
        click.option("--mount", multiple=True, help="Attach a filesystem mount to the container."),
        click.option("--tmpfs", multiple=True, help="Mount a tmpfs directory."),
        click.option("--read-only", is_flag=True, help="Mount the container's root filesystem as read only."),
        click.option("--privileged", is_flag=True, help="Give extended privileges to this container."),
        click.option("--cap-add", multiple=True, help="Add Linux capabilities."),
        click.option("--cap-drop", multiple=True, help="Drop Linux capabilities."),
        click.option(
            "--security-opt",
            multiple=True,
            help="Security options (seccomp=unconfined|FILE, no-new-privileges).",
        ),
        click.option(
            "--runtime", default="", help="Runtime to use: intermodal (default), crun, runc or a path."
        ),
        click.option(
            "--isolation", default="", help="Isolation: default (namespaces) or vm (a QEMU micro-VM)."
        ),
        click.option("--vm-accel", default="", help="VM accelerator: kvm, tcg or auto (default)."),
        click.option("--vm-kernel", default="", help="Guest kernel for --isolation=vm (vmlinux or vmlinuz)."),
        click.option("--log-opt", multiple=True, help="Log driver options (max-size, max-file)."),
        click.option("--ulimit", multiple=True, help="Ulimit options."),
        click.option("--userns", default="", help="User namespace: host, auto or private."),
        click.option(
            "--pull", default="missing", help="Pull image before running: missing, always or never."
        ),
        click.option(
            "--network",
            "--net",
            "network",
            default="",
            help="Connect to a network: bridge (default), NAME, none, host or container:NAME.",
        ),
        click.option("--network-alias", multiple=True, help="Add a network-scoped alias for the container."),
        click.option(
            "-p", "--publish", multiple=True, help="Publish a port: [ip:][hostPort:]containerPort[/proto]."
        ),
        click.option(
            "-P", "--publish-all", is_flag=True, help="Publish all exposed ports to random host ports."
        ),
        click.option("--dns", multiple=True, help="Set custom DNS servers."),
        click.option("--add-host", multiple=True, help="Add a custom host-to-IP mapping (host:ip)."),
        click.option("--mac-address", default="", help="Container MAC address (e.g. 92:d0:c6:0a:29:33)."),
        click.option("--ip", default="", help="IPv4 address on the network (user-defined networks only)."),
        click.option("--device", multiple=True, help="Add a host device (HOST[:CONTAINER][:rwm])."),
        click.option("--shm-size", default="", help="Size of /dev/shm (default 64m)."),
        click.option("--sysctl", multiple=True, help="Set a namespaced kernel parameter (KEY=VALUE)."),
        click.option("--pid", default="", help="PID namespace: host, or the container's own (default)."),
        click.option("--ipc", default="", help="IPC namespace: private (default), shareable, host or none."),
        click.option("--uts", default="", help="UTS namespace: host, or the container's own (default)."),
        click.option("--cgroupns", default="", help="Cgroup namespace: private (default) or host."),
        click.option("--group-add", multiple=True, help="Add additional groups to join (name or GID)."),
        click.option(
            "--oom-score-adj", type=int, default=0, help="Tune the host's OOM preferences (-1000 to 1000)."
        ),
        click.option("--oom-kill-disable", is_flag=True, help="Disable the OOM killer (cgroup v1)."),
        click.option("--memory-reservation", default="", help="Memory soft limit."),
        click.option(
            "--cpu-quota", type=int, default=0, help="Limit CPU CFS quota (microseconds per period)."
        ),
        click.option("--cpu-period", type=int, default=0, help="Limit CPU CFS period (microseconds)."),
        click.option("--expose", multiple=True, help="Expose a port or a range of ports."),
        click.option("--label-file", multiple=True, help="Read in a line-delimited file of labels."),
        click.option("--platform", default="", help="The image's platform must be this one (linux/amd64)."),
        click.option("--cidfile", default="", help="Write the container ID to the file."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _options(image: str, command: tuple[str, ...], kw: dict[str, Any]) -> RunOptions:
    from intermodal.engine.containers.options import RunOptions

    return RunOptions(
        image=image, command=list(command), entrypoint=kw["entrypoint"], env=list(kw["env"]),
        env_files=list(kw["env_file"]), workdir=kw["workdir"], user=kw["user"], hostname=kw["hostname"],
        labels=list(kw["label"]), name=kw["name"], tty=kw["tty"], interactive=kw["interactive"],
        detach=kw["detach"], auto_remove=kw["auto_remove"], init=kw["init"], stop_signal=kw["stop_signal"],
        stop_timeout=kw["stop_timeout"], restart=kw["restart"], memory=kw["memory"], memory_swap=kw["memory_swap"],
        cpus=kw["cpus"], cpu_shares=kw["cpu_shares"], pids_limit=kw["pids_limit"], cpuset_cpus=kw["cpuset_cpus"],
        volumes=list(kw["volume"]), mounts=list(kw["mount"]), tmpfs=list(kw["tmpfs"]), read_only=kw["read_only"],
        privileged=kw["privileged"], cap_add=list(kw["cap_add"]), cap_drop=list(kw["cap_drop"]),
        security_opt=list(kw["security_opt"]), runtime=kw["runtime"], isolation=kw["isolation"],
        vm_accel=kw["vm_accel"], vm_kernel=kw["vm_kernel"], log_opts=list(kw["log_opt"]),
        ulimits=list(kw["ulimit"]), userns=kw["userns"], pull=kw["pull"], network=kw["network"],
        network_aliases=list(kw["network_alias"]), publish=list(kw["publish"]), publish_all=kw["publish_all"],
        dns=list(kw["dns"]), add_hosts=list(kw["add_host"]), mac_address=kw["mac_address"], ip=kw["ip"],
        devices=list(kw["device"]), shm_size=kw["shm_size"], sysctls=list(kw["sysctl"]), pid=kw["pid"], ipc=kw["ipc"],
        uts=kw["uts"], cgroupns=kw["cgroupns"], group_add=list(kw["group_add"]), oom_score_adj=kw["oom_score_adj"],
        oom_kill_disable=kw["oom_kill_disable"], memory_reservation=kw["memory_reservation"],
        cpu_quota=kw["cpu_quota"], cpu_period=kw["cpu_period"], expose=list(kw["expose"]),
        label_files=list(kw["label_file"]), platform=kw["platform"],
    )  # fmt: skip


def _pull_progress() -> Callable[[Any], None]:
    """A pull started by run/create reports on stderr, one line per status change (stdout is the container's)."""
    last: dict[str, str] = {}

    def report(event: Any) -> None:
        if last.get(event.id) != event.status:
            last[event.id] = event.status
            click.echo(f"{event.id}: {event.status}" if event.id else event.status, err=True)

    return report


_RUN_SETTINGS = {"ignore_unknown_options": False, "allow_interspersed_args": False}


def _create(ctx: click.Context, image: str, command: tuple[str, ...], kw: dict[str, Any]) -> ContainerRecord:
    """`create` with Docker's --cidfile: the file is made first (refused if it exists, so two containers
    never claim it), filled with the ID, and removed again if the container cannot be created."""
    cidfile = kw["cidfile"]
    fd = -1
    if cidfile:
        try:
            fd = os.open(cidfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            raise InvalidArgument(
                f"container ID file found, make sure the other container isn't running or delete {cidfile}"
            ) from None
        except OSError as e:
            raise InvalidArgument(f"cannot create --cidfile {cidfile}: {e.strerror}") from None
    try:
        record = service(ctx).create(_options(image, command, kw), progress=_pull_progress())
    except BaseException:
        if fd >= 0:
            os.close(fd)
            os.unlink(cidfile)
        raise
    if fd >= 0:
        os.write(fd, record.id.encode())
        os.close(fd)
    return record


@click.command("run", context_settings=_RUN_SETTINGS)
@run_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run_cmd(ctx: click.Context, image: str, command: tuple[str, ...], **kw: Any) -> None:
    """Create and run a new container from an image."""
    svc = service(ctx)
    record = _create(ctx, image, command, kw)
    if kw["detach"]:
        try:
            svc.start(record.id)
        except IntermodalError:
            if kw["auto_remove"]:
                svc.remove(record.id, force=True, volumes=True)
            raise
        click.echo(record.id)
        return
    try:
        code = svc.run_attached(record.id, interactive=kw["interactive"])
    except IntermodalError:
        if kw["auto_remove"]:
            svc.remove(record.id, force=True, volumes=True)
        raise
    sys.exit(code)


@click.command("create", context_settings=_RUN_SETTINGS)
@run_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def create_cmd(ctx: click.Context, image: str, command: tuple[str, ...], **kw: Any) -> None:
    """Create a new container."""
    click.echo(_create(ctx, image, command, kw).id)


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
@click.pass_context
def ps_cmd(
    ctx: click.Context, show_all: bool, quiet: bool, filters: tuple[str, ...], fmt: str | None, no_trunc: bool,
    last: int, latest: bool,
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
    if fmt:
        print_formatted(fmt, rows, {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
                                    "RunningFor": "CREATED", "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES"})  # fmt: skip
        return
    print_table(
        ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"],
        [
            [r["ID"], r["Image"], r["Command"], r["RunningFor"], r["Status"], r["Ports"], r["Names"]]
            for r in rows
        ],
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
@click.argument("container")
@click.pass_context
def cleanup_cmd(ctx: click.Context, container: str) -> None:
    """conmon's exit command: record the exit and apply the restart policy."""
    service(ctx).cleanup(container)


@click.group("container", cls=LazyGroup, lazy={n: f"container_tools:{n}_cmd" for n in _TOOLS})
def container_group() -> None:
    """Manage containers."""


for _name, _command in {
    "run": run_cmd, "create": create_cmd, "start": start_cmd, "stop": stop_cmd, "kill": kill_cmd,
    "restart": restart_cmd, "rm": rm_cmd, "wait": wait_cmd, "pause": pause_cmd, "unpause": unpause_cmd,
    "rename": rename_cmd, "update": update_cmd, "attach": attach_cmd, "ls": ps_cmd, "ps": ps_cmd, "logs": logs_cmd, "prune": prune_cmd, "cleanup": cleanup_cmd,
}.items():  # fmt: skip
    container_group.add_command(_command, _name)
