"""Real components for the registry tests: Debian's `docker-registry` (distribution 2.8) on a free loopback
port, a token server that signs real ES256 JWTs, and an HTTP proxy that counts blob bytes and injects faults
(cut streams, wrong blobs, rewritten manifests). Nothing here imitates the registry itself."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import http.client
import http.server
import io
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intermodal.image import mediatypes as mt
from intermodal.image.digest import Digest
from intermodal.image.models import Descriptor, Manifest, canonical_json
from intermodal.image.store import ImageRecord, ImageStore

REGISTRY_BIN = "/usr/bin/docker-registry"
USER, PASSWORD = "alice", "s3cret-pass"  # the account of the htpasswd and token registries
OTHER_USER, OTHER_PASSWORD = "bob", "bobs-pass"  # token registry only, limited to bob/ repositories
PYTHON = sys.executable

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via HTTP_PROXY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT, what image references use
    proc: subprocess.Popen[bytes]
    data: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def access_log(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_registry(workdir: Path, auth: dict[str, Any] | None = None) -> Registry:
    """`docker-registry serve` with filesystem storage and deletes enabled; returns once `/v2/` answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    host = f"127.0.0.1:{free_port()}"
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}, "delete": {"enabled": True}},
        "http": {"addr": host, "secret": secrets.token_hex(16)},
    }
    if auth:
        config["auth"] = auth
    cfg = workdir / "config.yml"
    cfg.write_text(json.dumps(config))  # JSON is YAML
    log = workdir / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([REGISTRY_BIN, "serve", str(cfg)], stdout=out, stderr=subprocess.STDOUT)
    registry = Registry(host, proc, workdir / "data", log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            _DIRECT.open(f"{registry.url}/v2/", timeout=1).close()
            return registry
        except urllib.error.HTTPError:
            return registry  # 401: up, with auth
        except OSError:
            time.sleep(0.05)
    registry.stop()
    raise RuntimeError(f"docker-registry did not come up: {log.read_text()[-2000:]}")


# -- images -------------------------------------------------------------------------------------------------


def layer_tar(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(files[name]), 1_500_000_000
            info.mode = 0o755 if name.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    return raw.getvalue()


def make_image(
    root: Path,
    name: str | None,
    layers: list[dict[str, bytes]],
    *,
    arch: str = "amd64",
    docker_types: bool = False,
    level: int = 6,
    cmd: tuple[str, ...] = ("/bin/sh",),
) -> ImageRecord:
    """Commit an image with one gzip layer per file dict into the store under `root`."""
    store = ImageStore(root / "images")
    descs, diff_ids, sizes = [], [], []
    for files in layers:
        tar = layer_tar(files)
        blob = gzip.compress(tar, compresslevel=level, mtime=0)
        digest = store.content.write_bytes(blob)
        layer_type = mt.DOCKER_LAYER_GZIP if docker_types else mt.OCI_LAYER_GZIP
        descs.append(Descriptor(layer_type, digest, len(blob)))
        diff_ids.append(str(Digest.of_bytes(tar)))
        sizes.append(len(tar))
    config = canonical_json(
        {
            "architecture": arch,
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": list(cmd)},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": f"layer {i}"} for i in range(len(layers))],
        }
    )
    config_digest = store.content.write_bytes(config)
    manifest = Manifest(
        Descriptor(mt.DOCKER_CONFIG if docker_types else mt.OCI_CONFIG, config_digest, len(config)),
        tuple(descs),
        media_type=mt.DOCKER_MANIFEST if docker_types else mt.OCI_MANIFEST,
    )
    return store.commit(manifest.to_bytes(), [name] if name else [], sum(sizes), layer_sizes=sizes)


