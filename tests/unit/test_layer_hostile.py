"""Hostile layers: whatever a tarball says, nothing outside the target is created, changed or deleted.

Each test unpacks into `<tmp>/target` inside a chroot jail at `<tmp>` (see layer_jail: an escape must never
reach the real host), next to `/sentinel`, `/outside/` and `/etc/passwd` as the jail sees them. The `box`
fixture checks after every test that everything in the jail outside `target` is exactly as it was. Each
malicious entry must either be refused with UnsafeContent/InvalidArgument or be neutralised inside the target.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from layer_jail import T0, entry, jailed_apply

from intermodal.errors import InvalidArgument, UnsafeContent

IS_ROOT = os.geteuid() == 0
MODES = [
    False,
    pytest.param(True, marks=pytest.mark.skipif(not IS_ROOT, reason="whiteout devices need root")),
]


def state(path: Path) -> tuple[object, ...]:
    s = os.lstat(path)
    content: object = None
    if stat.S_ISREG(s.st_mode):
        content = hashlib.sha256(path.read_bytes()).hexdigest()
    elif stat.S_ISLNK(s.st_mode):
        content = os.readlink(path)
    xattrs = sorted(os.listxattr(path, follow_symlinks=False))
    return (s.st_mode, s.st_uid, s.st_gid, s.st_nlink, s.st_size, s.st_mtime_ns, s.st_ino, content, xattrs)


def outside_state(tmp: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under `tmp` except the target's contents, plus `tmp` itself."""
    result = {".": state(tmp)}
    for dirpath, dirnames, filenames in os.walk(tmp):
        if Path(dirpath) == tmp:
            target = os.lstat(tmp / "target")  # its contents change its mtime, but it stays the same dir
            result["target"] = (stat.S_IFMT(target.st_mode), target.st_ino)
            dirnames.remove("target")
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            result[str(path.relative_to(tmp))] = state(path)
    return result


@dataclass
class Box:
    tmp: Path
    target: Path
    outside: Path
    sentinel: Path


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    target = tmp_path / "target"
    target.mkdir()
    sentinel = tmp_path / "sentinel"
    sentinel.write_text("do not touch")
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "file").write_text("outside")
    os.utime(outside / "sub", (T0, T0))
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    before = outside_state(tmp_path)
    yield Box(tmp_path, target, outside, sentinel)
    assert outside_state(tmp_path) == before, "something outside the target changed"


def symlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    return entry(name, tarfile.SYMTYPE, linkname=target)


def hardlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    return entry(name, tarfile.LNKTYPE, linkname=target)


def apply(box: Box, *entries: tuple[tarfile.TarInfo, bytes], overlay: bool = False) -> int:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if data else None)
    return jailed_apply(box.tmp, buf.getvalue(), box.target, overlay=overlay)


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- names --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "../../../../../../../tmp/escape", "./../x"])
def test_names_climbing_out_are_refused(box: Box, name: str) -> None:
    with pytest.raises(UnsafeContent, match="outside"):
        apply(box, entry(name, data=b"pwned"))
    assert not (box.tmp / "escape").exists() and listing(box.target) == []


def test_dotdot_inside_the_layer_is_fine(box: Box) -> None:
    apply(box, entry("a/../x", data=b"x"))
    assert (box.target / "x").read_bytes() == b"x"


def test_absolute_names_land_inside_the_target(box: Box) -> None:
    apply(box, entry("/sentinel", data=b"pwned"), entry("/etc/passwd", data=b"pwned"), entry("//outside/new"))
    assert (box.target / "sentinel").read_bytes() == b"pwned"
    assert (box.target / "etc" / "passwd").read_bytes() == b"pwned"
    assert (box.target / "outside" / "new").exists()


def test_nul_in_a_name_is_refused(box: Box) -> None:
    info, data = entry("a", data=b"x")
    info.pax_headers = {"path": "a\x00b"}
    with pytest.raises(UnsafeContent, match="NUL"):
        apply(box, (info, data))


def test_nul_in_a_link_target_is_refused(box: Box) -> None:
    info, data = symlink("l", "x")
    info.pax_headers = {"linkpath": "/etc\x00/passwd"}
    with pytest.raises(UnsafeContent, match="NUL"):
        apply(box, (info, data))


