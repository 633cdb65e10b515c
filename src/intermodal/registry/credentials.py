"""Docker's credential file, `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`), so `docker login`
and `intermodal login` share credentials.

Only the `auths` map with base64 `user:password` entries is read and written; credential helpers
(`credsStore`, `credHelpers`) are left untouched. The file holds secrets, so it is always rewritten with
mode 0600, atomically, keeping every other key as it was.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intermodal.errors import InvalidArgument
from intermodal.fsutil import atomic_write_json, read_json
from intermodal.image.reference import DEFAULT_REGISTRY

# Docker keeps Docker Hub credentials under its v1 index URL; keep that key so both tools find them.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"


def config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base) if base else Path.home() / ".docker") / "config.json"


def _key(registry: str) -> str:
    return DOCKER_HUB_KEY if registry == DEFAULT_REGISTRY else registry


def _hostname(key: str) -> str:
    """Docker's `ConvertToHostname`: entries may be stored as URLs (`https://host/v1/`)."""
    for scheme in ("https://", "http://"):
        key = key.removeprefix(scheme)
    return key.split("/", 1)[0]


def _load() -> dict[str, Any]:
    path = config_path()
    try:
        obj = read_json(path, {})
    except ValueError as e:
        raise InvalidArgument(f"{path} is not valid JSON ({e}); fix or remove it") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{path} is not a JSON object; fix or remove it")
    return obj


def lookup(registry: str) -> Credentials | None:
    """The stored credentials for `registry` (a reference's registry part, e.g. `docker.io`)."""
    auths = _load().get("auths") or {}
    wanted = _hostname(_key(registry))
    for key, entry in auths.items():
        if _hostname(key) != wanted or not isinstance(entry, dict) or not entry.get("auth"):
            continue
        try:
            username, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidArgument(
                f"{config_path()}: the auth entry for {key} is not base64 user:password"
            ) from None
        if sep:
            return Credentials(username, password)
    return None


def store(registry: str, credentials: Credentials) -> Path:
    obj = _load()
    auths = obj.setdefault("auths", {})
    token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
    auths[_key(registry)] = {"auth": token}
    path = config_path()
    atomic_write_json(path, obj, mode=0o600)
    return path


def erase(registry: str) -> bool:
    """Remove every entry for `registry`; False if there was none."""
    obj = _load()
    auths = obj.get("auths") or {}
    wanted = _hostname(_key(registry))
    keys = [k for k in auths if _hostname(k) == wanted]
    if not keys:
        return False
    for k in keys:
        del auths[k]
    atomic_write_json(config_path(), obj, mode=0o600)
    return True
