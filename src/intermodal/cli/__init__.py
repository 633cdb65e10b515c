"""Command-line frontend: a thin layer over the engine, Docker's verbs and flags.

Subcommands are imported only when invoked, so `intermodal --help` and every command start fast.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from intermodal import __version__
from intermodal.errors import IntermodalError
from intermodal.exit import code_of, leave

# command name -> "module:attribute" under intermodal.cli
_COMMANDS = {
    "images": "images:images_cmd",
    "image": "images:image_group",
    "tag": "images:tag_cmd",
    "rmi": "images:rmi_cmd",
    "history": "images:history_cmd",
    "save": "images:save_cmd",
    "load": "images:load_cmd",
    "import": "images:import_cmd",
    "system": "system:system_group",
    "pull": "registry:pull_cmd",
    "push": "registry:push_cmd",
    "login": "registry:login_cmd",
    "logout": "registry:logout_cmd",
    "run": "run:run_cmd",
    "create": "run:create_cmd",
    "start": "containers:start_cmd",
    "stop": "containers:stop_cmd",
    "kill": "containers:kill_cmd",
    "restart": "containers:restart_cmd",
    "rm": "containers:rm_cmd",
    "wait": "containers:wait_cmd",
    "pause": "containers:pause_cmd",
    "unpause": "containers:unpause_cmd",
    "rename": "containers:rename_cmd",
    "update": "containers:update_cmd",
    "attach": "containers:attach_cmd",
    "ps": "containers:ps_cmd",
    "logs": "containers:logs_cmd",
    "container": "containers:container_group",
    "exec": "container_tools:exec_cmd",
    "inspect": "inspect:inspect_cmd",
    "top": "container_tools:top_cmd",
    "stats": "container_tools:stats_cmd",
    "cp": "container_tools:cp_cmd",
    "diff": "container_tools:diff_cmd",
    "commit": "container_tools:commit_cmd",
    "export": "container_tools:export_cmd",
    "volume": "volumes:volume_group",
    "build": "build:build_cmd",
    "builder": "build:builder_group",
    "network": "networks:network_group",
    "port": "networks:port_cmd",
    "info": "info:info_cmd",
    "version": "info:version_cmd",
}


class LazyGroup(click.Group):
    """A click group whose subcommands live in modules loaded on first use."""

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            module, attr = self._lazy[cmd_name].split(":")
            command: click.Command = getattr(importlib.import_module(f"intermodal.cli.{module}"), attr)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, lazy=_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", envvar="INTERMODAL_ROOT", help="State directory (default /var/lib/intermodal).")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(version=__version__, prog_name="intermodal")
@click.pass_context
def cli(ctx: click.Context, root: str | None, debug: bool) -> None:
    """intermodal: run the same image as a container or a micro-VM."""
    from intermodal.engine.root import resolve_root

    ctx.obj = {"root": resolve_root(root), "debug": debug}


def main() -> None:
    try:
        _main()
        code = 0
    except SystemExit as e:
        code = code_of(e)
    leave(code)


def _main() -> None:
    debug = "--debug" in sys.argv[1:]
    try:
        cli.main(standalone_mode=False)
    except IntermodalError as e:
        if debug:
            raise
        click.echo(f"Error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(125 if e.exit_code == 2 else e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    except OSError as e:
        if debug:
            raise
        click.echo(f"Error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}", err=True)
        sys.exit(125)
