"""A client for the OCI distribution API v2 (distribution-spec `spec.md`, which Docker's registry API also is):
manifests, blobs with ranged and resumable reads, monolithic and chunked uploads, cross-repository mounts,
tag lists and the catalog.

Policy lives here too, so every caller gets the same behaviour: loopback registries (and `--tls-verify=false`)
may speak plain HTTP, everything else is HTTPS checked against the system CAs; a registry that cannot be
reached fails fast with one line; 5xx answers and dropped connections are retried with exponential backoff,
4xx answers never are (they will not change), and every error carries the registry's own message.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpcore
import httpx

from intermodal.errors import CorruptContent, InvalidArgument, RegistryError
from intermodal.image import mediatypes as mt
from intermodal.image.digest import Digest
from intermodal.image.models import media_type_of
from intermodal.image.reference import DEFAULT_REGISTRY
from intermodal.registry.auth import RegistryAuth, error_text
from intermodal.registry.credentials import Credentials

DOCKER_HUB_API = "registry-1.docker.io"
MANIFEST_TYPES = (mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST)
# spec "Pushing Manifests": registries SHOULD accept up to 4 MiB; anything larger is a bug or an attack.
MANIFEST_LIMIT = 4 << 20
# Blobs up to this size go up in one PUT; bigger ones in PATCH chunks of this size, each a resume point.
UPLOAD_CHUNK = 32 << 20
_PIECE = 1 << 20
ATTEMPTS = 4
BACKOFF = 0.25  # seconds before the first retry; doubles each time
TIMEOUT = httpx.Timeout(connect=5.0, read=60.0, write=60.0, pool=60.0)

# httpcore reads at most 64 KiB per recv(); over a blob of hundreds of MB the per-read Python work (h11 events,
# callbacks) was ~15% of a pull's CPU time. Up to 1 MiB per read costs nothing for small responses.
httpcore.HTTP11Connection.READ_NUM_BYTES = 1 << 20


def api_host(registry: str) -> str:
    """Where a reference's registry is served: Docker Hub's API lives on its own host."""
    return DOCKER_HUB_API if registry == DEFAULT_REGISTRY else registry


def is_loopback(registry: str) -> bool:
    """Docker treats `localhost`, 127.0.0.0/8 and ::1 as insecure registries without being told."""
    host = registry[1:].split("]", 1)[0] if registry.startswith("[") else registry.rsplit(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class FetchedManifest:
    data: bytes  # exactly as received: the digest is over these bytes
    media_type: str
    digest: Digest


class RegistryClient:
    """One registry. Thread-safe: pulls and pushes share one client (and its connections) across workers."""

    def __init__(self, registry: str, credentials: Credentials | None = None, *, tls_verify: bool = True):
        self.registry = registry
        self.host = api_host(registry)
        self.auth = RegistryAuth(credentials)
        # Loopback registries are plain HTTP like Docker's default insecure list; with --tls-verify=false,
        # HTTPS without verification is tried first, then plain HTTP (Docker's insecure-registry fallback).
        if is_loopback(registry):
            self._schemes = ["http"]
        elif tls_verify:
            self._schemes = ["https"]
        else:
            self._schemes = ["https", "http"]
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=8)
        common: dict[str, Any] = {
            "auth": self.auth,
            "timeout": TIMEOUT,
            "follow_redirects": True,
            "headers": {"User-Agent": "intermodal/0.1"},
        }
        if is_loopback(registry):
            self._http = httpx.Client(
                transport=httpx.HTTPTransport(verify=False, limits=limits),  # plain HTTP: nothing to verify
                mounts={"https://": _LazyTLS(limits, tls_verify)},  # only if a redirect leads to HTTPS
                trust_env=False,  # HTTP(S)_PROXY never applies to loopback (Go's net/http rule, Docker's too)
                **common,
            )
        else:
            verify: ssl.SSLContext | bool = ssl.create_default_context() if tls_verify else False
            self._http = httpx.Client(verify=verify, limits=limits, **common)
        self.base = f"{self._schemes[0]}://{self.host}"
        self._pinged = threading.Event()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------------------------

    def ping(self) -> None:
        """`GET /v2/` (spec "Determining support"): proves the endpoint speaks the API, settles the scheme,
        and learns the auth challenge so later requests authenticate without a round trip."""
        failure: Exception | None = None
        for scheme in self._schemes:
            try:
                response = self._send("GET", f"{scheme}://{self.host}/v2/", authenticate=False)
            except RegistryError as e:
                failure = e
                continue
            if response.status_code not in (200, 401):
                raise RegistryError(
                    f"{self.host} is not a registry (GET /v2/ answered {error_text(response)})",
                    response.status_code,
                )
            self.base = f"{scheme}://{self.host}"
            self.auth.observe(response)
            self._pinged.set()
            return
        assert failure is not None
        raise failure

    def check_login(self) -> None:
        """`GET /v2/` with the credentials (what `docker login` does): a token server or the registry
        rejects wrong ones with 401."""
        try:
            resp = self._send("GET", "/v2/")
        except RegistryError as e:  # the token server turned the credentials down
            if e.http_status == 401:
                raise RegistryError(f"login to {self.registry} failed: {e}", 401) from None
            raise
        if resp.status_code == 401:
            raise RegistryError(f"login to {self.registry} failed: {error_text(resp)}", 401)
        self._check(resp, f"login to {self.registry}")

    def _backoff(self, attempt: int) -> None:
        time.sleep(BACKOFF * 2 ** (attempt - 1) * (0.5 + random.random()))

    def _send(
        self,
        method: str,
        url: str,
        *,
        attempts: int = ATTEMPTS,
        stream: bool = False,
        authenticate: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries on connection errors and 5xx. Before the first successful ping a connection
        error is final at once: an unreachable registry (or no network at all) should fail fast."""
        if not url.startswith(("http://", "https://")):
            url = self.base + url
        attempt = 1
        while True:
            try:
                request = self._http.build_request(method, url, **kwargs)
                response = self._http.send(request, stream=stream, auth=self.auth if authenticate else None)
            except httpx.TransportError as e:
                if not self._pinged.is_set():
                    raise RegistryError(
                        f"cannot reach {self.registry} ({self.host}): {_reason(e)}; is the network up?",
                        503,
                    ) from None
                if attempt >= attempts:
                    raise RegistryError(f"{method} {url}: {_reason(e)}", 503) from None
            else:
                if response.status_code < 500 or attempt >= attempts:
                    return response
                response.close()
            self._backoff(attempt)
            attempt += 1

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.is_success:
            return
        response.read()
        hint = f" (log in with `intermodal login {self.registry}`)" if response.status_code == 401 else ""
        raise RegistryError(f"{what}: {error_text(response)}{hint}", response.status_code)

    def _location(self, response: httpx.Response) -> str:
        location = response.headers.get("location")
        if not location:
            raise RegistryError(f"{self.registry} answered {response.status_code} without a Location header")
        return str(httpx.URL(self.base).join(location))

    # -- manifests -------------------------------------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        """Fetch a manifest or index by tag or digest. A digest reference is verified against the bytes."""
        sep = "@" if reference.startswith("sha256:") else ":"
        what = f"{self.registry}/{repository}{sep}{reference}"
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        resp = self._send("GET", f"/v2/{repository}/manifests/{reference}", headers=headers, stream=True)
        with contextlib.closing(resp):
            self._check(resp, f"manifest for {what}")
            data = b""
            for chunk in resp.iter_bytes():
                data += chunk
                if len(data) > MANIFEST_LIMIT:
                    raise InvalidArgument(
                        f"manifest for {what} is larger than {MANIFEST_LIMIT} bytes: refused"
                    )
        digest = Digest.of_bytes(data)
        if sep == "@" and str(digest) != reference:
            raise CorruptContent(f"manifest for {what} does not match its digest (got {digest}): refused")
        claimed = resp.headers.get("docker-content-digest", "")
        if claimed.startswith("sha256:") and claimed != str(digest):
            raise CorruptContent(
                f"manifest for {what}: the registry says {claimed} but the bytes hash to {digest}: refused"
            )
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidArgument(f"malformed manifest for {what}: not JSON ({e})") from None
        if not isinstance(obj, dict):
            raise InvalidArgument(f"malformed manifest for {what}: not a JSON object")
        # The body's mediaType wins; without one (optional in OCI), a known Content-Type beats sniffing.
        header_type = resp.headers.get("content-type", "").split(";")[0].strip()
        media_type = obj.get("mediaType") or (header_type if header_type in MANIFEST_TYPES else "")
        return FetchedManifest(data, str(media_type or media_type_of(data)), digest)

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> Digest:
        """Upload exact manifest bytes (spec "Pushing Manifests"); the registry must agree on the digest."""
        digest = Digest.of_bytes(data)
        resp = self._send(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            content=data,
            headers={"Content-Type": media_type},
        )
        self._check(resp, f"pushing manifest {self.registry}/{repository}:{reference}")
        claimed = resp.headers.get("docker-content-digest", "")
        if claimed.startswith("sha256:") and claimed != str(digest):
            raise CorruptContent(f"the registry stored the manifest as {claimed}, expected {digest}")
        return digest

    def tags(self, repository: str, page: int = 1000) -> list[str]:
        what = f"tags of {self.registry}/{repository}"
        return self._paginated(f"/v2/{repository}/tags/list", "tags", what, page)

    def catalog(self, page: int = 1000) -> list[str]:
        return self._paginated("/v2/_catalog", "repositories", f"catalog of {self.registry}", page)

    def _paginated(self, path: str, key: str, what: str, page: int) -> list[str]:
        """Follow `Link: <…>; rel="next"` (spec "Listing Tags", pagination with `n` and `last`)."""
        items: list[str] = []
        url: str | None = f"{path}?n={page}"
        while url:
            resp = self._send("GET", url)
            self._check(resp, what)
            items += [str(i) for i in (resp.json().get(key) or [])]
            following = resp.links.get("next", {}).get("url")
            url = str(httpx.URL(self.base).join(following)) if following else None
        return items

    # -- blobs -----------------------------------------------------------------------------------------------

    def blob_size(self, repository: str, digest: Digest) -> int | None:
        """HEAD the blob: its size if the repository has it, None if not (spec "Checking if content exists")."""
        resp = self._send("HEAD", f"/v2/{repository}/blobs/{digest}")
        if resp.status_code == 404:
            return None
        self._check(resp, f"checking blob {digest} in {self.registry}/{repository}")
        return int(resp.headers.get("content-length", "0"))

    def get_blob(self, repository: str, digest: Digest, limit: int) -> bytes:
        """A small blob (a config) in memory; the caller verifies it."""
        chunks: list[bytes] = []
        self.download_blob(repository, digest, 0, limit, chunks.append)
        return b"".join(chunks)

    def download_blob(
        self,
        repository: str,
        digest: Digest,
        offset: int,
        size: int,
        write: Callable[[bytes], None],
        cancelled: threading.Event | None = None,
    ) -> None:
        """Stream bytes `offset..size` of a blob into `write`, resuming with `Range` after a dropped
        connection (spec "Fetching Blobs": a registry MAY honour Range; one that answers 200 instead resends
        from byte 0, and those bytes are skipped). Gives up after ATTEMPTS failures in a row without progress.
        """
        what = f"blob {digest} from {self.registry}/{repository}"
        failures = 0
        while offset < size:
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            before = offset
            try:
                resp = self._send("GET", f"/v2/{repository}/blobs/{digest}", headers=headers, stream=True)
                with contextlib.closing(resp):
                    self._check(resp, f"fetching {what}")
                    skip = offset if resp.status_code == 200 else 0
                    if resp.status_code == 206 and not resp.headers.get("content-range", "").startswith(
                        f"bytes {offset}-"
                    ):
                        raise RegistryError(f"fetching {what}: the registry answered the wrong range")
                    for chunk in resp.iter_raw():
                        if cancelled is not None and cancelled.is_set():
                            raise Cancelled()
                        if skip:
                            dropped = min(skip, len(chunk))
                            chunk, skip = chunk[dropped:], skip - dropped
                        chunk = chunk[: size - offset]
                        if chunk:
                            write(chunk)
                            offset += len(chunk)
                        if offset >= size:
                            break
                    if offset < size and offset == before:
                        raise RegistryError(f"fetching {what}: the registry sent no data at offset {offset}")
            except httpx.TransportError as e:
                failures = 0 if offset > before else failures + 1
                if failures >= ATTEMPTS:
                    raise RegistryError(
                        f"fetching {what}: {_reason(e)} after {offset} of {size} bytes; "
                        "run the command again to resume",
                        503,
                    ) from None
                self._backoff(max(failures, 1))

    def mount_blob(self, repository: str, digest: Digest, source: str) -> str | None:
        """Cross-repository mount (spec "Mounting a blob from another repository"). Returns None when the
        blob was mounted (201), else the upload session the registry opened instead (202)."""
        resp = self._send(
            "POST", f"/v2/{repository}/blobs/uploads/", params={"mount": str(digest), "from": source}
        )
        if resp.status_code == 201:
            return None
        self._check(resp, f"mounting {digest} from {source} into {self.registry}/{repository}")
        return self._location(resp)

    def start_upload(self, repository: str) -> str:
        resp = self._send("POST", f"/v2/{repository}/blobs/uploads/")
        self._check(resp, f"starting an upload to {self.registry}/{repository}")
        return self._location(resp)

    def upload_blob(
        self,
        repository: str,
        digest: Digest,
        path: Path,
        size: int,
        location: str | None = None,
        progress: Callable[[int], None] = lambda n: None,
    ) -> None:
        """Upload a blob file, streamed from disk: one PUT when small (spec "Monolithic upload"), else PATCH
        chunks with Content-Range then a closing PUT (spec "Chunked upload"). After a failure the registry is
        asked how much it holds (GET on the session, `Range: 0-N`) and the upload continues from there; the
        registry checks the digest at the end. `progress` gets byte deltas (negative when rewinding)."""
        location = location or self.start_upload(repository)
        what = f"uploading {digest} to {self.registry}/{repository}"
        offset = 0  # bytes the registry has acknowledged
        sent = 0  # bytes reported to `progress`
        failures = 0

        def report(n: int) -> None:
            nonlocal sent
            sent += n
            progress(n)

        with open(path, "rb") as f:
            while True:
                try:
                    if offset == 0 and size <= UPLOAD_CHUNK:
                        self._check(self._put_blob(location, digest, f, size, report), what)
                        return
                    if offset >= size:
                        self._check(self._put_blob(location, digest, f, 0, report), what)
                        return
                    n = min(UPLOAD_CHUNK, size - offset)
                    headers = {
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(n),
                        "Content-Range": f"{offset}-{offset + n - 1}",
                    }
                    body = _read_pieces(f, n, report)
                    resp = self._send("PATCH", location, content=body, headers=headers, attempts=1)
                    self._check(resp, what)
                    location = self._location(resp)
                    offset += n
                    failures = 0
                except (RegistryError, httpx.StreamError) as e:
                    # StreamError: the body was already streamed when a challenge asked to send it again.
                    failures += 1
                    if isinstance(e, RegistryError) and e.http_status < 500 or failures >= ATTEMPTS:
                        raise
                    self._backoff(failures)
                    resumed = self._upload_status(location)
                    if resumed is None:
                        location, resumed = self.start_upload(repository), 0
                    offset = resumed
                    report(offset - sent)
                    f.seek(offset)

    def _put_blob(
        self, location: str, digest: Digest, f: BinaryIO, n: int, report: Callable[[int], None]
    ) -> httpx.Response:
        url = httpx.URL(location).copy_merge_params({"digest": str(digest)})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(n)}
        body = _read_pieces(f, n, report)
        return self._send("PUT", str(url), content=body, headers=headers, attempts=1)

    def _upload_status(self, location: str) -> int | None:
        """How many bytes an upload session holds (spec "Getting upload status"), None if it is gone."""
        try:
            resp = self._send("GET", location)
        except RegistryError:
            return None
        if resp.status_code != 204:
            return None
        # `Range: 0-<last byte>`. distribution writes "0-0" both for an empty session and for one holding a
        # single byte; like containerd, read it as empty.
        match = re.fullmatch(r"(?:bytes=)?0-(\d+)", resp.headers.get("range", "").strip())
        end = int(match[1]) if match else 0
        return end + 1 if end else 0


