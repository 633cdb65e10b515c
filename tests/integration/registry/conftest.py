"""Fixtures for the registry tests: real registries (open, htpasswd, token auth) started once per session,
a fault-injecting proxy per test, and a private Docker config directory so no test touches ~/.docker."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .registry_support import (
    OTHER_PASSWORD,
    OTHER_USER,
    PASSWORD,
    USER,
    FaultProxy,
    Registry,
    TokenServer,
    start_registry,
)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    work = tmp_path_factory.mktemp("basic-registry")
    htpasswd = subprocess.run(
        ["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True, text=True
    ).stdout
    (work / "htpasswd").write_text(htpasswd)
    reg = start_registry(work, {"htpasswd": {"realm": "test-realm", "path": str(work / "htpasswd")}})
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    users = {USER: PASSWORD, OTHER_USER: OTHER_PASSWORD}
    server = TokenServer(tmp_path_factory.mktemp("token"), users, prefixes={OTHER_USER: "bob/"})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("token-registry"), token_server.registry_auth())
    yield reg
    reg.stop()


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    p = FaultProxy(registry.host)
    yield p
    p.stop()


@pytest.fixture(autouse=True)
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """DOCKER_CONFIG for this test only (inherited by the CLI subprocesses)."""
    path = tmp_path / "docker-config"
    monkeypatch.setenv("DOCKER_CONFIG", str(path))
    return path
