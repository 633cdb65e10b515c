"""Crash safety, corruption detection, reproducibility and concurrency of the image store, via the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from image_cli import INTERMODAL, Cli


def test_bootstrap_is_reproducible(tmp_path: Path) -> None:
    ids = {Cli(tmp_path / f"r{i}")("image", "bootstrap", "busybox").stdout for i in range(2)}
    assert len(ids) == 1


def test_save_load_round_trip_keeps_digests(cli: Cli, tmp_path: Path) -> None:
    before = cli.text("image", "inspect", "-f", "{{.Id}} {{.Descriptor.digest}}", "busybox")
    for fmt in ("docker-archive", "oci-archive"):
        archive = tmp_path / f"{fmt}.tar"
        cli("save", "--format", fmt, "-o", str(archive), "busybox")
        fresh = Cli(tmp_path / f"fresh-{fmt}")
        fresh("load", "-i", str(archive))
        assert fresh.text("image", "inspect", "-f", "{{.Id}} {{.Descriptor.digest}}", "busybox") == before


def test_corrupt_blob_is_found_by_check_and_by_reads(cli: Cli, tmp_path: Path) -> None:
    blobs = cli.root / "images" / "blobs" / "sha256"
    layer = max(blobs.iterdir(), key=lambda p: p.stat().st_size)
    os.chmod(layer, 0o644)
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer.write_bytes(bytes(data))
    check = cli("system", "check", check=False)
    assert check.returncode == 1 and b"corrupt" in check.stdout
    save = cli("save", "-o", str(tmp_path / "x.tar"), "busybox", check=False)
    assert save.returncode == 125 and b"corrupt" in save.stderr
    assert not (tmp_path / "x.tar").exists()
    cli("system", "check", "--repair")
    assert cli.text("system", "check").startswith("ok")
    assert cli.text("images", "-q") == ""


def test_kill_during_load_leaves_store_consistent(cli: Cli, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    (big / "blob").write_bytes(os.urandom(64 << 20))
    subprocess.run(["tar", "-C", str(big), "-cf", str(tmp_path / "big.tar"), "."], check=True)
    cli("import", str(tmp_path / "big.tar"), "big:1")
    cli("save", "-o", str(tmp_path / "bigimage.tar"), "big:1")
    target = Cli(tmp_path / "target")
    target("load", "-i", str(tmp_path / "bigimage.tar"))
    target("rmi", "big:1")
    proc = subprocess.Popen(
        [INTERMODAL, "--root", str(target.root), "load", "-i", str(tmp_path / "bigimage.tar")]
    )
    time.sleep(0.4)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    check = target("system", "check", check=False)
    assert check.returncode == 0, check.stdout
    target("system", "check", "--repair")
    assert target.text("system", "check").startswith("ok")


def test_concurrent_load_tag_rmi(cli: Cli, busybox_archive: Path) -> None:
    def work(i: int) -> int:
        cmds = [["load", "-i", str(busybox_archive)], ["tag", "busybox", f"copy{i}:x"], ["rmi", f"copy{i}:x"]]
        codes = [cli(*c, check=False).returncode for c in cmds]
        return max(codes)

    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(work, range(10)))
    assert codes == [0] * 10
    assert cli.text("images", "--format", "{{.Repository}}").split() == ["busybox"]
    assert cli.text("system", "check").startswith("ok")