@pytest.mark.parametrize("name", [".", "./", "/", "a/.."])
def test_a_file_cannot_replace_the_root(box: Box, name: str) -> None:
    with pytest.raises(UnsafeContent, match="root"):
        apply(box, entry(name, data=b"x"))


# --- symlinks in the path -----------------------------------------------------------------------------------


@pytest.mark.parametrize("link", ["/", "../", "../../../../../..", "/..", "./../..", "//", "/../outside/.."])
def test_file_through_a_symlink_stays_inside(box: Box, link: str) -> None:
    apply(
        box,
        symlink("evil", link),
        entry("evil/sentinel", data=b"pwned"),
        entry("evil/outside/file", data=b"x"),
    )
    assert (box.target / "sentinel").read_bytes() == b"pwned"
    assert (box.target / "outside" / "file").read_bytes() == b"x"
    assert (box.target / "evil").is_symlink()


def test_directory_through_a_symlink_stays_inside(box: Box) -> None:
    apply(box, symlink("d", "/outside"), entry("d/sub", tarfile.DIRTYPE, mode=0o777, mtime=1))
    assert (box.target / "outside" / "sub").is_dir()


def test_symlink_chain_to_outside(box: Box) -> None:
    apply(box, entry("x/y", tarfile.DIRTYPE), symlink("x/y/one", "../../two"), symlink("two", "../three"),
          symlink("three", "/../outside"), entry("x/y/one/file", data=b"pwned"))  # fmt: skip
    assert (box.target / "outside" / "file").read_bytes() == b"pwned"


@pytest.mark.parametrize(
    "links",
    [[("a", "b"), ("b", "a")], [("l", "l")], [("l", "./l/")], [(f"l{i}", f"l{i + 1}") for i in range(45)]],
)
def test_symlink_loops_are_refused(box: Box, links: list[tuple[str, str]]) -> None:
    with pytest.raises(UnsafeContent, match="loop"):
        apply(box, *(symlink(name, target) for name, target in links), entry(f"{links[0][0]}/x", data=b"x"))


def test_deep_but_finite_symlink_chains_work(box: Box) -> None:
    apply(box, *(symlink(f"l{i}", f"l{i + 1}") for i in range(30)), entry("l30", tarfile.DIRTYPE),
          entry("l0/x", data=b"x"))  # fmt: skip
    assert (box.target / "l30" / "x").read_bytes() == b"x"


# --- replacing symlinks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("same_layer", [True, False])
@pytest.mark.parametrize(
    "kind", [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.FIFOTYPE, tarfile.LNKTYPE]
)
def test_entry_replaces_a_symlink_to_outside_never_its_target(
    box: Box, kind: bytes, same_layer: bool
) -> None:
    links = [symlink("link", "/sentinel"), symlink("dlink", "../outside")]
    extra = {"linkname": "other"} if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else {}
    data = b"pwned" if kind == tarfile.REGTYPE else b""
    replacing = [entry("other", data=b"o"), entry("link", kind, data, mode=0o777, uid=1234, **extra),
                 entry("dlink", kind, data, mode=0o777, uid=1234, **extra)]  # fmt: skip
    if same_layer:
        apply(box, *links, *replacing)
    else:
        apply(box, *links)
        apply(box, *replacing)
    for name in ("link", "dlink"):
        s = os.lstat(box.target / name)
        assert stat.S_IFMT(s.st_mode) == {tarfile.REGTYPE: stat.S_IFREG, tarfile.DIRTYPE: stat.S_IFDIR,
                                          tarfile.SYMTYPE: stat.S_IFLNK, tarfile.FIFOTYPE: stat.S_IFIFO,
                                          tarfile.LNKTYPE: stat.S_IFREG}[kind]  # fmt: skip


def test_directory_mtimes_are_not_set_through_a_later_symlink(box: Box) -> None:
    """Directory mtimes are set at the end; by then `d` is a symlink to outside/ which has a `sub` too."""
    apply(
        box, entry("d", tarfile.DIRTYPE), entry("d/sub", tarfile.DIRTYPE, mtime=1), symlink("d", "../outside")
    )
    assert os.lstat(box.outside / "sub").st_mtime == T0


# --- hardlinks ----------------------------------------------------------------------------------------------


