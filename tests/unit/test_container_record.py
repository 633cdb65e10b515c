"""Container records: the per-container lock never brings back a container that was just removed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from intermodal import fsutil
from intermodal.engine.containers.record import ContainerStore
from intermodal.errors import NotFound


def test_locking_a_container_removed_meanwhile_fails_without_recreating_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rm` deletes the directory just as conmon's exit command locks the container (a stray directory with
    a `lock` file was left): the removal lands at the first moment the lock looks at the file system."""
    store = ContainerStore(tmp_path)
    cid = "a" * 64
    store.dir(cid).mkdir(parents=True)
    target = str(store.dir(cid))
    real_is_dir, real_open = Path.is_dir, os.open
    removed: list[bool] = []

    def remove_once() -> None:
        if not removed:
            removed.append(True)
            shutil.rmtree(target)

    def is_dir(self: Path) -> bool:
        seen = real_is_dir(self)
        remove_once()
        return seen

    def open_(path: str | os.PathLike[str], *args: object, **kwargs: object) -> int:
        if str(path).startswith(target):
            remove_once()
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "is_dir", is_dir)
    monkeypatch.setattr(fsutil.os, "open", open_)
    with pytest.raises(NotFound, match="no such container"):
        with store.locked(cid):
            pass
    monkeypatch.undo()
    assert not store.dir(cid).exists()
