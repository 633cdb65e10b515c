"""`volume create/ls/inspect/rm/prune` and what containers do with volumes: copy-up of the image's content
into a new named volume, the in-use refusal, and Docker 23's prune (anonymous only unless -a)."""

from __future__ import annotations

import json
from pathlib import Path

from engine_cli import Engine


def test_create_ls_inspect(engine: Engine) -> None:
    assert engine("volume", "create", "named").stdout == "named\n"
    generated = engine("volume", "create", "-l", "team=a").stdout.strip()
    assert len(generated) == 64
    assert engine("volume", "create", "named").stdout == "named\n"  # idempotent, as in Docker
    assert set(engine("volume", "ls", "-q").stdout.split()) == {"named", generated}
    table = engine("volume", "ls").stdout.splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME"] and "local" in table[1]
    assert engine("volume", "ls", "-q", "-f", "label=team=a").stdout.split() == [generated]
    [info] = json.loads(engine("volume", "inspect", "named").stdout)
    assert info["Name"] == "named" and info["Driver"] == "local" and info["Scope"] == "local"
    assert info["Mountpoint"] == str(engine.root / "volumes/named/_data")
    assert engine("volume", "inspect", "-f", "{{.Labels.team}}", generated).stdout == "a\n"
    assert engine("volume", "inspect", "nope", check=False).returncode == 1
    assert engine("volume", "create", "bad/name", check=False).returncode == 125


def test_copy_up_and_rm_in_use(engine: Engine) -> None:
    assert (
        "passwd"
        in engine("run", "--name", "user", "-v", "etcvol:/etc", "busybox", "ls", "/etc").stdout.split()
    )
    data = engine.root / "volumes/etcvol/_data"
    assert (data / "passwd").is_file()
    refused = engine("volume", "rm", "etcvol", check=False)
    assert refused.returncode == 125 and "in use" in refused.stderr  # even by a stopped container
    assert engine("volume", "ls", "-q", "-f", "dangling=true").stdout == ""
    engine("rm", "user")
    assert engine("volume", "ls", "-q", "-f", "dangling=true").stdout.split() == ["etcvol"]
    # A volume that already has content is not copied into again.
    engine("run", "--rm", "-v", "etcvol:/etc", "busybox", "sh", "-c", "echo mine > /etc/marker")
    assert engine("run", "--rm", "-v", "etcvol:/etc", "busybox", "cat", "/etc/marker").stdout == "mine\n"
    assert engine("volume", "rm", "etcvol").stdout == "etcvol\n"
    assert engine("volume", "rm", "etcvol", check=False).returncode == 125
    assert engine("volume", "rm", "-f", "etcvol").returncode == 0


def test_prune_removes_anonymous_unless_all(engine: Engine) -> None:
    engine("volume", "create", "keepme")
    engine("run", "--name", "anon", "-v", "/scratch", "busybox", "sh", "-c", "echo x > /scratch/f")
    engine("run", "-d", "--name", "busy", "-v", "/inuse", "busybox", "sleep", "300")
    anonymous = [m["Name"] for m in json.loads(engine("inspect", "anon").stdout)[0]["Mounts"]]
    in_use = [m["Name"] for m in json.loads(engine("inspect", "busy").stdout)[0]["Mounts"]]
    engine("rm", "anon")
    out = engine("volume", "prune", "-f").stdout
    assert out.startswith("Deleted Volumes:\n") and anonymous[0] in out and "keepme" not in out
    assert "Total reclaimed space:" in out
    assert set(engine("volume", "ls", "-q").stdout.split()) == {"keepme", *in_use}
    engine("volume", "prune", "-a", "-f")
    assert set(engine("volume", "ls", "-q").stdout.split()) == set(in_use)


def test_mounts_go_parents_first_whatever_the_flag_order(engine: Engine, tmp_path: Path) -> None:
    """Docker sorts mounts by depth: a bind under a --tmpfs, given before it, is still visible."""
    (tmp_path / "in.txt").write_text("bound")
    out = engine(
        "run", "--rm", "-v", f"{tmp_path}:/work/data:ro", "--tmpfs", "/work", "-v", "etcvol:/etc",
        "busybox", "sh", "-c", "cat /work/data/in.txt; echo; grep -c ip6-allnodes /etc/hosts",
    ).stdout  # fmt: skip
    assert out.splitlines() == ["bound", "1"], (
        "the bind on top of the tmpfs, the engine's hosts on the volume"
    )
