"""Registry commands: pull, push, login, logout, with Docker's flags and output.

The engine is imported inside each command, so loading this module (for `--help`) stays cheap.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import click

from intermodal.errors import InvalidArgument

if TYPE_CHECKING:
    from intermodal.engine.distribution import ProgressEvent

# Statuses that only say "bytes are moving": a bar shows them on a terminal, plain output leaves them out.
_TRANSFER = ("Downloading", "Pushing")


def _root(ctx: click.Context) -> Path:
    root: Path = ctx.find_root().obj["root"]
    return root


def _tls_option(f: Any) -> Any:
    return click.option(
        "--tls-verify",
        type=bool,
        default=True,
        show_default=True,
        help="Require HTTPS with a verified certificate; false also allows plain HTTP.",
    )(f)


class PullProgress:
    """Docker-style progress: per-layer bars with bytes and speed on a terminal, one line per status change
    otherwise (what `docker pull` prints into a pipe or a CI log)."""

    def __init__(self, quiet: bool):
        self._quiet = quiet
        self._live: Any = None
        self._tasks: dict[str, Any] = {}
        self._last: dict[str, str] = {}

    def __enter__(self) -> PullProgress:
        if not self._quiet and sys.stdout.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self._live = Progress(
                TextColumn("{task.fields[ident]}: {task.description:<18}"),
                BarColumn(bar_width=40),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=Console(highlight=False),
            )
            self._live.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()

    def _line(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False)
        else:
            click.echo(text)

    def __call__(self, event: ProgressEvent) -> None:
        if self._quiet:
            return
        if not event.id:
            self._line(event.status)
            return
        task = self._tasks.get(event.id)
        if self._live is not None and event.total and (task is not None or event.status in _TRANSFER):
            if task is None:
                task = self._tasks[event.id] = self._live.add_task(
                    event.status, ident=event.id, total=event.total
                )
            self._live.update(task, description=event.status, completed=event.current, total=event.total)
            return
        if event.status in _TRANSFER or self._last.get(event.id) == event.status:
            return
        self._last[event.id] = event.status
        self._line(f"{event.id}: {event.status}")


@click.command("pull")
@click.argument("name")
@click.option("-a", "--all-tags", is_flag=True, help="Download all tagged images in the repository.")
@click.option("--platform", help="Pick this platform from a multi-platform image (os/arch[/variant]).")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output.")
@_tls_option
@click.pass_context
def pull_cmd(
    ctx: click.Context, name: str, all_tags: bool, platform: str | None, quiet: bool, tls_verify: bool
) -> None:
    """Download an image from a registry."""
    from intermodal.engine import distribution
    from intermodal.image import reference

    ref = reference.parse(name, default_tag=not all_tags)
    with PullProgress(quiet) as display:
        distribution.pull(_root(ctx), name, platform, all_tags, display, tls_verify=tls_verify)
    click.echo(ref.name if all_tags else str(ref))


@click.command("push")
@click.argument("name")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output.")
@_tls_option
@click.pass_context
def push_cmd(ctx: click.Context, name: str, quiet: bool, tls_verify: bool) -> None:
    """Upload an image to a registry."""
    from intermodal.engine import distribution
    from intermodal.image import reference

    with PullProgress(quiet) as display:
        distribution.push(_root(ctx), name, display, tls_verify=tls_verify)
    if quiet:
        click.echo(reference.parse(name).familiar)


@click.command("login")
@click.argument("server", required=False)
@click.option("-u", "--username", help="Username.")
@click.option("-p", "--password", help="Password (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Take the password from stdin.")
@_tls_option
def login_cmd(
    server: str | None, username: str | None, password: str | None, password_stdin: bool, tls_verify: bool
) -> None:
    """Log in to a registry (default: Docker Hub); credentials go to Docker's config.json."""
    from intermodal.engine import distribution

    if password and password_stdin:
        raise InvalidArgument("--password and --password-stdin are mutually exclusive")
    if password_stdin:
        if not username:
            raise InvalidArgument("must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    elif password:
        click.echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True)
    if not username:
        username = click.prompt("Username")
    if not password:
        password = click.prompt("Password", hide_input=True)
    path = distribution.login(server, str(username), str(password), tls_verify=tls_verify)
    click.echo(f"WARNING! Your password will be stored unencrypted in {path}.", err=True)
    click.echo("Login Succeeded")


@click.command("logout")
@click.argument("server", required=False)
def logout_cmd(server: str | None) -> None:
    """Log out from a registry (default: Docker Hub)."""
    from intermodal.engine import distribution

    registry, removed = distribution.logout(server)
    click.echo(f"Removing login credentials for {registry}" if removed else f"Not logged in to {registry}")
