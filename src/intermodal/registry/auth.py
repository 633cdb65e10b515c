"""Registry authentication as an httpx auth flow: `WWW-Authenticate` challenges answered with HTTP Basic or
with a bearer token from the challenge's realm (distribution `docs/spec/auth/token.md`).

The scope a token needs follows from the request itself (`repository:NAME:pull` for reads, `pull,push` for
writes, plus `repository:FROM:pull` for a cross-repository mount), so one auth object serves every repository
of a registry and tokens are cached per (realm, service, scope) until they expire.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field

import httpx

from intermodal.errors import RegistryError
from intermodal.registry.credentials import Credentials

# Tokens are used until this many seconds before they expire (clock skew, slow requests).
_EXPIRY_MARGIN = 10.0
# token.md: "expires_in ... defaults to 60 seconds" when the server does not say.
_DEFAULT_LIFETIME = 60.0

_CHALLENGE_TOKEN = re.compile(
    r"""\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*))?\s*,?"""
)
# What the registry would have said, for answers without a body (distribution's error code descriptions).
_BODILESS = {
    401: "unauthorized: authentication required",
    403: "denied: requested access to the resource is denied",
}
_REPO_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags)/")


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic" or "bearer"
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(header: str) -> list[Challenge]:
    """RFC 7235 challenges: `Bearer realm="…",service="…",scope="…"`; several may share one header."""
    challenges: list[Challenge] = []
    for match in _CHALLENGE_TOKEN.finditer(header):
        name, value = match.group(1), match.group(2)
        if value is None:
            challenges.append(Challenge(name.lower(), {}))
        elif challenges:
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            challenges[-1].params[name.lower()] = value
    return challenges


def request_scopes(request: httpx.Request) -> list[str]:
    """The token scopes a request needs (token.md "Requesting a Token", scope grammar in `scope.md`)."""
    path = request.url.path
    if path == "/v2/_catalog":
        return ["registry:catalog:*"]
    match = _REPO_PATH.match(path)
    if not match:
        return []
    actions = "pull" if request.method in ("GET", "HEAD") else "pull,push"
    scopes = [f"repository:{match['name']}:{actions}"]
    source = request.url.params.get("from")
    if source:
        scopes.append(f"repository:{source}:pull")
    return scopes


def error_text(response: httpx.Response) -> str:
    """The registry's own explanation (spec "Error Codes": `{"errors":[{"code","message"}]}`), else the status."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            parts = []
            for err in errors:
                if isinstance(err, dict):
                    code = str(err.get("code", "")).lower().replace("_", " ")
                    message = str(err.get("message", "")).strip()
                    parts.append(f"{code}: {message}" if code and message else code or message)
            if parts:
                return "; ".join(parts)
        for key in ("details", "detail", "error_description", "error", "message"):
            if isinstance(body.get(key), str):
                return str(body[key])
    text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    if not text and response.status_code in _BODILESS:  # e.g. a HEAD, which has no body to explain itself
        return _BODILESS[response.status_code]
    return f"HTTP {response.status_code} {response.reason_phrase}" + (f": {text}" if text else "")


class RegistryAuth(httpx.Auth):
    """Answers a registry's challenges; remembers the last one so later requests authenticate up front."""

    def __init__(self, credentials: Credentials | None):
        self.credentials = credentials
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, str, tuple[str, ...]], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def observe(self, response: httpx.Response) -> None:
        """Learn the challenge from an unauthenticated response (the `/v2/` ping), as Docker's client does."""
        challenge = self._supported(response)
        if challenge is not None:
            self._challenge = challenge

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        scopes = request_scopes(request)
        if self._challenge is not None:
            yield from self._authorize(request, self._challenge, scopes, [], fresh=False)
        response = yield request
        if response.status_code != 401:
            return
        challenge = self._supported(response)
        if challenge is None:
            return
        self._challenge = challenge
        extra = challenge.params.get("scope", "").split()
        if (yield from self._authorize(request, challenge, scopes, extra, fresh=True)):
            yield request

    def _supported(self, response: httpx.Response) -> Challenge | None:
        if response.status_code != 401:
            return None
        for challenge in parse_challenges(response.headers.get("www-authenticate", "")):
            if challenge.scheme == "bearer" and challenge.params.get("realm"):
                return challenge
            if challenge.scheme == "basic":
                return challenge
        return None

    def _basic_header(self) -> str:
        assert self.credentials is not None
        pair = f"{self.credentials.username}:{self.credentials.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def _authorize(
        self,
        request: httpx.Request,
        challenge: Challenge,
        scopes: list[str],
        extra: list[str],
        *,
        fresh: bool,
    ) -> Generator[httpx.Request, httpx.Response, bool]:
        """Set the Authorization header; may first fetch a token. Returns whether it set anything."""
        if challenge.scheme == "basic":
            if self.credentials is None:
                return False
            request.headers["Authorization"] = self._basic_header()
            return True
        realm = challenge.params["realm"]
        service = challenge.params.get("service", "")
        key = (realm, service, tuple(sorted(set(scopes))))
        with self._lock:
            cached = self._tokens.get(key)
        if cached is not None and not fresh and cached[1] > time.monotonic():
            request.headers["Authorization"] = f"Bearer {cached[0]}"
            return True
        params = httpx.QueryParams([("service", service)] if service else [])
        for scope in sorted(set(scopes) | set(extra)):
            params = params.add("scope", scope)
        headers = {}
        if self.credentials is not None:
            params = params.add("account", self.credentials.username)
            headers["Authorization"] = self._basic_header()
        response = yield httpx.Request("GET", realm, params=params, headers=headers)
        response.read()
        if response.status_code != 200:
            raise RegistryError(
                f"authentication with {realm} failed: {error_text(response)}", response.status_code
            )
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or _DEFAULT_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"authentication with {realm} failed: the token server sent no token")
        with self._lock:
            self._tokens[key] = (token, time.monotonic() + max(lifetime - _EXPIRY_MARGIN, 1.0))
        request.headers["Authorization"] = f"Bearer {token}"
        return True
