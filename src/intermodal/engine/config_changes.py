"""Dockerfile-style `--change` instructions applied to an image config (`import -c`, `commit -c`).

Docker accepts CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME and WORKDIR here.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from intermodal.errors import InvalidArgument

_ALLOWED = {
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "ONBUILD",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
}


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    out = dict(config)
    for change in changes:
        keyword, _, rest = change.strip().partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword not in _ALLOWED:
            raise InvalidArgument(
                f"invalid --change {change!r}: {keyword or 'empty'} is not one of {', '.join(sorted(_ALLOWED))}"
            )
        if keyword in ("CMD", "ENTRYPOINT"):
            out["Cmd" if keyword == "CMD" else "Entrypoint"] = _command(rest, change)
        elif keyword in ("ENV", "LABEL"):
            key = "Env" if keyword == "ENV" else "Labels"
            pairs = _pairs(rest, change)
            if keyword == "ENV":
                env = [e for e in out.get("Env") or [] if e.split("=", 1)[0] not in pairs]
                out["Env"] = env + [f"{k}={v}" for k, v in pairs.items()]
            else:
                out[key] = {**(out.get("Labels") or {}), **pairs}
        elif keyword == "EXPOSE":
            ports = dict(out.get("ExposedPorts") or {})
            for port in rest.split():
                ports[port if "/" in port else f"{port}/tcp"] = {}
            out["ExposedPorts"] = ports
        elif keyword == "VOLUME":
            paths = json.loads(rest) if rest.startswith("[") else rest.split()
            out["Volumes"] = {**(out.get("Volumes") or {}), **{p: {} for p in paths}}
        elif keyword == "ONBUILD":
            out["OnBuild"] = [*(out.get("OnBuild") or []), rest]
        else:
            field = {"STOPSIGNAL": "StopSignal", "USER": "User", "WORKDIR": "WorkingDir"}[keyword]
            if not rest:
                raise InvalidArgument(f"invalid --change {change!r}: {keyword} needs a value")
            out[field] = rest
    return out


def _command(rest: str, change: str) -> list[str]:
    """JSON (exec) form, else shell form wrapped in `/bin/sh -c` as Docker does."""
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    if not rest:
        raise InvalidArgument(f"invalid --change {change!r}: give a command")
    return ["/bin/sh", "-c", rest]


def _pairs(rest: str, change: str) -> dict[str, str]:
    """`K=V K2="v 2"` or the legacy single `K V` form."""
    try:
        words = shlex.split(rest)
    except ValueError as e:
        raise InvalidArgument(f"invalid --change {change!r}: {e}") from None
    if words and "=" not in words[0]:
        if len(words) < 2:
            raise InvalidArgument(f"invalid --change {change!r}: expected KEY=VALUE")
        return {words[0]: " ".join(words[1:])}
    pairs = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"invalid --change {change!r}: {word!r} is not KEY=VALUE")
        pairs[key] = value
    return pairs
