"""`diff` (A/C/D from the overlay upper dir) and `commit` (a new image with the container's changes and
config, `--change`, history, author), including commits of a running container (paused meanwhile)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from engine_cli import Engine


def test_diff_added_changed_deleted(engine: Engine) -> None:
    engine("run", "--name", "fresh", "busybox", "true")
    assert engine("diff", "fresh").stdout == ""  # mount points live in the init layer, not in the diff
    script = "echo x >> /etc/passwd; mkdir -p /new/sub; touch /new/sub/f; rm /bin/vi; rm -rf /tmp; mkdir /tmp"
    engine("run", "--name", "c", "busybox", "sh", "-c", script)
    lines = engine("diff", "c").stdout.splitlines()
    assert lines == sorted(lines, key=lambda line: line[2:])
    changes = set(lines)
    assert {
        "C /etc",
        "C /etc/passwd",
        "A /new",
        "A /new/sub",
        "A /new/sub/f",
        "C /bin",
        "D /bin/vi",
    } <= changes
    assert "C /tmp" in changes  # replaced by a new (opaque) directory
    assert not any(line.endswith(("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")) for line in lines)
    assert engine("diff", "no-such", check=False).returncode == 125


def test_commit_then_run_the_new_image(engine: Engine) -> None:
    engine(
        "run",
        "--name",
        "c",
        "-e",
        "KEEP=1",
        "-w",
        "/srv",
        "busybox",
        "sh",
        "-c",
        "echo made > /srv/file; rm /bin/vi",
    )
    image_id = engine(
        "commit",
        "-a",
        "Ann <ann@example.com>",
        "-m",
        "add file",
        "-c",
        'CMD ["cat", "/srv/file"]',
        "c",
        "made:1",
    ).stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    assert engine("run", "--rm", "made:1").stdout == "made\n"
    assert engine("run", "--rm", "made:1", "sh", "-c", "echo $KEEP; pwd; ls /bin/vi || echo gone").stdout == (
        "1\n/srv\ngone\n"
    )
    [info] = json.loads(engine("image", "inspect", "made:1").stdout)
    assert info["Id"] == image_id and info["Author"] == "Ann <ann@example.com>"
    assert info["Config"]["Cmd"] == ["cat", "/srv/file"] and info["Config"]["WorkingDir"] == "/srv"
    base_layers = json.loads(engine("image", "inspect", "busybox").stdout)[0]["RootFS"]["Layers"]
    assert (
        info["RootFS"]["Layers"][:-1] == base_layers and len(info["RootFS"]["Layers"]) == len(base_layers) + 1
    )
    top = engine(
        "history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", "made:1"
    ).stdout.splitlines()[0]
    assert top == "sh -c echo made > /srv/file; rm /bin/vi|add file"


def test_commit_a_running_container_pauses_it_and_resumes(engine: Engine) -> None:
    engine("run", "-d", "--name", "live", "busybox", "sh", "-c", "echo live > /state; sleep 300")
    engine("exec", "live", "sh", "-c", "test -f /state")
    untagged = engine("commit", "live").stdout.strip()
    assert engine("inspect", "-f", "{{.State.Status}}", "live").stdout == "running\n"
    assert untagged in engine("images", "-q", "--no-trunc").stdout
    engine("commit", "--pause=false", "live", "live:snap")
    assert engine("run", "--rm", "live:snap", "cat", "/state").stdout == "live\n"
    bad = engine("commit", "-c", "FROM busybox", "live", check=False)
    assert bad.returncode == 125 and "FROM" in bad.stderr


def test_export_then_import_round_trips_the_file_system(engine: Engine, tmp_path: Path) -> None:
    engine(
        "run", "--name", "e", "busybox", "sh", "-c", "echo data > /made; chown 1234:5678 /made; rm /bin/vi"
    )
    archive = tmp_path / "e.tar"
    engine("export", "-o", str(archive), "e")
    with tarfile.open(archive) as tf:
        made = tf.getmember("made")
        names = set(tf.getnames())
    assert (made.uid, made.gid) == (1234, 5678), "owners are kept"
    assert "bin/sh" in names and "bin/vi" not in names, "the image's files with the container's changes"
    engine("import", str(archive), "exported:1")
    assert engine("run", "--rm", "exported:1", "cat", "/made").stdout == "data\n"
    refused = engine("export", "no-such", check=False)
    assert refused.returncode == 125 and "no such container" in refused.stderr
