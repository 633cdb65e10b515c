"""The image commands as a user types them: images, tag, rmi, inspect, history, prune, import, df, check."""

from __future__ import annotations

import io
import json
import tarfile

from image_cli import Cli


def rootfs_tar(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def test_images_lists_busybox_in_every_format(cli: Cli) -> None:
    table = cli.text("images").splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert table[1].split()[:2] == ["busybox", "latest"]
    image_id = cli.text("image", "inspect", "-f", "{{.Id}}", "busybox").strip()
    assert cli.text("images", "-q").strip() == image_id.removeprefix("sha256:")[:12]
    row = json.loads(cli.text("images", "--format", "json"))
    assert (row["Repository"], row["Tag"], row["ID"]) == (
        "busybox",
        "latest",
        image_id.removeprefix("sha256:")[:12],
    )
    assert cli.text("images", "--format", "{{.Repository}}:{{.Tag}}").strip() == "busybox:latest"
    assert "DIGEST" in cli.text("images", "--digests").splitlines()[0]


def test_tag_and_rmi_untag_before_deleting(cli: Cli) -> None:
    cli("tag", "busybox", "localhost:5000/tools/bb:v1")
    assert "localhost:5000/tools/bb" in cli.text("images")
    assert cli.text("rmi", "localhost:5000/tools/bb:v1").strip() == "Untagged: localhost:5000/tools/bb:v1"
    refused = cli("rmi", "nosuch", check=False)
    assert refused.returncode == 125 and b"no such image" in refused.stderr
    out = cli.text("rmi", "busybox").splitlines()
    assert out[0] == "Untagged: busybox:latest" and out[-1].startswith("Deleted: sha256:")
    assert cli.text("images", "-q") == ""
    assert cli.text("system", "check").startswith("ok")


def test_rmi_refuses_an_image_used_by_a_container(cli: Cli) -> None:
    cli("create", "--name", "user", "busybox", "true")
    refused = cli("rmi", "busybox", check=False)
    assert refused.returncode == 125 and b"used by container" in refused.stderr
    assert cli.text("images", "-q") != ""
    cli("rm", "user")


def test_inspect_and_history_are_docker_shaped(cli: Cli) -> None:
    inspect = json.loads(cli.text("image", "inspect", "busybox"))[0]
    assert inspect["RepoTags"] == ["busybox:latest"]
    assert inspect["Config"]["Cmd"] == ["sh"]
    assert inspect["RootFS"]["Type"] == "layers" and len(inspect["RootFS"]["Layers"]) == 1
    assert inspect["Os"] == "linux" and inspect["Architecture"] == "amd64"
    history = cli.text("history", "busybox").splitlines()
    assert history[0].split()[:2] == ["IMAGE", "CREATED"]
    assert "bootstrap busybox" in cli.text("history", "--no-trunc", "busybox")


def test_import_with_changes_runs(cli: Cli) -> None:
    tar = rootfs_tar({"bin/hello": b"#!/bin/sh\necho imported\n"})
    image_id = cli(
        "import", "-c", 'CMD ["/bin/hello"]', "-c", "ENV A=1", "-", "imported:1", input=tar
    ).stdout.decode()
    config = json.loads(cli.text("image", "inspect", "imported:1"))[0]["Config"]
    assert image_id.strip() == json.loads(cli.text("image", "inspect", "imported:1"))[0]["Id"]
    assert config["Cmd"] == ["/bin/hello"] and config["Env"] == ["A=1"]
    bad = cli("import", "-c", "RUN x", "-", "bad", input=tar, check=False)
    assert bad.returncode == 125 and b"RUN is not one of" in bad.stderr
    garbage = cli("import", "-", "bad", input=b"not a tarball at all" * 100, check=False)
    assert garbage.returncode == 125 and b"not a tar archive" in garbage.stderr
    assert "bad" not in cli.text("images")


def test_prune_removes_dangling_only(cli: Cli) -> None:
    tar = rootfs_tar({"a": b"1"})
    cli("import", "-", "temp:1", input=tar)
    cli("import", "-", "temp:1", input=rootfs_tar({"a": b"2"}))  # the first becomes dangling
    assert "<none>" in cli.text("images")
    out = cli.text("image", "prune", "-f")
    assert out.startswith("Deleted Images:") and "Total reclaimed space" in out
    assert "<none>" not in cli.text("images")
    assert "temp" in cli.text("images")


def test_system_df(cli: Cli) -> None:
    lines = cli.text("system", "df").splitlines()
    assert lines[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert lines[1].split()[:3] == ["Images", "1", "0"]


def test_bad_reference_is_one_line(cli: Cli) -> None:
    proc = cli("tag", "busybox", "Bad Name", check=False)
    assert proc.returncode == 125
    assert proc.stderr.decode().count("\n") == 1 and b"invalid reference format" in proc.stderr
    assert b"Traceback" not in proc.stderr
