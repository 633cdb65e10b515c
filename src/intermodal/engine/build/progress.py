"""Build progress: BuildKit's plain log (``#5 [2/4] RUN …``, ``#5 CACHED``, ``#5 DONE 0.3s``) for logs and
CI, a rich live view on a terminal (one line per step, CACHED marks, timings, the running step's last
output lines), or nothing (``-q``). Every mode keeps each step's last output lines for the error report.
"""

from __future__ import annotations

import collections
import sys
import time
from typing import TextIO

_TAIL = 10  # output lines shown when a step fails, and under a running step on a terminal


class Progress:
    """Quiet: only a failure's output is shown (on stderr), as `docker build -q` does."""

    def __init__(self, out: TextIO | None = None):
        self.out = out or sys.stderr
        self._names: dict[int, str] = {}
        self._started: dict[int, float] = {}
        self._tails: dict[int, collections.deque[str]] = {}
        self._partial: dict[int, str] = {}
        self._next = 0

    def start(self, name: str) -> int:
        self._next += 1
        vid = self._next
        self._names[vid] = name
        self._started[vid] = time.monotonic()
        self._tails[vid] = collections.deque(maxlen=_TAIL)
        self._shown(vid, "start", "")
        return vid

    def output(self, vid: int, data: bytes) -> None:
        text = self._partial.pop(vid, "") + data.decode(errors="replace")
        *lines, rest = text.split("\n")
        if rest:
            self._partial[vid] = rest
        for line in lines:
            self._tails[vid].append(line)
            self._shown(vid, "log", line)

    def cached(self, vid: int) -> None:
        self._shown(vid, "cached", "")

    def done(self, vid: int) -> None:
        self._flush(vid)
        self._shown(vid, "done", f"{time.monotonic() - self._started[vid]:.1f}s")

    def failed(self, vid: int, reason: str) -> None:
        self._flush(vid)
        self._shown(vid, "error", reason)

    def tail(self, vid: int) -> list[str]:
        self._flush(vid)
        return list(self._tails[vid])

    def note(self, text: str) -> None:
        """A warning or summary line (unconsumed build args, the final image)."""
        self.out.write(text + "\n")

    def close(self) -> None:
        return None

    def _flush(self, vid: int) -> None:
        rest = self._partial.pop(vid, "")
        if rest:
            self._tails[vid].append(rest)
            self._shown(vid, "log", rest)

    def _shown(self, vid: int, kind: str, text: str) -> None:
        if kind == "error":
            for line in self._tails[vid]:
                self.out.write(f"#{vid} {line}\n")
            self.out.write(f"#{vid} ERROR: {text}\n")


class PlainProgress(Progress):
    """BuildKit's ``--progress=plain`` format."""

    def _shown(self, vid: int, kind: str, text: str) -> None:
        elapsed = time.monotonic() - self._started[vid]
        if kind == "start":
            self.out.write(f"#{vid} {self._names[vid]}\n")
        elif kind == "log":
            self.out.write(f"#{vid} {elapsed:.3f} {text}\n")
        elif kind == "cached":
            self.out.write(f"#{vid} CACHED\n\n")
        elif kind == "done":
            self.out.write(f"#{vid} DONE {text}\n\n")
        else:
            self.out.write(f"#{vid} ERROR: {text}\n")
        self.out.flush()


class TtyProgress(Progress):
    """A live view: finished steps stay as one line each; the running one shows its last output lines."""

    def __init__(self, out: TextIO | None = None):
        super().__init__(out)
        from rich.console import Console
        from rich.live import Live

        self._console = Console(file=self.out)
        self._status: dict[int, str] = {}
        self._began = time.monotonic()
        self._live = Live(console=self._console, refresh_per_second=8, transient=False)
        self._live.start()

    def _render(self) -> object:
        from rich.text import Text

        lines = Text()
        total = time.monotonic() - self._began
        lines.append(f"[+] Building {total:.1f}s ({sum(s != '' for s in self._status.values())}/{self._next})\n",
                     style="bold")  # fmt: skip
        for vid, name in self._names.items():
            status = self._status.get(vid, "")
            if status == "":
                lines.append(f" => {name}  {time.monotonic() - self._started[vid]:.1f}s\n", style="blue")
                for line in self._tails[vid]:
                    lines.append(f" => => {line[:160]}\n", style="dim")
            elif status.startswith("ERROR"):
                lines.append(f" => {status} {name}\n", style="red")
            else:
                lines.append(f" => {name}  {status}\n")
        return lines

    def _shown(self, vid: int, kind: str, text: str) -> None:
        if kind == "cached":
            self._status[vid] = "CACHED"
        elif kind == "done":
            self._status[vid] = text
        elif kind == "error":
            self._status[vid] = "ERROR"
        self._live.update(self._render())  # type: ignore[arg-type]
        if kind == "error":
            self._live.stop()
            for line in self._tails[vid]:
                self.out.write(f"#{vid} {line}\n")
            self.out.write(f"#{vid} ERROR: {text}\n")

    def note(self, text: str) -> None:
        self._live.console.print(text, markup=False, highlight=False)

    def close(self) -> None:
        self._live.update(self._render())  # type: ignore[arg-type]
        self._live.stop()


def make_progress(mode: str, quiet: bool, out: TextIO | None = None) -> Progress:
    """``auto`` picks the live view on a terminal, plain text otherwise (BuildKit's rule)."""
    stream = out or sys.stderr
    if quiet:
        return Progress(stream)
    if mode == "tty" or (mode == "auto" and stream.isatty()):
        return TtyProgress(stream)
    return PlainProgress(stream)
