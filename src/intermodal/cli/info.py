"""`info` and `version`: Docker's layouts, or `--format json|TEMPLATE`."""

from __future__ import annotations

import json
from typing import Any

import click

from intermodal.cli.output import binary_size, render_template


def _print(data: dict[str, Any], fmt: str | None, lines: list[str]) -> None:
    if fmt == "json":
        click.echo(json.dumps(data, separators=(",", ":")))
    elif fmt:
        click.echo(render_template(fmt, data))
    else:
        click.echo("\n".join(lines))


@click.command("version")
@click.option("-f", "--format", "fmt", help="'json' or a Go template, e.g. '{{.Server.Version}}'.")
def version_cmd(fmt: str | None) -> None:
    """Show the intermodal version information."""
    from intermodal.engine.info import version

    data = version()
    c = data["Client"]
    _print(data, fmt, [
        "Client: intermodal", f" Version:           {c['Version']}", f" API version:       {c['ApiVersion']}",
        f" Python version:    {c['PythonVersion']}", f" OS/Arch:           {c['Os']}/{c['Arch']}",
        f" Kernel version:    {c['KernelVersion']}",
        "", "Server: the same program (daemonless)",
    ])  # fmt: skip


@click.command("info")
@click.option("-f", "--format", "fmt", help="'json' or a Go template, e.g. '{{.CgroupVersion}}'.")
@click.pass_context
def info_cmd(ctx: click.Context, fmt: str | None) -> None:
    """Display system-wide information."""
    from intermodal.engine.info import info

    d = info(ctx.find_root().obj["root"])
    _print(d, fmt, [
        "Server:",
        f" Containers: {d['Containers']}", f"  Running: {d['ContainersRunning']}",
        f"  Paused: {d['ContainersPaused']}", f"  Stopped: {d['ContainersStopped']}",
        f" Images: {d['Images']}", f" Server Version: {d['ServerVersion']}",
        f" Storage Driver: {d['Driver']}", f" Logging Driver: {d['LoggingDriver']}",
        f" Cgroup Driver: {d['CgroupDriver']}", f" Cgroup Version: {d['CgroupVersion']}",
        f" Runtimes: {' '.join(d['Runtimes'])}", f" Default Runtime: {d['DefaultRuntime']}",
        f" VM Accelerator: {d['VmAccelerator']}",
        " Security Options:", *(f"  {opt}" for opt in d["SecurityOptions"]),
        f" Kernel Version: {d['KernelVersion']}", f" Operating System: {d['OperatingSystem']}",
        f" OSType: {d['OSType']}", f" Architecture: {d['Architecture']}", f" CPUs: {d['NCPU']}",
        f" Total Memory: {binary_size(d['MemTotal'])}", f" Name: {d['Name']}",
        f" Docker Root Dir: {d['DockerRootDir']}",
    ])  # fmt: skip
