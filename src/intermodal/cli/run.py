"""`run` and `create`: Docker's flags (kept apart so that other commands, and conmon's exit command, do not
build these ~70 options on every start)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from intermodal.cli.containers import service
from intermodal.cli.output import console_size
from intermodal.engine.containers.record import ContainerRecord
from intermodal.errors import IntermodalError, InvalidArgument

if TYPE_CHECKING:
    from intermodal.engine.containers.options import RunOptions


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
        click.option(
            "--log-driver", default="", help="Logging driver: k8s-file (json-file is an alias) or none."
        ),
        click.option(
            "-a",
            "--attach",
            multiple=True,
            help="Attach to STDIN, STDOUT or STDERR (the others go only to the log).",
        ),
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
        label_files=list(kw["label_file"]), platform=kw["platform"], log_driver=kw["log_driver"],
        attach=list(kw["attach"]), console_size=console_size() if kw["tty"] else (0, 0),
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