def test_hardlink_through_a_symlink_to_outside(box: Box) -> None:
    with pytest.raises(InvalidArgument, match="not in the image"):
        apply(box, symlink("evil", "/outside"), hardlink("h", "evil/file"))
    with pytest.raises(InvalidArgument, match="not in the image"):
        apply(box, symlink("rel", "../outside"), hardlink("h", "rel/file"))
    assert os.stat(box.outside / "file").st_nlink == 1


def test_hardlink_climbing_out_is_refused(box: Box) -> None:
    with pytest.raises(UnsafeContent, match="outside"):
        apply(box, hardlink("h", "../outside/file"))
    with pytest.raises(UnsafeContent, match="outside"):
        apply(box, hardlink("h", "a/../../sentinel"))


def test_hardlink_to_an_absolute_host_path_never_links_the_host_file(box: Box) -> None:
    with pytest.raises(InvalidArgument, match="not in the image"):
        apply(box, hardlink("passwd", "/etc/passwd"))
    apply(box, entry("etc/passwd", data=b"image's own"), hardlink("passwd", "/etc/passwd"))
    assert os.stat(box.target / "passwd").st_ino == os.stat(box.target / "etc" / "passwd").st_ino
    assert os.stat(box.tmp / "etc" / "passwd").st_nlink == 1


def test_hardlink_to_a_directory_is_refused(box: Box) -> None:
    with pytest.raises(UnsafeContent, match="directory"):
        apply(box, entry("d", tarfile.DIRTYPE), hardlink("h", "d"))


def test_hardlink_to_a_symlink_links_the_symlink(box: Box) -> None:
    apply(box, symlink("s", "/sentinel"), hardlink("h", "s"))
    assert (box.target / "h").is_symlink()


# --- device nodes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", MODES)
@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE])
def test_device_nodes_are_skipped(box: Box, kind: bytes, overlay: bool) -> None:
    apply(box, entry("dev/sda", kind, devmajor=8, devminor=0), entry("dev/null", kind, devmajor=1, devminor=3),
          entry("wh", kind, devmajor=0, devminor=0), overlay=overlay)  # fmt: skip
    assert listing(box.target) == []


# --- whiteouts ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", MODES)
@pytest.mark.parametrize("name", [".wh...", ".wh..", ".wh.", "dir/.wh...", "a/b/.wh.."])
def test_whiteouts_of_dot_and_dotdot_are_refused(box: Box, name: str, overlay: bool) -> None:
    with pytest.raises(UnsafeContent, match="whiteout"):
        apply(box, entry("dir", tarfile.DIRTYPE), entry(name), overlay=overlay)


@pytest.mark.parametrize("overlay", MODES)
@pytest.mark.parametrize("link", ["/", "../", "../..", "/../../..", "/etc/.."])
def test_whiteout_through_a_symlink_to_outside(box: Box, link: str, overlay: bool) -> None:
    apply(box, symlink("evil", link), entry("evil/.wh.sentinel"), entry("evil/.wh.outside"), entry("evil/.wh.etc"),
          entry("evil/.wh..wh..opq"), overlay=overlay)  # fmt: skip
    assert (box.target / "evil").is_symlink()


@pytest.mark.parametrize("overlay", MODES)
def test_whiteout_of_a_symlink_removes_only_the_link(box: Box, overlay: bool) -> None:
    apply(box, symlink("evil", "/outside"), entry("d/evil", tarfile.SYMTYPE, linkname="../../outside"))
    apply(box, entry(".wh.evil"), entry("d/.wh.evil"), overlay=overlay)
    assert not (box.target / "evil").is_symlink() and not (box.target / "d" / "evil").is_symlink()


def test_opaque_dir_holding_a_symlink_to_outside(box: Box) -> None:
    apply(box, symlink("d/evil", "/outside"), symlink("d/rel", "../../outside"), symlink("d/etc", "/etc"))
    apply(box, entry("d", tarfile.DIRTYPE), entry("d/.wh..wh..opq"))
    assert os.listdir(box.target / "d") == []


@pytest.mark.skipif(not IS_ROOT, reason="trusted.* xattrs need root")
def test_layer_cannot_forge_overlay_xattrs(box: Box) -> None:
    info, data = entry("d", tarfile.DIRTYPE)
    info.pax_headers = {
        "SCHILY.xattr.trusted.overlay.opaque": "y",
        "SCHILY.xattr.trusted.overlay.redirect": "/x",
    }
    apply(box, (info, data), overlay=True)
    assert os.listxattr(box.target / "d") == []
