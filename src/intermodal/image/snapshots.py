"""Overlay snapshotter: each layer unpacked once into its own directory, keyed by chain ID, stacked as
overlayfs lower dirs (containerd's overlay snapshotter). It returns mount *descriptions*; it never mounts.

Chain IDs (image-spec config.md "Layer ChainID"): ChainID(L0) = DiffID(L0),
ChainID(L0|...|Ln) = sha256(ChainID(L0|...|Ln-1) + " " + DiffID(Ln)). Keying by chain ID means two images
that share a base share its unpacked directories.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from intermodal.errors import CorruptContent
from intermodal.fsutil import file_lock
from intermodal.image import mediatypes as mt
from intermodal.image.content import ContentStore
from intermodal.image.digest import Digest
from intermodal.image.models import Descriptor, ImageConfig, Manifest
from intermodal.lazy import lazy_import

layer = lazy_import("intermodal.image.layer")  # tarfile and the codecs: only when a layer is unpacked


@dataclass(frozen=True)
class Mount:
    """An OCI-runtime-style mount description: what to pass to mount(2), not a mounted thing."""

    type: str
    source: str
    options: tuple[str, ...]


def chain_ids(diff_ids: list[Digest]) -> list[Digest]:
    out: list[Digest] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append(Digest(hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest()))
    return out


class Snapshotter:
    def __init__(self, root: Path, content: ContentStore):
        self.root = root
        self._content = content

    def layer_dir(self, chain_id: Digest) -> Path:
        # Short names keep overlay's lowerdir option under the kernel's one-page limit for deep images.
        return self.root / chain_id.hex[:24] / "fs"

    def unpack(self, manifest: Manifest, config: ImageConfig) -> list[Path]:
        """Make sure every layer of the image is unpacked; return the lower dirs, bottom layer first."""
        return self.unpack_layers(list(zip(manifest.layers, config.diff_ids, strict=True)))

    def unpack_layers(self, layers: list[tuple[Descriptor, Digest]]) -> list[Path]:
        """`unpack` for a stack of (blob descriptor, diff ID) that is not an image yet (a build stage)."""
        dirs = []
        for (layer, diff_id), chain_id in zip(layers, chain_ids([d for _, d in layers]), strict=True):
            target = self.layer_dir(chain_id)
            if not target.is_dir():
                with file_lock(target.parent.with_suffix(".lock")):
                    if not target.is_dir():
                        self._unpack_one(
                            layer.digest, mt.layer_compression(layer.media_type), diff_id, target
                        )
            dirs.append(target)
        return dirs

    def _unpack_one(self, blob: Digest, compression: str, diff_id: Digest, target: Path) -> None:
        """Unpack into a scratch dir and rename into place, so a half-unpacked layer is never used."""
        import tempfile

        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpack-"))
        try:
            with self._content.open(blob) as raw:
                hashing = _HashingReader(layer.open_decompressed(raw, compression))
                layer.apply_layer(hashing, scratch, overlay_whiteouts=True)
                hashing.drain()
            if hashing.digest != diff_id:
                raise CorruptContent(
                    f"layer {blob} does not match its diff ID {diff_id}; re-pull or re-load the image"
                )
            os.chmod(scratch, 0o755)
            os.rename(scratch, target)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise

    def adopt(self, chain_id: Digest, directory: Path) -> bool:
        """Take `directory` (an overlay upper dir whose diff is exactly this layer) as the unpacked layer,
        so a build's next step stacks on it without unpacking the blob just written. False if one exists."""
        target = self.layer_dir(chain_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(target.parent.with_suffix(".lock")):
            if target.is_dir():
                return False
            os.chmod(directory, 0o755)
            os.rename(directory, target)
        return True

    def mount(self, lowers: list[Path], upper: Path, work: Path) -> Mount:
        """The overlay mount for a container: its own upper/work dirs over the image's layers."""
        if not lowers:
            empty = self.root / "empty"
            empty.mkdir(parents=True, exist_ok=True)
            lowers = [empty]
        lowerdir = ":".join(str(p) for p in reversed(lowers))  # overlayfs wants the top layer first
        return Mount("overlay", "overlay", (f"lowerdir={lowerdir}", f"upperdir={upper}", f"workdir={work}"))

    def in_use(self) -> set[str]:
        return {p.name for p in self.root.iterdir() if p.is_dir()} if self.root.is_dir() else set()

    def remove_except(self, keep: set[Digest]) -> int:
        """Drop unpacked layers whose chain IDs are no longer used; returns how many were removed."""
        wanted = {d.hex[:24] for d in keep}
        removed = 0
        for name in self.in_use() - wanted - {"empty"}:
            with file_lock(self.root / f"{name}.lock"):
                shutil.rmtree(self.root / name, ignore_errors=True)
            (self.root / f"{name}.lock").unlink(missing_ok=True)
            removed += 1
        return removed


class _HashingReader:
    """Hashes what apply_layer reads, so the diff ID is checked in the same pass as the unpack."""

    def __init__(self, inner: BinaryIO):
        self._inner = inner
        self._hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self._hash.update(data)
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """tar readers stop at the end-of-archive marker; the diff ID covers the padding after it too."""
        while self.read(1 << 20):
            pass

    @property
    def digest(self) -> Digest:
        return Digest(self._hash.hexdigest())
