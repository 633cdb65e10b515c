"""Output the way Docker prints it: aligned tables, human sizes, "3 days ago", and `--format` templates.

Tables are plain text with Docker's exact spacing (scripts `awk` them), not rich tables.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, BinaryIO

import click

from intermodal.errors import IntermodalError, InvalidArgument

_UNITS = ["B", "kB", "MB", "GB", "TB", "PB"]


def human_size(size: float) -> str:
    """Docker's `units.HumanSizeWithPrecision(size, 3)`: decimal units, 3 significant digits."""
    i = 0
    while size >= 1000 and i < len(_UNITS) - 1:
        size /= 1000
        i += 1
    return f"{size:.3g}{_UNITS[i]}"


def binary_size(size: float) -> str:
    """Docker's `units.BytesSize`: binary units, 4 significant digits (`stats`' memory column)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:.4g}{units[i]}"


def console_size() -> tuple[int, int]:
    """Our terminal's rows and columns, which a container's terminal starts with (the docker CLI sends its
    output's as ConsoleSize); (0, 0) when stdout is not a terminal."""
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except (OSError, ValueError):
        return (0, 0)
    return (size.lines, size.columns)


def time_ago(when: dt.datetime | str | float) -> str:
    """Docker's `units.HumanDuration` + " ago"."""
    moment = parse_time(when)
    seconds = (dt.datetime.now(dt.UTC) - moment).total_seconds()
    return f"{human_duration(seconds)} ago"


def human_duration(seconds: float) -> str:
    if seconds < 1:
        return "Less than a second"
    if seconds < 2:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = seconds / 60
    if minutes < 2:
        return "About a minute"
    if minutes < 60:
        return f"{int(minutes)} minutes"
    hours = seconds / 3600
    if round(hours) == 1:
        return "About an hour"
    if hours < 48:
        return f"{int(round(hours))} hours"
    if hours < 24 * 7 * 2:
        return f"{int(hours / 24)} days"
    if hours < 24 * 30 * 2:
        return f"{int(hours / 24 / 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{int(hours / 24 / 30)} months"
    return f"{int(hours / 24 / 365)} years"


def parse_time(when: dt.datetime | str | float) -> dt.datetime:
    if isinstance(when, dt.datetime):
        return when
    if isinstance(when, int | float):
        return dt.datetime.fromtimestamp(when, dt.UTC)
    text = when.replace("Z", "+00:00")
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)  # Go writes nanoseconds; Python takes microseconds
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return dt.datetime.fromtimestamp(0, dt.UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def print_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Columns padded to the widest cell plus three spaces, like Docker's tabwriter output."""
    rows = [list(r) for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for line in [list(headers), *rows]:
        cells = [c.ljust(w) for c, w in zip(line[:-1], widths[:-1], strict=True)] + [line[-1]]
        click.echo("   ".join(cells).rstrip())


_ACTION = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def render_template(template: str, data: Any) -> str:
    """A subset of Go templates as Docker uses them: `{{.A.B}}`, `{{json .}}`, `{{json .A}}`,
    `{{upper .A}}`, `{{lower .A}}`, `{{join .A ","}}`, and `\\t`/`\\n` escapes."""
    template = template.replace("\\t", "\t").replace("\\n", "\n")

    def substitute(match: re.Match[str]) -> str:
        words = _split_action(match.group(1))
        if len(words) == 1:
            return go_string(_lookup(data, words[0]))
        func, arg = words[0], words[1]
        value = _lookup(data, arg)
        if func == "json":
            return json.dumps(value, separators=(",", ":"))
        if func == "upper":
            return go_string(value).upper()
        if func == "lower":
            return go_string(value).lower()
        if func == "join" and len(words) == 3:
            return json.loads(words[2]).join(go_string(v) for v in value or [])
        if func == "index" and len(words) == 3:
            return go_string((value or {}).get(json.loads(words[2])))
        raise InvalidArgument(f"template parsing error: function {func!r} not supported in {template!r}")

    return _ACTION.sub(substitute, template)


def _split_action(action: str) -> list[str]:
    return re.findall(r'"[^"]*"|\S+', action)


def _lookup(data: Any, path: str) -> Any:
    if path == ".":
        return data
    if not path.startswith("."):
        raise InvalidArgument(f"template parsing error: unexpected {path!r}; use fields like {{{{.ID}}}}")
    value = data
    for part in path[1:].split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise InvalidArgument(f"template: can't evaluate field {part} in {path!r}")
    return value


def go_string(value: Any) -> str:
    """How Go's text/template prints a value: lists as `[a b]`, maps as `map[k:v]`, nil as `<nil>`."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(go_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_string(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


def print_formatted(template: str, items: Iterable[dict[str, Any]], headers: dict[str, str]) -> None:
    """Docker's `--format`: `json` prints one JSON object per line; `table ...` adds a header row."""
    if template == "json":
        for item in items:
            click.echo(json.dumps(item, separators=(",", ":")))
        return
    if template.startswith("table"):
        body = template[len("table") :].strip() or "\t".join(f"{{{{.{k}}}}}" for k in headers)
        header_line = _ACTION.sub(lambda m: headers.get(m.group(1).strip().lstrip("."), m.group(1)), body)
        rows = [render_template(body, item).split("\t") for item in items]
        print_table(header_line.replace("\\t", "\t").split("\t"), rows)
        return
    for item in items:
        click.echo(render_template(template, item))


def for_each(specs: tuple[str, ...], action: Callable[[str], object], echo: bool = False) -> None:
    """Docker's multi-container verbs: do every one (echoing its name), report each failure, fail at the end."""
    failure: IntermodalError | None = None
    for spec in specs:
        try:
            action(spec)
            if echo:
                click.echo(spec)
        except IntermodalError as e:
            click.echo(f"Error: {e}", err=True)
            failure = e
    if failure:
        sys.exit(failure.exit_code)


def write_archive(output: str | None, produce: Callable[[BinaryIO], None]) -> None:
    """A tar stream to the file `output` (written next to it and renamed, so a failure never leaves a
    truncated archive behind) or to stdout, which Docker refuses when it is a terminal."""
    if not output:
        if sys.stdout.isatty():
            raise InvalidArgument("cowardly refusing to save to a terminal: use the -o flag or redirect")
        produce(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    import os
    import tempfile
    from pathlib import Path

    path = Path(output)
    fd, tmp = tempfile.mkstemp(dir=path.absolute().parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            produce(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
