"""Image references with Docker's normalisation (distribution/reference, `normalize.go`).

`busybox` -> `docker.io/library/busybox:latest`; `localhost:5000/app` keeps its registry; a digest may
follow a tag (`name:tag@sha256:...`), in which case the digest wins for resolution.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from intermodal.errors import InvalidArgument
from intermodal.image.digest import Digest

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
_LEGACY_REGISTRIES = {"index.docker.io", "registry-1.docker.io"}

# Grammar from distribution/reference/regexp.go.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_REFERENCE = re.compile(
    rf"^(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{{32,}}))?$"
)
_NAME_MAX = 255


@dataclass(frozen=True)
class Reference:
    """A fully normalised reference: registry, repository path, and a tag and/or digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def name(self) -> str:
        """`registry/repository`, the key tags and digests hang off."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        """The short name Docker prints: `busybox`, `user/app`, `localhost:5000/app`."""
        if self.registry == DEFAULT_REGISTRY:
            return self.repository.removeprefix("library/")
        return self.name

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def familiar(self) -> str:
        text = self.familiar_name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)


def parse(text: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise `text`. Raises InvalidArgument with the reason when it is not a valid reference."""
    if not text:
        raise InvalidArgument("invalid reference format: the image name is empty")
    match = _REFERENCE.match(text)
    if not match:
        if any(c.isupper() for c in text.split("@")[0].split("/")[-1].split(":")[0]):
            raise InvalidArgument(f"invalid reference format {text!r}: repository name must be lowercase")
        raise InvalidArgument(
            f"invalid reference format {text!r}: expected [registry[:port]/]name[:tag][@sha256:digest]"
        )
    name = match["name"]
    if len(name) > _NAME_MAX:
        raise InvalidArgument(f"invalid reference format {text!r}: repository name longer than {_NAME_MAX}")
    registry, repository = _split_domain(name)
    if any(c.isupper() for c in repository):
        raise InvalidArgument(f"invalid reference format {text!r}: repository name must be lowercase")
    digest = Digest.parse(match["digest"]) if match["digest"] else None
    tag = match["tag"]
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(registry, repository, tag, digest)


def _split_domain(name: str) -> tuple[str, str]:
    """Docker's rule: the first component is a registry only if it has a '.' or ':' or is 'localhost'."""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        registry, repository = first, rest
    else:
        registry, repository = DEFAULT_REGISTRY, name
    if registry in _LEGACY_REGISTRIES:
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in repository:
        repository = f"library/{repository}"
    return registry, repository
