"""Layer apply/write: round trips, whiteouts in both modes, diffs, overlay upper dirs, reproducibility."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import socket
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from layer_jail import T0, entry, jailed, jailed_apply

from intermodal.errors import CorruptContent
from intermodal.image.digest import Digest
from intermodal.image.layer import (
    LayerInfo,
    apply_layer,
    detect_compression,
    open_decompressed,
    write_layer,
)

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="chown, mknod and trusted.* xattrs need root")
COMPRESSIONS = ["gzip", "zstd", ""]


# --- helpers ------------------------------------------------------------------------------------------------


def snapshot(root: Path, *, dir_mtimes: bool = True) -> dict[str, tuple[object, ...]]:
    """Everything a layer must preserve, per path below `root` (hardlinks as the set of their names)."""
    entries: dict[str, tuple[object, ...]] = {}
    inodes: dict[tuple[int, int], set[str]] = {}
    keys: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            s = os.lstat(path)
            content: object = None
            if stat.S_ISREG(s.st_mode):
                content = Path(path).read_bytes()
                keys[rel] = (s.st_dev, s.st_ino)
                inodes.setdefault(keys[rel], set()).add(rel)
            elif stat.S_ISLNK(s.st_mode):
                content = os.readlink(path)
            xattrs = {
                n: os.getxattr(path, n, follow_symlinks=False)
                for n in os.listxattr(path, follow_symlinks=False)
                if n.startswith("user.")
            }
            mtime = s.st_mtime_ns if dir_mtimes or not stat.S_ISDIR(s.st_mode) else None
            entries[rel] = (stat.S_IFMT(s.st_mode), stat.S_IMODE(s.st_mode), s.st_uid, s.st_gid, mtime, content,
                            s.st_rdev, sorted(xattrs.items()))  # fmt: skip
    for rel, key in keys.items():
        entries[rel] += (frozenset(inodes[key]),)
    return entries


def set_mtimes(root: Path, when: int = T0) -> None:
    """Give every entry a fixed whole-second mtime, children before their directories."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (when, when), follow_symlinks=False)
    os.utime(root, (when, when))


def touch(root: Path, *paths: str, when: int = T0 + 99) -> None:
    for path in paths:
        os.utime(root / path, (when, when), follow_symlinks=False)


def make_tree(root: Path) -> None:
    """A small rootfs with every kind of entry and metadata a layer carries."""
    root.mkdir()
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("box\n")
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "bin").mkdir()
    (root / "bin" / "su").write_bytes(b"\x7fELF" + bytes(100))
    os.chmod(root / "bin" / "su", 0o4755)
    (root / "bin" / "wall").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "bin" / "wall", 0o2711)
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "usr" / "lib" / "big.bin").write_bytes(bytes(range(256)) * 9000)  # > 2 MiB: several chunks
    os.link(root / "usr" / "lib" / "big.bin", root / "usr" / "lib" / "big-link.bin")
    os.symlink("usr/lib", root / "lib")
    os.symlink("/etc/passwd", root / "etc" / "passwd-abs")
    os.symlink("../nowhere", root / "etc" / "dangling")
    os.mkfifo(root / "tmp" / "fifo", 0o620)
    (root / "empty-dir").mkdir(mode=0o700)
    os.chmod(root / "empty-dir", 0o700)
    (root / "empty-file").touch()
    (root / "names").mkdir()
    (root / "names" / "spaces and ünïcode").write_text("u")
    (root / "names" / os.fsdecode(b"latin1-caf\xe9")).write_text("not utf-8")
    deep = root / "names" / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (deep / ("f" * 90)).write_text("long path")
    os.setxattr(root / "etc" / "hostname", "user.note", b"hello")
    os.setxattr(root / "etc", "user.binary", b"\x00\xff\xfe")
    if IS_ROOT:
        (root / "home" / "user").mkdir(parents=True)
        (root / "home" / "user" / "file").write_text("mine")
        os.chown(root / "home" / "user", 1000, 1000)
        os.chown(root / "home" / "user" / "file", 1000, 100)
        os.lchown(root / "etc" / "dangling", 7, 8)
    set_mtimes(root)


