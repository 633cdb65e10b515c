"""Run apply_layer in a forked child chrooted into the test's own directory.

The layer tests feed apply_layer tarballs that try to escape: symlinks to `/`, `../../..` climbs, whiteouts
through links. If a regression ever let one through, running it in the test process would write to, or
delete from, the real host root. Inside the jail the kernel keeps every path under the test's directory, so
an escape lands where the tests look for it and the host cannot be touched. Needs root (chroot(2)).
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from intermodal.image.layer import apply_layer, open_decompressed

CAN_JAIL = os.geteuid() == 0


def jailed_apply(
    jail: Path, data: bytes, target: Path, *, compression: str = "", overlay: bool = False
) -> int:
    """apply_layer(data, target) with `jail` as `/`; returns its result or raises its exception."""
    inside = Path("/", target.relative_to(jail))

    def unpack() -> int:
        return apply_layer(
            open_decompressed(io.BytesIO(data), compression), inside, overlay_whiteouts=overlay
        )

    result = jailed(jail, unpack)
    assert isinstance(result, int)
    return result


def jailed(jail: Path, fn: Callable[[], object]) -> object:
    """Call `fn` in a forked child chrooted to `jail`; return its (picklable) result or raise its exception."""
    if not CAN_JAIL:
        pytest.skip("layers are only unpacked inside a chroot jail (needs root)")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns to pytest
        os.close(read_fd)
        try:
            os.chroot(jail)
            os.chdir("/")
            outcome: tuple[str, object] = ("ok", fn())
        except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
            outcome = ("error", e)
        try:
            payload = pickle.dumps(outcome)
        except Exception as e:  # noqa: BLE001
            payload = pickle.dumps(("error", RuntimeError(f"unpicklable outcome {outcome!r}: {e}")))
        with os.fdopen(write_fd, "wb") as w:
            w.write(payload)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as r:
        payload = r.read()
    _, status = os.waitpid(pid, 0)
    if not payload:
        raise RuntimeError(f"jailed call died (wait status {status})")
    kind, value = pickle.loads(payload)
    if kind == "error":
        assert isinstance(value, BaseException)
        raise value
    return value


T0 = 1_600_000_000  # a fixed mtime for test entries


def entry(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **attrs: object
) -> tuple[tarfile.TarInfo, bytes]:
    """One tar member for a hand-built test layer."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data)
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = T0
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data