def _read_pieces(f: BinaryIO, n: int, report: Callable[[int], None]) -> Iterator[bytes]:
    """`n` bytes of `f` as a request body, 1 MiB at a time, reporting each piece as it goes out."""
    while n > 0:
        data = f.read(min(_PIECE, n))
        if not data:
            raise CorruptContent(f"{getattr(f, 'name', 'blob')} is shorter than its recorded size")
        n -= len(data)
        report(len(data))
        yield data


class _LazyTLS(httpx.BaseTransport):
    """The HTTPS transport of a loopback registry's client, built on first use: loading the system CA
    bundle takes ~70 ms, which a local registry that never redirects elsewhere should not cost."""

    def __init__(self, limits: httpx.Limits, verify: bool):
        self._limits = limits
        self._verify = verify
        self._transport: httpx.HTTPTransport | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            if self._transport is None:
                verify: ssl.SSLContext | bool = ssl.create_default_context() if self._verify else False
                self._transport = httpx.HTTPTransport(verify=verify, limits=self._limits)
        return self._transport.handle_request(request)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class Cancelled(Exception):
    """Another transfer of the same operation failed; this one stops, keeping its partial bytes."""


def _reason(e: httpx.TransportError) -> str:
    text = str(e) or type(e).__name__
    return text.splitlines()[0]