def layer_bytes(source: Path, compression: str = "", **kw: object) -> tuple[bytes, LayerInfo]:
    out = io.BytesIO()
    info = write_layer(out, source, compression=compression, **kw)
    return out.getvalue(), info


def members(blob: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tf:
        return tf.getmembers()


def tar_of(*entries: tuple[tarfile.TarInfo, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if data else None)
    buf.seek(0)
    return buf


def apply(tar: io.BytesIO, target: Path, overlay: bool = False) -> int:
    """Unpack jailed in the target's parent (the test's tmp dir): see layer_jail for why."""
    return jailed_apply(target.parent, tar.getvalue(), target, overlay=overlay)


def is_whiteout(path: Path) -> bool:
    s = os.lstat(path)
    return stat.S_ISCHR(s.st_mode) and s.st_rdev == 0


def is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


# --- round trips --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_round_trip_preserves_everything(tmp_path: Path, compression: str) -> None:
    make_tree(tmp_path / "src")
    blob, info = layer_bytes(tmp_path / "src", compression)
    written = jailed_apply(tmp_path, blob, tmp_path / "dst", compression=compression)
    assert snapshot(tmp_path / "dst") == snapshot(tmp_path / "src")
    regular = {
        (s.st_ino, s.st_size) for p in (tmp_path / "src").rglob("*") if stat.S_ISREG((s := p.lstat()).st_mode)
    }
    assert written == info.unpacked_size == sum(size for _, size in regular)
    uncompressed = open_decompressed(io.BytesIO(blob), compression).read()
    assert info == LayerInfo(Digest.of_bytes(blob), Digest.of_bytes(uncompressed), len(blob), written)


def test_layer_format_is_what_docker_writes(tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    blob, _ = layer_bytes(tmp_path / "src", mtime=5)
    ms = members(blob)
    names = [m.name for m in ms]
    assert names == sorted(names, key=os.fsencode)
    assert "" not in names and not any(n.startswith(("/", "./")) for n in names)
    assert {m.uname for m in ms} == {""} and {m.gname for m in ms} == {""}
    assert {m.mtime for m in ms} == {5}
    by_name = {m.name: m for m in ms}
    assert (
        by_name["usr/lib/big.bin"].islnk() and by_name["usr/lib/big.bin"].linkname == "usr/lib/big-link.bin"
    )
    assert by_name["etc/hostname"].pax_headers["SCHILY.xattr.user.note"] == "hello"
    assert by_name["tmp/fifo"].isfifo() and by_name["lib"].linkname == "usr/lib"
    assert len(blob) % 512 == 0 and blob.endswith(bytes(1024))


@needs_root
def test_device_nodes_are_written_but_not_applied(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    os.mknod(tmp_path / "src" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(tmp_path / "src" / "loop9", stat.S_IFBLK | 0o660, os.makedev(7, 9))
    blob, _ = layer_bytes(tmp_path / "src")
    by_name = {m.name: m for m in members(blob)}
    assert by_name["null"].ischr() and (by_name["null"].devmajor, by_name["null"].devminor) == (1, 3)
    assert by_name["loop9"].isblk() and (by_name["loop9"].devmajor, by_name["loop9"].devminor) == (7, 9)
    apply(io.BytesIO(blob), tmp_path / "dst")
    assert os.listdir(tmp_path / "dst") == []


def test_sockets_are_left_out(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "src" / "sock"))
        (tmp_path / "src" / "file").write_text("x")
        blob, _ = layer_bytes(tmp_path / "src")
    assert [m.name for m in members(blob)] == ["file"]


def test_root_entry_sets_the_target_metadata(tmp_path: Path) -> None:
    apply(tar_of(entry("./", tarfile.DIRTYPE, mode=0o750, mtime=T0), entry("./f", data=b"x")), tmp_path / "t")
    s = os.stat(tmp_path / "t")
    assert stat.S_IMODE(s.st_mode) == 0o750 and s.st_mtime == T0
    assert (tmp_path / "t" / "f").read_bytes() == b"x"


def test_apply_replaces_existing_entries(tmp_path: Path) -> None:
    t = tmp_path / "t"
    apply(tar_of(entry("d", tarfile.DIRTYPE), entry("d/old", data=b"1"), entry("f", data=b"1"),
                 entry("s", tarfile.SYMTYPE, linkname="f"), entry("keep", tarfile.DIRTYPE),
                 entry("keep/x", data=b"x")), t)  # fmt: skip
    apply(tar_of(entry("d", data=b"file now"), entry("f", tarfile.DIRTYPE, mode=0o700),
                 entry("s", data=b"not a link"), entry("keep", tarfile.DIRTYPE, mode=0o711)), t)  # fmt: skip
    assert (t / "d").read_bytes() == b"file now"
    assert (t / "f").is_dir() and stat.S_IMODE(os.stat(t / "f").st_mode) == 0o700
    assert not (t / "s").is_symlink() and (t / "s").read_bytes() == b"not a link"
    assert stat.S_IMODE(os.stat(t / "keep").st_mode) == 0o711 and (t / "keep" / "x").read_bytes() == b"x"


def test_apply_follows_symlinked_parents_inside_the_root(tmp_path: Path) -> None:
    """`lib -> usr/lib` from a lower layer: a later `lib/x` lands in usr/lib, as on a real root."""
    t = tmp_path / "t"
    apply(tar_of(entry("usr/lib", tarfile.DIRTYPE), entry("lib", tarfile.SYMTYPE, linkname="/usr/lib")), t)
    apply(tar_of(entry("lib/libc.so", data=b"elf")), t)
    assert (t / "usr" / "lib" / "libc.so").read_bytes() == b"elf" and (t / "lib").is_symlink()


def test_hardlink_to_a_lower_layer_file(tmp_path: Path) -> None:
    t = tmp_path / "t"
    apply(tar_of(entry("a", data=b"shared")), t)
    apply(tar_of(entry("b", tarfile.LNKTYPE, linkname="a")), t)
    assert os.stat(t / "a").st_ino == os.stat(t / "b").st_ino


def test_implicit_parents_are_created(tmp_path: Path) -> None:
    apply(tar_of(entry("x/y/z", data=b"z")), tmp_path / "t")
    assert stat.S_IMODE(os.stat(tmp_path / "t" / "x" / "y").st_mode) == 0o755


def test_directory_mtimes_survive_their_children(tmp_path: Path) -> None:
    apply(tar_of(entry("d", tarfile.DIRTYPE, mtime=T0), entry("d/a", data=b"a"), entry("d/b", data=b"b")),
          tmp_path / "t")  # fmt: skip
    assert os.stat(tmp_path / "t" / "d").st_mtime == T0


def test_pax_sub_second_mtime_is_exact(tmp_path: Path) -> None:
    info, data = entry("f", data=b"x")
    info.pax_headers = {"mtime": "1600000000.123456789"}
    apply(tar_of((info, data)), tmp_path / "t")
    assert os.lstat(tmp_path / "t" / "f").st_mtime_ns == 1_600_000_000_123_456_789


def test_garbage_is_corrupt_content(tmp_path: Path) -> None:
    with pytest.raises(CorruptContent):
        apply(io.BytesIO(b"\x01" * 2048), tmp_path / "t")
    blob, _ = layer_bytes(Path(__file__).parent, "gzip")
    with pytest.raises(CorruptContent):
        jailed_apply(tmp_path, blob[: len(blob) // 2], tmp_path / "u", compression="gzip")


def test_apply_reads_to_eof(tmp_path: Path) -> None:
    """A verifying reader underneath only checks the digest at EOF, after the tar's end marker."""
    stream = io.BytesIO(tar_of(entry("f", data=b"x")).getvalue() + bytes(50_000))
    assert jailed(tmp_path, lambda: (apply_layer(stream, Path("/t")), stream.tell())) == (
        1,
        len(stream.getvalue()),
    )


# --- whiteouts ----------------------------------------------------------------------------------------------


def lower(target: Path, overlay: bool = False) -> None:
    apply(tar_of(entry("a", tarfile.DIRTYPE), entry("a/x", data=b"x"), entry("a/y", data=b"y"),
                 entry("b", data=b"b"), entry("c/d/e", data=b"e"), entry("o/old", data=b"old"),
                 entry("o/sub/old", data=b"old"), entry("o/sub/kept", data=b"lower")), target, overlay)  # fmt: skip


def test_flatten_whiteouts_delete_lower_entries(tmp_path: Path) -> None:
    t = tmp_path / "t"
    lower(t)
    apply(
        tar_of(entry("a/.wh.x"), entry(".wh.b"), entry(".wh.c"), entry("nowhere/.wh.z"), entry(".wh.none")), t
    )
    assert sorted(os.listdir(t)) == ["a", "o"] and os.listdir(t / "a") == ["y"]


def test_flatten_opaque_spares_same_layer_entries(tmp_path: Path) -> None:
    """layer.md#opaque-whiteout: only lower entries go, including ones before the marker in the tar."""
    t = tmp_path / "t"
    lower(t)
    apply(tar_of(entry("o", tarfile.DIRTYPE), entry("o/!new", data=b"before marker"),
                 entry("o/sub/kept", data=b"upper"), entry("o/.wh..wh..opq"), entry("o/z", data=b"after")), t)  # fmt: skip
    assert sorted(os.listdir(t / "o")) == ["!new", "sub", "z"]
    assert os.listdir(t / "o" / "sub") == ["kept"] and (t / "o" / "sub" / "kept").read_bytes() == b"upper"


def test_flatten_whiteout_spares_same_layer_entry(tmp_path: Path) -> None:
    """layer.md#whiteouts: whiteouts only apply to lower layers, whatever the order in the tar."""
    t = tmp_path / "t"
    lower(t)
    apply(tar_of(entry("b", data=b"new b"), entry(".wh.b"), entry("a/q", data=b"q"), entry(".wh.a")), t)
    assert (t / "b").read_bytes() == b"new b"
    assert os.listdir(t / "a") == ["q"]


def test_flatten_whiteout_then_recreate(tmp_path: Path) -> None:
    t = tmp_path / "t"
    lower(t)
    apply(tar_of(entry(".wh.a"), entry("a", tarfile.DIRTYPE), entry("a/new", data=b"n")), t)
    assert os.listdir(t / "a") == ["new"]


@needs_root
def test_overlay_whiteouts_become_devices_and_xattrs(tmp_path: Path) -> None:
    t = tmp_path / "t"
    apply(tar_of(entry("a/.wh.x"), entry(".wh.b"), entry("o", tarfile.DIRTYPE), entry("o/.wh..wh..opq"),
                 entry("o/new", data=b"n"), entry("f", data=b"f"), entry(".wh.f"), entry("g", tarfile.DIRTYPE),
                 entry(".wh.g"), entry(".wh.h"), entry("h/inner", data=b"i"), entry(".wh.j"),
                 entry("j", tarfile.DIRTYPE), entry(".wh.k"), entry("k", data=b"k")), t, overlay=True)  # fmt: skip
    assert is_whiteout(t / "a" / "x") and is_whiteout(t / "b")
    assert is_opaque(t / "o") and (t / "o" / "new").read_bytes() == b"n"
    assert (t / "f").read_bytes() == b"f"  # same-layer file survives its whiteout
    assert is_opaque(t / "g") and is_opaque(t / "h") and is_opaque(t / "j")
    assert (t / "h" / "inner").read_bytes() == b"i" and (t / "k").read_bytes() == b"k"
    assert not is_opaque(t / "a")


def overlay_mount(lowers: list[Path], merged: Path) -> None:
    merged.mkdir()
    opts = "lowerdir=" + ":".join(str(p) for p in reversed(lowers))
    if len(lowers) == 1:
        opts += f",upperdir={merged.parent / 'u'},workdir={merged.parent / 'w'}"
        (merged.parent / "u").mkdir()
        (merged.parent / "w").mkdir()
    done = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount overlayfs here: {done.stderr.decode().strip()}")


@needs_root
@pytest.mark.root
def test_overlay_mode_matches_flatten_mode_through_the_kernel(tmp_path: Path) -> None:
    """Stacking overlay-mode layers in a real overlayfs shows the same tree as flattening them."""
    layers = [
        tar_of(entry("a", tarfile.DIRTYPE), entry("a/x", data=b"x"), entry("a/y", data=b"y"), entry("b", data=b"b"),
               entry("c/d/e", data=b"e"), entry("o", tarfile.DIRTYPE), entry("o/old", data=b"old"),
               entry("r", tarfile.DIRTYPE), entry("r/old", data=b"old")),
        tar_of(entry("a", tarfile.DIRTYPE), entry("a/.wh.x"), entry(".wh.b"), entry(".wh.c"), entry("o", tarfile.DIRTYPE),
               entry("o/.wh..wh..opq"), entry("o/new", data=b"new"), entry(".wh.r"), entry("r", tarfile.DIRTYPE),
               entry("r/fresh", data=b"fresh")),
    ]  # fmt: skip
    flat = tmp_path / "flat"
    lowers = []
    for i, layer in enumerate(layers):
        apply(io.BytesIO(layer.getvalue()), flat)
        apply(io.BytesIO(layer.getvalue()), tmp_path / f"l{i}", overlay=True)
        lowers.append(tmp_path / f"l{i}")
    merged = tmp_path / "merged"
    overlay_mount(lowers, merged)
    try:
        assert snapshot(merged, dir_mtimes=False) == snapshot(flat, dir_mtimes=False)
    finally:
        subprocess.run(["umount", str(merged)], check=True)


# --- diffs and overlay upper dirs ---------------------------------------------------------------------------


def test_diff_against_base(tmp_path: Path) -> None:
    base, src, target = tmp_path / "base", tmp_path / "src", tmp_path / "target"
    for root in (base, src, target):
        make_tree(root)
    (src / "etc" / "added").write_text("new")
    (src / "etc" / "hostname").write_text("xob\n")  # same size, new content
    (src / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/bash\n")
    os.chmod(src / "bin" / "wall", 0o755)
    (src / "bin" / "su").unlink()
    shutil.rmtree(src / "names")
    (src / "tmp" / "fifo").unlink()
    (src / "tmp" / "fifo").mkdir()  # file -> dir
    shutil.rmtree(src / "empty-dir")
    (src / "empty-dir").write_text("dir -> file")
    os.unlink(src / "lib")
    os.symlink("usr/lib64", src / "lib")
    touch(
        src,
        "etc/added",
        "etc/hostname",
        "etc/passwd",
        "tmp/fifo",
        "empty-dir",
        "lib",
        "etc",
        "bin",
        "tmp",
        "",
    )
    touch(src, "empty-file", when=T0 + 60)  # only the mtime changed, content did not
    blob, _ = layer_bytes(src, base=base)
    assert [m.name for m in members(blob)] == [
        ".wh.names", "bin", "bin/.wh.su", "bin/wall", "empty-dir", "etc", "etc/added", "etc/hostname",
        "etc/passwd", "lib", "tmp", "tmp/fifo",
    ]  # fmt: skip
    apply(io.BytesIO(blob), target)
    expected = snapshot(src)
    expected["empty-file"] = snapshot(base)["empty-file"]
    assert snapshot(target) == expected


@needs_root
def test_overlay_upper_dir_becomes_whiteouts(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "new").write_text("n")
    os.mknod(upper / "etc" / "gone", stat.S_IFCHR, os.makedev(0, 0))
    (upper / "opq").mkdir()
    os.setxattr(upper / "opq", "trusted.overlay.opaque", b"y")
    os.setxattr(upper / "opq", "trusted.overlay.origin", b"\x00junk")
    (upper / "opq" / "keep").write_text("k")
    set_mtimes(upper)
    blob, _ = layer_bytes(upper, overlay_upper=True)
    ms = members(blob)
    assert [m.name for m in ms] == ["etc", "etc/.wh.gone", "etc/new", "opq", "opq/.wh..wh..opq", "opq/keep"]
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay") for m in ms for k in m.pax_headers)
    target = tmp_path / "t"
    apply(
        tar_of(entry("etc/gone", data=b"g"), entry("etc/stays", data=b"s"), entry("opq/old", data=b"o")),
        target,
    )
    apply(io.BytesIO(blob), target)
    assert sorted(os.listdir(target / "etc")) == ["new", "stays"] and os.listdir(target / "opq") == ["keep"]


@needs_root
@pytest.mark.root
def test_real_overlay_upper_round_trip(tmp_path: Path) -> None:
    """Changes made through a real overlayfs, committed from its upper dir, rebuild the merged view."""
    base = tmp_path / "base"
    make_tree(base)
    merged = tmp_path / "m"
    overlay_mount([base], merged)
    try:
        (merged / "etc" / "hostname").write_text("changed\n")
        (merged / "bin" / "su").unlink()
        shutil.rmtree(merged / "names")
        (merged / "names").mkdir()  # deleted and recreated: an opaque dir in the upper
        (merged / "names" / "fresh").write_text("f")
        os.symlink("elsewhere", merged / "etc" / "new-link")
        touch(merged, "etc/hostname", "etc/new-link", "etc", "bin", "names/fresh", "names")
        expected = snapshot(merged)
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    blob, _ = layer_bytes(tmp_path / "u", overlay_upper=True)
    target = tmp_path / "target"
    make_tree(target)
    apply(io.BytesIO(blob), target)
    assert snapshot(target) == expected


# --- reproducibility and compression ------------------------------------------------------------------------


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_same_tree_same_digest(tmp_path: Path, compression: str) -> None:
    make_tree(tmp_path / "one")
    make_tree(tmp_path / "two")
    set_mtimes(tmp_path / "two", T0 + 12345)  # different times on disk; mtime=0 overrides them
    one = layer_bytes(tmp_path / "one", compression, mtime=0)
    two = layer_bytes(tmp_path / "two", compression, mtime=0)
    assert one == two


def test_gzip_header_is_reproducible(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    blob, _ = layer_bytes(tmp_path / "src", "gzip")
    assert blob[:4] == b"\x1f\x8b\x08\x00"  # no FNAME flag
    assert blob[4:8] == bytes(4)  # mtime 0


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_detect_and_open(compression: str) -> None:
    payload = tar_of(entry("f", data=b"hello")).getvalue()
    if compression == "gzip":
        data = gzip.compress(payload[:700]) + gzip.compress(payload[700:])  # two members
    elif compression == "zstd":
        cctx = zstandard.ZstdCompressor()
        data = cctx.compress(payload[:700]) + cctx.compress(payload[700:])  # two frames
    else:
        data = payload
    assert detect_compression(data[:8]) == compression
    assert open_decompressed(io.BytesIO(data), compression).read() == payload


def test_unknown_compression_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        open_decompressed(io.BytesIO(b""), "bzip2")
    with pytest.raises(ValueError):
        write_layer(io.BytesIO(), tmp_path, compression="lz4")


# --- property -----------------------------------------------------------------------------------------------

names = st.text(alphabet="ab.-_ é", min_size=1, max_size=6).filter(
    lambda n: n not in (".", "..") and "wh." not in n
)
trees = st.recursive(
    st.binary(max_size=700),
    lambda children: st.dictionaries(names, children, max_size=4),
    max_leaves=12,
)


def build(root: Path, tree: dict[str, object]) -> None:
    for name, node in tree.items():
        if isinstance(node, dict):
            (root / name).mkdir()
            build(root / name, node)
        else:
            assert isinstance(node, bytes)
            (root / name).write_bytes(node)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=st.dictionaries(names, trees, max_size=5), compression=st.sampled_from(COMPRESSIONS))
def test_random_trees_round_trip(tree: dict[str, object], compression: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "src", Path(tmp) / "dst"
        src.mkdir()
        build(src, tree)
        set_mtimes(src)
        out = io.BytesIO()
        info = write_layer(out, src, compression=compression)
        assert info.digest == Digest(hashlib.sha256(out.getvalue()).hexdigest())
        jailed_apply(Path(tmp), out.getvalue(), dst, compression=compression)
        assert snapshot(dst) == snapshot(src)
