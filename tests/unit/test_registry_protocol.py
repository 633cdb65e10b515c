"""The registry client's pure parts: challenges and token scopes, insecure-registry rules, Docker's credential
file, blob mount hints, and the streaming diff-ID hasher (gzip members, zstd frames, truncation)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
from pathlib import Path

import httpx
import pytest
import zstandard

from intermodal.engine.distribution import _DiffHasher, normalize_registry, parse_platform
from intermodal.errors import CorruptContent, InvalidArgument
from intermodal.image.digest import Digest
from intermodal.image.models import Platform
from intermodal.registry import credentials
from intermodal.registry.auth import parse_challenges, request_scopes
from intermodal.registry.client import api_host, is_loopback
from intermodal.registry.mounts import MountSources

DIGEST = Digest("0" * 64)


def test_challenges() -> None:
    (bearer,) = parse_challenges(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull,push repository:x:pull"'
    )
    assert bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/busybox:pull,push repository:x:pull",
    }
    basic, other = parse_challenges('Basic realm="a \\"quoted\\" realm", Negotiate')
    assert (basic.scheme, basic.params, other.scheme) == ("basic", {"realm": 'a "quoted" realm'}, "negotiate")


@pytest.mark.parametrize(
    ("method", "url", "scopes"),
    [
        ("GET", "https://r/v2/library/busybox/manifests/latest", ["repository:library/busybox:pull"]),
        ("HEAD", "https://r/v2/a/b/c/blobs/sha256:00", ["repository:a/b/c:pull"]),
        ("PATCH", "https://r/v2/app/blobs/uploads/uuid?_state=x", ["repository:app:pull,push"]),
        (
            "POST",
            "https://r/v2/app/blobs/uploads/?mount=sha256:00&from=lib/src",
            ["repository:app:pull,push", "repository:lib/src:pull"],
        ),
        ("GET", "https://r/v2/_catalog?n=10", ["registry:catalog:*"]),
        ("GET", "https://r/v2/", []),
    ],
)
def test_request_scopes(method: str, url: str, scopes: list[str]) -> None:
    assert request_scopes(httpx.Request(method, url)) == scopes


@pytest.mark.parametrize(
    ("registry", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.8.9.10", True),
        ("[::1]:5000", True),
        ("registry.example.com", False),
        ("10.0.0.1:5000", False),
        ("localhost.example.com:5000", False),
    ],
)
def test_loopback_registries_are_insecure_by_default(registry: str, loopback: bool) -> None:
    assert is_loopback(registry) is loopback


def test_docker_hub_aliases() -> None:
    assert api_host("docker.io") == "registry-1.docker.io"
    assert api_host("quay.io") == "quay.io"
    for alias in (
        None,
        "docker.io",
        "index.docker.io",
        "https://index.docker.io/v1/",
        "registry-1.docker.io",
    ):
        assert normalize_registry(alias) == "docker.io"
    assert normalize_registry("http://127.0.0.1:5000/") == "127.0.0.1:5000"


def test_platforms() -> None:
    assert parse_platform(None) == Platform("linux", "amd64")
    assert parse_platform("linux/arm64/v8") == Platform("linux", "arm64", "v8")
    for bad in ("arm64", "linux/", "a/b/c/d"):
        with pytest.raises(InvalidArgument, match="os/arch"):
            parse_platform(bad)


def test_credentials_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({"auths": {"http://myreg:5000/v2/": {"auth": "dTpw"}}, "credsStore": "pass"})
    )
    assert credentials.lookup("myreg:5000") == credentials.Credentials("u", "p")
    assert credentials.lookup("docker.io") is None
    credentials.store("docker.io", credentials.Credentials("me", "pa:ss"))
    saved = json.loads(config.read_text())
    assert saved["auths"][credentials.DOCKER_HUB_KEY] == {"auth": "bWU6cGE6c3M="}
    assert saved["credsStore"] == "pass" and stat.S_IMODE(config.stat().st_mode) == 0o600
    assert credentials.lookup("docker.io") == credentials.Credentials("me", "pa:ss")
    assert "pa:ss" not in repr(credentials.lookup("docker.io"))
    assert credentials.erase("myreg:5000") and not credentials.erase("myreg:5000")
    assert list(json.loads(config.read_text())["auths"]) == [credentials.DOCKER_HUB_KEY]


def test_mount_hints(tmp_path: Path) -> None:
    hints = MountSources(tmp_path / "registry-blobs.json")
    a, b = Digest("a" * 64), Digest("b" * 64)
    hints.record("reg:5000", "one", [a, b], keep=lambda d: True)
    hints.record("reg:5000", "two", [a], keep=lambda d: d != b)
    assert hints.sources("reg:5000", a) == ["two", "one"]
    assert hints.sources("reg:5000", b) == []  # no longer stored locally: dropped
    assert hints.sources("other", a) == []
    (tmp_path / "registry-blobs.json").write_text("{not json")
    assert hints.sources("reg:5000", a) == []


def _hash(chunks: list[bytes]) -> tuple[Digest, int]:
    hasher = _DiffHasher()
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.finish(DIGEST)


def _pieces(blob: bytes, size: int = 7_777) -> list[bytes]:
    return [blob[i : i + size] for i in range(0, len(blob), size)]


def test_diff_hasher_decompresses_every_format_in_pieces() -> None:
    tar = os.urandom(300_000) + b"x" * 3_000_000
    expected = (Digest(hashlib.sha256(tar).hexdigest()), len(tar))
    two_members = gzip.compress(tar[:1000]) + b"\0" * 16 + gzip.compress(tar[1000:])
    frames = zstandard.ZstdCompressor().compress(tar[:5000]) + zstandard.ZstdCompressor().compress(tar[5000:])
    for blob in (tar, gzip.compress(tar), two_members, frames):
        assert _hash(_pieces(blob)) == expected
    assert _hash([]) == (Digest(hashlib.sha256(b"").hexdigest()), 0)


def test_diff_hasher_reports_damage() -> None:
    blob = gzip.compress(os.urandom(100_000))
    with pytest.raises(CorruptContent, match="not valid gzip data"):
        _hash([blob[:-5000]])
    with pytest.raises(CorruptContent, match="not valid gzip data"):
        _hash([blob[:20], bytes(b ^ 0xFF for b in blob[20:])])


def test_a_loopback_client_builds_its_https_transport_only_when_needed() -> None:
    from intermodal.registry.client import RegistryClient

    with RegistryClient("127.0.0.1:1") as client:
        assert client.base == "http://127.0.0.1:1"
        with pytest.raises(httpx.ConnectError):  # a redirect to HTTPS would go through the lazy transport
            client._http.get("https://127.0.0.1:1/", timeout=2)
