"""Container logs in the CRI "k8s-file" format that conmon writes (one line per record:
`<RFC3339Nano time> <stdout|stderr> <F|P> <text>`, P marking a partial line), and the reader behind
`logs --tail --since --until -t -f`. The foreground `run` writes the same format, so one reader serves both."""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from intermodal.errors import InvalidArgument

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)$")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class LogLine:
    time: dt.datetime
    stream: str
    text: bytes  # without the trailing newline of a full line
    timestamp: str  # as stored (Docker prints it with -t)


def now_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


class LogWriter:
    """Appends output chunks as k8s-file records, splitting them into lines (partial ones marked P)."""

    def __init__(self, path: Path):
        self._file: BinaryIO = open(path, "ab")  # noqa: SIM115 - closed in close()
        self._pending: dict[str, bytes] = {}

    def write(self, stream: str, data: bytes) -> None:
        buffer = self._pending.get(stream, b"") + data
        *lines, rest = buffer.split(b"\n")
        stamp = now_stamp().encode()
        for line in lines:
            self._file.write(b"%s %s F %s\n" % (stamp, stream.encode(), line))
        self._pending[stream] = rest
        self._file.flush()

    def close(self) -> None:
        stamp = now_stamp().encode()
        for stream, rest in self._pending.items():
            if rest:
                self._file.write(b"%s %s P %s\n" % (stamp, stream.encode(), rest))
        self._file.close()


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """Docker's --since/--until: RFC 3339 time, Unix timestamp, or a duration relative to now (`10m`)."""
    now = now or dt.datetime.now(dt.UTC)
    m = _RELATIVE.match(text)
    if m:
        return now - dt.timedelta(seconds=float(m.group(1)) * _SECONDS[m.group(2)])
    try:
        return dt.datetime.fromtimestamp(float(text), dt.UTC)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(_trim_nanos(text).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(
            f"invalid time {text!r}: use RFC 3339 (2024-01-02T15:04:05Z), a Unix timestamp or a duration (10m)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _trim_nanos(stamp: str) -> str:
    return re.sub(r"(\.\d{6})\d+", r"\1", stamp)


def _parse_line(raw: bytes) -> tuple[str, str, str, bytes] | None:
    parts = raw.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return None
    stamp, stream, tag = (p.decode(errors="replace") for p in parts[:3])
    return stamp, stream, tag, parts[3] if len(parts) == 4 else b""


def _records(lines: Iterator[bytes]) -> Iterator[LogLine]:
    partial: dict[str, bytes] = {}
    for raw in lines:
        parsed = _parse_line(raw)
        if not parsed:
            continue
        stamp, stream, tag, text = parsed
        if tag == "P":
            partial[stream] = partial.get(stream, b"") + text
            continue
        text = partial.pop(stream, b"") + text
        try:
            moment = dt.datetime.fromisoformat(_trim_nanos(stamp).replace("Z", "+00:00"))
        except ValueError:
            continue
        yield LogLine(moment, stream, text, stamp)


def read(
    path: Path,
    *,
    tail: int | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    follow: Callable[[], bool] | None = None,
) -> Iterator[LogLine]:
    """Yield log records; with `follow`, keep yielding new ones while `follow()` says the container runs."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed in finally
    except FileNotFoundError:
        return
    try:
        existing = list(_records(iter(f.readline, b"")))
        selected = [r for r in existing if (not since or r.time >= since) and (not until or r.time <= until)]
        if tail is not None:
            selected = selected[-tail:] if tail > 0 else []
        yield from selected
        if follow is None:
            return
        buffer = b""
        while True:
            chunk = f.readline()
            if chunk:
                buffer += chunk
                if buffer.endswith(b"\n"):
                    for record in _records(iter([buffer])):
                        if not until or record.time <= until:
                            yield record
                    buffer = b""
                continue
            if _rotated(f, path):
                f.close()
                f = open(path, "rb")  # noqa: SIM115
                continue
            if not follow():
                return
            time.sleep(0.05)
    finally:
        f.close()


def _rotated(f: BinaryIO, path: Path) -> bool:
    """conmon rotates by replacing the file; a follower must reopen it."""
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return False