def intermodal(
    root: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess, as a user runs it."""
    proc = subprocess.run(
        [PYTHON, "-m", "intermodal", "--root", str(root), *args],
        capture_output=True,
        text=True,
        input=stdin,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"intermodal {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


# -- token server -------------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A token server (distribution `docs/spec/auth/token.md`): checks Basic credentials, grants the requested
    scopes to known users (nothing to anonymous callers) and signs ES256 JWTs with a self-signed certificate
    whose chain rides in the `x5c` header, which the registry checks against `rootcertbundle`."""

    def __init__(
        self,
        workdir: Path,
        users: dict[str, str],
        service: str = "test-registry",
        prefixes: dict[str, str] | None = None,
    ):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.users = users
        self.prefixes = prefixes or {}  # user -> the repository prefix they may access (default: all)
        self.service = service
        self.issuer = "intermodal-test-issuer"
        self.requests: list[dict[str, list[str]]] = []
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token signer")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.cert_path = workdir / "token-cert.pem"
        workdir.mkdir(parents=True, exist_ok=True)
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                from urllib.parse import parse_qs, urlparse

                query = parse_qs(urlparse(self.path).query)
                server.requests.append(query)
                user = server._check(self.headers.get("Authorization", ""))
                if user is False:
                    body = json.dumps(
                        {"errors": [{"code": "UNAUTHORIZED", "message": "invalid credentials"}]}
                    )
                    self._send(401, body.encode())
                    return
                token = server._sign(user or "", query.get("scope", []))
                self._send(200, json.dumps({"token": token, "expires_in": 300}).encode())

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self._httpd.server_address[1]}/token"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def registry_auth(self) -> dict[str, Any]:
        return {
            "token": {
                "realm": self.realm,
                "service": self.service,
                "issuer": self.issuer,
                "rootcertbundle": str(self.cert_path),
            }
        }

    def _check(self, header: str) -> str | None | bool:
        """The user name, None for anonymous, False for wrong credentials."""
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if self.users.get(user) == password else False

    def _sign(self, user: str, scopes: list[str]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        access = []
        for scope in scopes if user else []:
            for item in scope.split(" "):
                kind, _, rest = item.partition(":")
                repo, _, actions = rest.rpartition(":")
                if repo.startswith(self.prefixes.get(user, "")):
                    access.append({"type": kind, "name": repo, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self._x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# -- fault-injecting, counting proxy ------------------------------------------------------------------------

_BLOB_GET = re.compile(r"^/v2/.+/blobs/(sha256:[0-9a-f]{64})$")
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
}


@dataclass
class Cut:
    """Cut the next `times` responses for a blob: the first after `after` bytes, the rest at once."""

    after: int
    times: int = 1


@dataclass
class ProxyLog:
    method: str
    path: str
    range: str | None
    status: int
    body_bytes: int  # blob bytes sent down (GET) or up (PATCH/PUT)


@dataclass
class FaultProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 in front of a registry. The Host header passes through unchanged, so the
    registry's Location headers point back at the proxy."""

    upstream: str
    cuts: dict[str, Cut] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)  # blob digests whose bytes get flipped
    manifests: dict[str, bytes] = field(default_factory=dict)  # path suffix -> replacement body
    # regex on "METHOD path" -> what to do with the next matching requests: a status to answer, None to forward
    failures: dict[str, list[int | None]] = field(default_factory=dict)
    log: list[ProxyLog] = field(default_factory=list)

    def __post_init__(self) -> None:
        proxy = self
        self._lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                proxy._forward(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def blob_bytes(self, method: str | None = None) -> int:
        with self._lock:
            return sum(e.body_bytes for e in self.log if method is None or e.method == method)

    def requests(self, method: str, pattern: str = "") -> list[ProxyLog]:
        with self._lock:
            return [e for e in self.log if e.method == method and re.search(pattern, e.path)]

    def reset(self) -> None:
        with self._lock:
            self.log.clear()

    def _forward(self, h: http.server.BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        path = h.path.split("?", 1)[0]
        request = f"{h.command} {path}"
        statuses = next(
            (s for pattern, s in self.failures.items() if re.search(pattern, request) and s), None
        )
        status = statuses.pop(0) if statuses else None
        if status is not None:
            error = json.dumps(
                {"errors": [{"code": "UNAVAILABLE", "message": f"injected {status}"}]}
            ).encode()
            self._head(h, status, [("Content-Type", "application/json"), ("Content-Length", str(len(error)))])
            h.wfile.write(error)
            with self._lock:
                self.log.append(ProxyLog(h.command, path, h.headers.get("Range"), status, 0))
            return
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP_BY_HOP}
        upstream = http.client.HTTPConnection(self.upstream, timeout=60)
        upstream.request(h.command, h.path, body=body or None, headers=headers)
        resp = upstream.getresponse()
        uploaded = len(body) if "/blobs/uploads/" in path and h.command in ("PATCH", "PUT") else 0
        blob = _BLOB_GET.match(path)
        digest = blob.group(1) if blob and h.command == "GET" and resp.status in (200, 206) else None
        out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
        replacement = next((b for suffix, b in self.manifests.items() if path.endswith(suffix)), None)
        sent = 0
        try:
            if h.command == "GET" and replacement is not None and "/manifests/" in path:
                resp.read()
                out_headers = [
                    (k, v)
                    for k, v in out_headers
                    if k.lower() not in ("content-length", "docker-content-digest")
                ]
                out_headers.append(("Content-Length", str(len(replacement))))
                self._head(h, resp.status, out_headers)
                h.wfile.write(replacement)
            elif digest is not None:
                cut = self.cuts.get(digest)
                self._head(h, resp.status, out_headers)
                limit = None
                if cut is not None and cut.times > 0:
                    limit = cut.after
                    cut.after, cut.times = 0, cut.times - 1
                    h.close_connection = True
                while chunk := resp.read(65536):
                    if limit is not None:
                        chunk = chunk[: max(limit - sent, 0)]
                    if digest in self.corrupt:
                        chunk = bytes(b ^ 0x55 for b in chunk)
                    h.wfile.write(chunk)
                    sent += len(chunk)
                    if limit is not None and sent >= limit:
                        break
            else:
                data = resp.read() if h.command != "HEAD" else b""
                if h.command != "HEAD" and not any(k.lower() == "content-length" for k, _ in out_headers):
                    out_headers.append(("Content-Length", str(len(data))))
                self._head(h, resp.status, out_headers)
                h.wfile.write(data)
        finally:
            upstream.close()
            with self._lock:
                self.log.append(
                    ProxyLog(h.command, path, h.headers.get("Range"), resp.status, uploaded + sent)
                )

    @staticmethod
    def _head(h: http.server.BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]]) -> None:
        h.send_response_only(status)
        for k, v in headers:
            h.send_header(k, v)
        h.end_headers()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
