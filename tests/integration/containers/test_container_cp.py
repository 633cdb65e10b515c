"""`cp` both ways with Docker's path rules, tar streams on stdin/stdout, stopped containers, and the
symlink attacks it must withstand: a container's link to a host file is copied as a link, never followed."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

from engine_cli import INTERMODAL, Engine, mount_count


def _box(engine: Engine) -> None:
    engine("run", "-d", "--name", "box", "busybox", "sleep", "300")
    engine(
        "exec", "box", "sh", "-c", "mkdir -p /d/s && echo a > /d/a && echo b > /d/s/b && ln -s ../a /d/s/l"
    )


def test_copy_out_path_rules(engine: Engine, tmp_path: Path) -> None:
    _box(engine)
    out = tmp_path / "out"
    out.mkdir()
    engine("cp", "box:/d/a", str(out))  # into an existing directory, under its own name
    assert (out / "a").read_text() == "a\n"
    engine("cp", "box:/d/a", str(out / "renamed"))  # to a new file name
    assert (out / "renamed").read_text() == "a\n"
    engine("cp", "box:/d", str(out / "new"))  # a directory to a new name: created with the content
    assert (out / "new/s/b").read_text() == "b\n"
    assert os.readlink(out / "new/s/l") == "../a"
    engine("cp", "box:/d", str(out))  # into an existing directory: the directory itself
    assert (out / "d/s/b").exists()
    engine("cp", "box:/d/s/.", str(out))  # trailing /. : only the content
    assert (out / "b").read_text() == "b\n"
    assert (out / "a").stat().st_uid == os.getuid()
    refused = engine("cp", "box:/d", str(out / "a"), check=False)
    assert refused.returncode == 125 and "directory to a file" in refused.stderr
    missing_dir = engine("cp", "box:/d/a", str(out / "nope") + "/", check=False)
    assert missing_dir.returncode == 125 and "must exist" in missing_dir.stderr
    assert engine("cp", "box:/no/such", str(out), check=False).returncode == 125


def test_copy_in_path_rules(engine: Engine, tmp_path: Path) -> None:
    _box(engine)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "f").write_text("file\n")
    (src / "sub/g").write_text("g\n")
    engine("cp", str(src / "f"), "box:/tmp")
    engine("cp", str(src / "f"), "box:/tmp/renamed")
    engine("cp", str(src), "box:/tmp")
    engine("cp", str(src) + "/.", "box:/root")
    engine("cp", str(src), "box:/created")
    listing = engine(
        "exec", "box", "sh", "-c", "cat /tmp/f /tmp/renamed /tmp/src/sub/g /root/f /created/sub/g"
    ).stdout
    assert listing == "file\nfile\ng\nfile\ng\n"
    assert engine("exec", "box", "stat", "-c", "%u:%g", "/tmp/f").stdout == "0:0\n"  # Docker: owned by root
    os.chown(src / "f", 1234, 5678)
    engine("cp", "-a", str(src / "f"), "box:/tmp/archived")
    assert engine("exec", "box", "stat", "-c", "%u:%g", "/tmp/archived").stdout == "1234:5678\n"
    refused = engine("cp", str(src), "box:/tmp/f", check=False)
    assert refused.returncode == 125 and "directory to a file" in refused.stderr
    assert engine("cp", str(src / "f"), "box:/no/such/dir/x", check=False).returncode == 125


def test_symlinks_to_host_files_are_never_followed(engine: Engine, tmp_path: Path) -> None:
    host_file = tmp_path / "host-secret"
    host_file.write_text("host secret\n")
    passwd = Path("/etc/passwd").read_bytes()
    _box(engine)
    engine(
        "exec", "box", "sh", "-c", f"ln -s /etc/passwd /evil && ln -s {host_file} /evil2 && ln -s / /rootlink"
    )
    # Out: the link itself, not the host file it names.
    engine("cp", "box:/evil", str(tmp_path / "evil"))
    assert os.readlink(tmp_path / "evil") == "/etc/passwd"
    # Out with -L: followed, but inside the container (its own /etc/passwd).
    engine("cp", "-L", "box:/evil", str(tmp_path / "followed"))
    assert (tmp_path / "followed").read_bytes() == engine("exec", "box", "cat", "/etc/passwd").stdout.encode()
    assert "host secret" not in engine("cp", "-L", "box:/evil2", "-", check=False).stdout
    # In: through the container's links, the writes land inside the container.
    payload = tmp_path / "payload"
    payload.write_text("overwritten\n")
    engine("cp", str(payload), "box:/evil")
    engine("cp", str(payload), "box:/evil2")
    through_root = engine("cp", str(payload), f"box:/rootlink{tmp_path}/host-secret", check=False)
    assert through_root.returncode == 125  # /rootlink is the container's own /, which has no such directory
    assert Path("/etc/passwd").read_bytes() == passwd
    assert host_file.read_text() == "host secret\n"
    assert engine("exec", "box", "cat", "/etc/passwd").stdout == "overwritten\n"
    # A whiteout name would delete a sibling where it lands: refused.
    engine("exec", "box", "sh", "-c", "mkdir /wh && touch /wh/.wh.victim")
    (tmp_path / "victim").write_text("keep\n")
    assert engine("cp", "box:/wh/.", str(tmp_path), check=False).returncode == 125
    assert (tmp_path / "victim").read_text() == "keep\n"
    # A tar stream with entries that climb out or go through a link is refused or stays inside.
    evil_tar = io.BytesIO()
    with tarfile.open(fileobj=evil_tar, mode="w") as tf:
        link = tarfile.TarInfo("escape")
        link.type, link.linkname = tarfile.SYMTYPE, str(tmp_path)
        tf.addfile(link)
        data = b"through the link\n"
        entry = tarfile.TarInfo("escape/host-secret")
        entry.size = len(data)
        tf.addfile(entry, io.BytesIO(data))
    proc = subprocess.run(
        [INTERMODAL, "--root", str(engine.root), "cp", "-", "box:/tmp"],
        input=evil_tar.getvalue(), capture_output=True, timeout=60,
    )  # fmt: skip
    assert host_file.read_text() == "host secret\n", proc.stderr
    climbing = io.BytesIO()
    with tarfile.open(fileobj=climbing, mode="w") as tf:
        entry = tarfile.TarInfo("../../../../../../../../tmp/climbed")
        tf.addfile(entry, io.BytesIO(b""))
    proc = subprocess.run(
        [INTERMODAL, "--root", str(engine.root), "cp", "-", "box:/tmp"],
        input=climbing.getvalue(), capture_output=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert not Path("/tmp/climbed").exists()


def test_tar_streams(engine: Engine, tmp_path: Path) -> None:
    _box(engine)
    out = subprocess.run(
        [INTERMODAL, "--root", str(engine.root), "cp", "box:/d", "-"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tf:
        names = {m.name: m for m in tf.getmembers()}
    assert {"d", "d/a", "d/s", "d/s/b", "d/s/l"} <= set(names)
    assert names["d/s/l"].issym() and names["d/s/l"].linkname == "../a"
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tf:
        info = tarfile.TarInfo("from-stdin/x")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"xyz"))
    subprocess.run(
        [INTERMODAL, "--root", str(engine.root), "cp", "-", "box:/tmp"],
        input=stream.getvalue(), capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    assert engine("exec", "box", "cat", "/tmp/from-stdin/x").stdout == "xyz"
    not_dir = subprocess.run(
        [INTERMODAL, "--root", str(engine.root), "cp", "-", "box:/d/a"],
        input=stream.getvalue(),
        capture_output=True,
    )
    assert not_dir.returncode == 125


def test_stopped_container(engine: Engine, tmp_path: Path) -> None:
    engine("run", "--name", "done", "busybox", "sh", "-c", "echo kept > /kept")
    engine("cp", "done:/kept", str(tmp_path / "kept"))
    assert (tmp_path / "kept").read_text() == "kept\n"
    (tmp_path / "in").write_text("in\n")
    engine("cp", str(tmp_path / "in"), "done:/in")
    assert mount_count(engine.root) == 0  # the rootfs was mounted for the copy only
    assert engine("start", "-a", "done", check=False).returncode == 0
    engine("cp", "done:/in", str(tmp_path / "back"))
    assert (tmp_path / "back").read_text() == "in\n"
    assert mount_count(engine.root) == 0


def test_paths_on_mounts_are_the_mounts(engine: Engine, tmp_path: Path) -> None:
    engine("run", "-d", "--name", "vm", "-v", "vol:/data", "--tmpfs", "/scratch", "busybox", "sleep", "300")
    (tmp_path / "f").write_text("into the volume\n")
    engine("cp", str(tmp_path / "f"), "vm:/data/")
    assert engine("exec", "vm", "cat", "/data/f").stdout == "into the volume\n"
    assert (engine.root / "volumes/vol/_data/f").is_file()
    hosts = subprocess.run(
        [INTERMODAL, "--root", str(engine.root), "cp", "vm:/etc/hosts", "-"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(hosts)) as tf:
        member = tf.extractfile("hosts")
        assert member is not None and b"localhost" in member.read()  # the engine's file, not the mount point
    assert engine("cp", str(tmp_path / "f"), "vm:/scratch/", check=False).returncode == 125


def test_a_file_copied_onto_a_file_mount_is_what_the_running_container_reads(
    engine: Engine, tmp_path: Path
) -> None:
    """/etc/hosts and `-v FILE:PATH` are bind mounts of one file: a copy must land in that file (a new file in
    its place on the host would never reach the container)."""
    conf = tmp_path / "app.conf"
    conf.write_text("old\n")
    engine("run", "-d", "--name", "c", "-v", f"{conf}:/etc/app.conf", "busybox", "sleep", "300")
    (tmp_path / "new.conf").write_text("new content\n")
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n10.1.2.3 copied\n")
    engine("cp", str(tmp_path / "new.conf"), "c:/etc/app.conf")
    engine("cp", str(tmp_path / "hosts"), "c:/etc/hosts")
    assert engine("exec", "c", "cat", "/etc/app.conf").stdout == "new content\n" == conf.read_text()
    assert "10.1.2.3 copied" in engine("exec", "c", "cat", "/etc/hosts").stdout
    (tmp_path / "dir").mkdir()
    refused = engine("cp", str(tmp_path / "dir"), "c:/etc/app.conf", check=False)
    assert refused.returncode == 125 and conf.read_text() == "new content\n"
