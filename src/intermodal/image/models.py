"""OCI image index, manifest and config models (image-spec `image-index.md`, `manifest.md`, `config.md`).

Manifests are kept as the exact bytes we received or wrote: their digest is over those bytes, so a model is
only a parsed view. Docker v2 schema 2 manifests and manifest lists are accepted on read (same shape,
different media types).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from intermodal.errors import InvalidArgument
from intermodal.image import mediatypes as mt
from intermodal.image.digest import Digest


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Platform:
        return cls(obj.get("os", ""), obj.get("architecture", ""), obj.get("variant", ""))

    def to_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: Platform | None = None

    @classmethod
    def from_json(cls, obj: Any) -> Descriptor:
        try:
            return cls(
                media_type=str(obj["mediaType"]),
                digest=Digest.parse(obj["digest"]),
                size=int(obj["size"]),
                annotations=dict(obj.get("annotations") or {}),
                platform=Platform.from_json(obj["platform"]) if obj.get("platform") else None,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidArgument(f"invalid descriptor {obj!r}: {e}") from None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.annotations:
            out["annotations"] = self.annotations
        if self.platform:
            out["platform"] = self.platform.to_json()
        return out


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"invalid {what}: not JSON ({e})") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"invalid {what}: expected a JSON object")
    return obj


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON bytes, so the same image always gets the same digest."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Manifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = mt.OCI_MANIFEST
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: bytes, media_type: str | None = None) -> Manifest:
        obj = _load(data, "image manifest")
        kind = obj.get("mediaType") or media_type or mt.OCI_MANIFEST
        if kind not in mt.MANIFESTS:
            raise InvalidArgument(
                f"unsupported manifest media type {kind!r}: expected an OCI or Docker v2 image"
            )
        if obj.get("schemaVersion") != 2:
            raise InvalidArgument("unsupported manifest: schemaVersion must be 2 (schema 1 is deprecated)")
        if "config" not in obj or not isinstance(obj.get("layers"), list):
            raise InvalidArgument("invalid image manifest: missing config or layers")
        return cls(
            config=Descriptor.from_json(obj["config"]),
            layers=tuple(Descriptor.from_json(layer) for layer in obj["layers"]),
            media_type=kind,
            annotations=dict(obj.get("annotations") or {}),
        )

    def to_bytes(self) -> bytes:
        obj: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }
        if self.annotations:
            obj["annotations"] = self.annotations
        return canonical_json(obj)


@dataclass(frozen=True)
class Index:
    manifests: tuple[Descriptor, ...]
    media_type: str = mt.OCI_INDEX
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: bytes, media_type: str | None = None) -> Index:
        obj = _load(data, "image index")
        kind = obj.get("mediaType") or media_type or mt.OCI_INDEX
        if kind not in mt.INDEXES:
            raise InvalidArgument(f"unsupported index media type {kind!r}")
        if not isinstance(obj.get("manifests"), list):
            raise InvalidArgument("invalid image index: missing manifests")
        return cls(
            manifests=tuple(Descriptor.from_json(m) for m in obj["manifests"]),
            media_type=kind,
            annotations=dict(obj.get("annotations") or {}),
        )

    def to_bytes(self) -> bytes:
        obj: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "manifests": [m.to_json() for m in self.manifests],
        }
        if self.annotations:
            obj["annotations"] = self.annotations
        return canonical_json(obj)

    def select(self, platform: Platform) -> Descriptor:
        """Pick the manifest for `platform` (image-index.md: platform matching), ignoring attestations."""
        for m in self.manifests:
            p = m.platform
            same = p and p.os == platform.os and p.architecture == platform.architecture
            if same and (not platform.variant or p is not None and p.variant == platform.variant):
                return m
        wanted = f"{platform.os}/{platform.architecture}"
        raise InvalidArgument(f"no image for platform {wanted} in the index; choose another with --platform")


def media_type_of(data: bytes) -> str:
    """Sniff whether a JSON document is an index or a manifest (mediaType is optional in OCI)."""
    obj = _load(data, "manifest")
    if obj.get("mediaType"):
        return str(obj["mediaType"])
    return mt.OCI_INDEX if "manifests" in obj else mt.OCI_MANIFEST


@dataclass
class ImageConfig:
    """The image configuration JSON (config.md). Kept as a dict: unknown fields must survive round trips."""

    raw: dict[str, Any]

    @classmethod
    def parse(cls, data: bytes) -> ImageConfig:
        obj = _load(data, "image config")
        rootfs = obj.get("rootfs")
        if (
            not isinstance(rootfs, dict)
            or rootfs.get("type") != "layers"
            or not isinstance(rootfs.get("diff_ids"), list)
        ):
            raise InvalidArgument("invalid image config: rootfs must be {type: layers, diff_ids: [...]}")
        for d in rootfs["diff_ids"]:
            Digest.parse(d)
        cfg = obj.get("config")
        if cfg is not None and not isinstance(cfg, dict):
            raise InvalidArgument("invalid image config: config must be an object")
        return cls(obj)

    def to_bytes(self) -> bytes:
        return canonical_json(self.raw)

    @property
    def diff_ids(self) -> list[Digest]:
        return [Digest.parse(d) for d in self.raw["rootfs"]["diff_ids"]]

    @property
    def config(self) -> dict[str, Any]:
        return self.raw.get("config") or {}

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.raw.get("history") or [])

    @property
    def created(self) -> str:
        return str(self.raw.get("created") or "")

    @property
    def platform(self) -> Platform:
        return Platform(
            self.raw.get("os", "linux"), self.raw.get("architecture", "amd64"), self.raw.get("variant", "")
        )
