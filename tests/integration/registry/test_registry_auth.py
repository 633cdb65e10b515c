"""Login, logout and authenticated transfers against real registries: htpasswd (HTTP Basic) and token auth
with a token server that signs real JWTs the registry verifies."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

from intermodal.engine import distribution
from intermodal.image.store import ImageStore

from .registry_support import (
    OTHER_PASSWORD,
    OTHER_USER,
    PASSWORD,
    USER,
    Registry,
    TokenServer,
    intermodal,
    make_image,
)


def test_basic_auth_login_push_pull_logout(
    basic_registry: Registry, tmp_path: Path, docker_config: Path
) -> None:
    host = basic_registry.host
    name = f"{host}/private/app:1"
    pushed = make_image(tmp_path / "a", name, [{"secret": os.urandom(10_000)}])
    config = docker_config / "config.json"
    docker_config.mkdir()
    config.write_text(json.dumps({"auths": {"other.example": {"auth": "eDp5"}}, "psFormat": "table"}))

    denied = intermodal(tmp_path / "a", "push", name, check=False)
    assert denied.returncode == 1
    assert (
        "unauthorized: authentication required" in denied.stderr
        and f"intermodal login {host}" in denied.stderr
    )

    wrong = intermodal(
        tmp_path / "a", "login", "-u", USER, "--password-stdin", host, stdin="wrong\n", check=False
    )
    assert wrong.returncode == 1
    assert wrong.stderr.strip().splitlines()[-1].startswith(f"Error: login to {host} failed: unauthorized")
    assert host not in json.loads(config.read_text())["auths"]

    ok = intermodal(tmp_path / "a", "login", "-u", USER, "--password-stdin", host, stdin=PASSWORD + "\n")
    assert ok.stdout.strip() == "Login Succeeded"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    saved = json.loads(config.read_text())
    assert base64.b64decode(saved["auths"][host]["auth"]).decode() == f"{USER}:{PASSWORD}"
    assert saved["auths"]["other.example"] == {"auth": "eDp5"} and saved["psFormat"] == "table"

    distribution.push(tmp_path / "a", name)
    assert distribution.pull(tmp_path / "b", name)[0].config == pushed.config

    assert intermodal(tmp_path, "logout", host).stdout.strip() == f"Removing login credentials for {host}"
    assert host not in json.loads(config.read_text())["auths"]
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert intermodal(tmp_path, "logout", host).stdout.strip() == f"Not logged in to {host}"
    again = intermodal(tmp_path / "c", "pull", name, check=False)
    assert again.returncode == 1 and "unauthorized" in again.stderr


def test_password_flag_warns_and_works(basic_registry: Registry, tmp_path: Path, docker_config: Path) -> None:
    proc = intermodal(tmp_path, "login", "-u", USER, "-p", PASSWORD, basic_registry.host)
    assert "Login Succeeded" in proc.stdout and "--password-stdin" in proc.stderr
    assert stat.S_IMODE((docker_config / "config.json").stat().st_mode) == 0o600


def test_token_auth(
    token_registry: Registry, token_server: TokenServer, tmp_path: Path, docker_config: Path
) -> None:
    host = token_registry.host
    name = f"{host}/tok/app:1"
    pushed = make_image(tmp_path / "a", name, [{"a": os.urandom(5_000)}, {"b": os.urandom(5_000)}])

    anonymous = intermodal(tmp_path / "a", "push", name, check=False)
    assert anonymous.returncode == 1 and "unauthorized" in anonymous.stderr

    wrong = intermodal(
        tmp_path / "a", "login", "-u", USER, "--password-stdin", host, stdin="nope\n", check=False
    )
    assert wrong.returncode == 1 and "invalid credentials" in wrong.stderr
    assert not (docker_config / "config.json").exists()

    intermodal(tmp_path / "a", "login", "-u", USER, "--password-stdin", host, stdin=PASSWORD + "\n")
    distribution.push(tmp_path / "a", name)
    scopes = {s for q in token_server.requests for s in q.get("scope", [])}
    assert "repository:tok/app:pull,push" in scopes

    token_server.requests.clear()
    assert distribution.pull(tmp_path / "b", name)[0].config == pushed.config
    # One token for the whole pull: the ping learned the challenge, the token is cached per scope.
    assert [q.get("scope") for q in token_server.requests] == [["repository:tok/app:pull"]]

    # A mount needs pull access to the source repository in the same token.
    intermodal(tmp_path / "a", "tag", name, f"{host}/tok/copy:1")
    out = intermodal(tmp_path / "a", "push", f"{host}/tok/copy:1").stdout
    assert out.count("Mounted from tok/app") == 2
    assert ImageStore(tmp_path / "a" / "images").get(f"{host}/tok/copy:1").repo_digests


def test_a_mount_from_a_repository_we_cannot_read_falls_back_to_an_upload(
    token_registry: Registry, tmp_path: Path
) -> None:
    host = token_registry.host
    source = f"{host}/tok/private:1"
    make_image(tmp_path / "a", source, [{"a": os.urandom(5_000)}])
    intermodal(tmp_path / "a", "login", "-u", USER, "--password-stdin", host, stdin=PASSWORD + "\n")
    distribution.push(tmp_path / "a", source)  # now the store's hints say tok/private holds the blobs

    intermodal(
        tmp_path / "a", "login", "-u", OTHER_USER, "--password-stdin", host, stdin=OTHER_PASSWORD + "\n"
    )
    intermodal(tmp_path / "a", "tag", source, f"{host}/bob/copy:1")
    out = intermodal(tmp_path / "a", "push", f"{host}/bob/copy:1").stdout
    assert "Mounted from" not in out and out.count("Pushed") == 1
    denied = intermodal(tmp_path / "b", "pull", source, check=False)
    assert denied.returncode == 1 and "unauthorized" in denied.stderr
