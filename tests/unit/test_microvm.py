"""The micro-VM backend's pure parts: vmlinux extraction, the cpio writer, module order, the agent's process
script, the nonce-delimited streams, the bundle → guest mapping, QEMU's command line and the engine's flags."""

from __future__ import annotations

import gzip
import lzma
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import lz4.block
import pytest
import zstandard

from intermodal.engine.containers.options import RunOptions, host_config
from intermodal.errors import InvalidArgument
from intermodal.isolation.microvm import agent, bundle, initramfs, kernel, qemu
from intermodal.isolation.microvm.shim import Stream

FAKE_ELF = b"\x7fELF" + bytes(range(256)) * 40000  # ≈10 MB: more than one 8 MiB LZ4 block


def _lz4_legacy(data: bytes) -> bytes:
    out = b"\x02\x21\x4c\x18"
    for i in range(0, len(data), 8 << 20):
        block = lz4.block.compress(data[i : i + (8 << 20)], store_size=False)
        out += len(block).to_bytes(4, "little") + block
    return out


@pytest.mark.parametrize(
    "compress",
    [gzip.compress, lzma.compress, zstandard.ZstdCompressor().compress, _lz4_legacy],
    ids=["gzip", "xz", "zstd", "lz4"],
)
def test_extract_vmlinux_finds_the_payload_after_false_magics(compress) -> None:  # type: ignore[no-untyped-def]
    # a bzImage-like prefix containing stray magic bytes, the payload, then a trailer
    image = b"MZ" + b"\x1f\x8b\x08\xfd7zXZ\x00\x02\x21\x4c\x18junk" * 3 + compress(FAKE_ELF) + b"\x00" * 64
    assert kernel.extract_vmlinux(image) == FAKE_ELF


def test_extract_vmlinux_passes_an_elf_and_rejects_other_files() -> None:
    assert kernel.extract_vmlinux(FAKE_ELF) is FAKE_ELF
    with pytest.raises(InvalidArgument, match="not a kernel image"):
        kernel.extract_vmlinux(b"hello world" * 100)


def test_cpio_archive_unpacks_with_busybox(tmp_path: Path) -> None:
    archive = initramfs.Archive()
    archive.directory("bin")
    archive.file("bin/tool", b"#!/bin/sh\necho hi\n", 0o755)
    archive.symlink("bin/link", "tool")
    archive.file("odd name.txt", b"x" * 5)
    data = archive.finish()
    assert len(data) % 512 == 0
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["busybox", "cpio", "-i", "-d"], input=data, cwd=out, check=True, capture_output=True)
    assert (out / "bin" / "tool").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (out / "bin" / "tool").stat().st_mode & 0o777 == 0o755
    assert os.readlink(out / "bin" / "link") == "tool"
    assert (out / "odd name.txt").read_bytes() == b"xxxxx"


def test_stream_strips_the_nonce_split_across_reads_and_delays_nothing_else() -> None:
    stream = Stream("<<N1>>")
    assert stream.feed(b"hello\n") == b"hello\n"  # interactive output is not held back
    assert stream.feed(b"a<") == b"a"  # could be the nonce's start: held
    assert stream.feed(b"x") == b"<x"
    assert stream.feed(b"<<N") == b""
    assert stream.feed(b"1>>ignored") == b""
    assert stream.done
    unfinished = Stream("<<N1>>")
    assert unfinished.feed(b"tail<<") == b"tail"
    assert unfinished.flush() == b"<<"


def test_process_script_quotes_args_env_and_applies_the_spec() -> None:
    process = {
        "args": ["sh", "-c", "echo 'it''s' \"$X\"; exit 3", "a b", "$(no)"],
        "env": ["X=1 2", "Y=quote'd", "BAD"],
        "cwd": "/w d",
        "user": {"uid": 1000, "gid": 100},
        "noNewPrivileges": True,
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2**64 - 1}],
    }
    script = agent.process_script(process, 2, attach_stdin=True, nonce="<<n>>")
    lines = script.splitlines()
    assert "STDIN=/ports/in2" in lines and "TTY=" in lines
    assert "rlimit n 1024 unlimited" in lines
    argv = shlex.split(lines[-1])[2:]  # after "set --"
    assert argv[:4] == ["env", "-i", "X=1 2", "Y=quote'd"]
    assert argv[4:6] == ["setpriv", "--nnp"]
    assert argv[6:] == ["nsenter", "-r/newroot", "-w/newroot/w d", "-S", "1000", "-G", "100",
                        "--", "$exe", *process["args"][1:]]  # fmt: skip


def test_the_command_is_looked_up_in_the_images_path_not_run_as_an_applet(tmp_path: Path) -> None:
    """busybox would run its own `true` for a bare name; the script must hand the image's program over.
    The generated shell runs here with NEWROOT pointing at a fake root."""
    root = tmp_path / "root"
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "usr/local/bin/true").write_text("#!/bin/sh\n")
    os.symlink("/bin/busybox", root / "bin/ls")  # dangling outside the image: still found, as execvp would

    def exe_for(args: list[str], env: list[str]) -> str:
        script = agent.process_script({"args": args, "env": env}, 0, attach_stdin=False, nonce="n")
        lookup = "\n".join(line for line in script.splitlines() if line.startswith(("exe=", "for d in")))
        lookup = lookup.replace(agent.NEWROOT, str(root))
        out = subprocess.run(
            ["sh", "-c", lookup + '\nprintf %s "$exe"'], capture_output=True, text=True, check=True
        )
        return out.stdout

    assert exe_for(["true"], ["PATH=/usr/local/bin:/bin"]) == "/usr/local/bin/true"
    assert exe_for(["ls", "-l"], []) == "/bin/ls"  # the default PATH
    assert exe_for(["missing"], ["PATH=/opt/x:/bin"]) == "/opt/x/missing"
    assert exe_for(["./rel"], ["PATH=/bin"]) == "./rel"


def test_the_host_finds_the_command_where_the_guest_would_unless_a_mount_covers_the_path(
    tmp_path: Path,
) -> None:
    """The container process's lookup is made on the host at create (bundle.host_executable), with the
    agent's rule; a mount over a PATH directory is seen only in the guest, which then looks itself."""
    root = tmp_path / "root"
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/bin").mkdir()
    (root / "usr/local/bin/true").write_text("#!/bin/sh\n")
    (root / "usr/bin/env").write_text("#!/bin/sh\n")
    os.symlink("/usr/bin", root / "bin")  # absolute: resolved inside the rootfs, not on this host
    os.symlink("/bin/busybox", root / "usr/bin/ls")  # dangling: still found, as execvp would

    def exe(args: list[str], env: list[str], mounts: tuple[str, ...] = ()) -> str | None:
        spec = {"process": {"args": args, "env": env}, "mounts": [{"destination": m} for m in mounts]}
        return bundle.host_executable(spec, str(root))

    assert exe(["true"], ["PATH=/usr/local/bin:/bin"]) == "/usr/local/bin/true"
    assert exe(["env"], ["PATH=/bin"]) == "/bin/env"
    assert exe(["ls"], []) == "/usr/bin/ls"  # the default PATH, in its order
    assert exe(["missing"], ["PATH=/opt/x:/bin"]) == "/opt/x/missing"  # exec fails there: 127
    assert exe(["./rel"], ["PATH=/bin"]) == "./rel"
    assert exe(["true"], ["PATH=/usr/local/bin"], mounts=("/proc", "/etc/hosts")) == "/usr/local/bin/true"
    assert exe(["true"], ["PATH=/usr/local/bin"], mounts=("/usr/local",)) is None
    assert exe(["env"], ["PATH=/bin"], mounts=("/usr/bin/extra",)) is None  # under /bin, once resolved


def test_ports_have_fixed_numbers_the_agent_derives_from_their_names() -> None:
    assert [agent.port_nr(n) for n in ("ctl", "in0", "out0", "err0", "tty0", "out3")] == [1, 2, 3, 4, 5, 15]
    assert agent.port_nr(f"tty{agent.SLOTS - 1}") < qemu.MAX_PORTS
    with pytest.raises(ValueError):
        agent.port_nr("bogus")
    for name in ("ctl", "in2", "out1", "err3", "tty2"):  # the agent's `port` says the same
        out = subprocess.run(
            ["sh", "-c", agent.INIT[agent.INIT.index("port() {") : agent.INIT.index("need_ports() {")]
             + f'vport=/dev/vport7p\nport {name}\nprintf %s "$dev"'],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert out.stdout == f"/dev/vport7p{agent.port_nr(name)}"


def test_guest_config_maps_mounts_to_shares_tmpfs_and_copied_files(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    volume.mkdir()
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    spec = {
        "hostname": "box",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "bind", "source": str(volume), "options": ["rbind", "ro"]},
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "size=1m", "x"],
            },
            {"destination": "/etc/hosts", "type": "bind", "source": str(hosts), "options": ["rbind"]},
        ],
    }
    plan = bundle.Plan(id="c", bundle="b", rootfs="r", rootfs_transport="virtiofs", root_readonly=False,
                       memory_mib=256, cpus=1)  # fmt: skip
    config, files = bundle.guest_config(spec, plan)
    assert plan.shares == [bundle.Share("vol0", str(volume), True)]
    body = [line.strip() for line in config.splitlines()[1:-1]]
    assert body == ["mounts /files/fstab0 /proc/ /sys/ /dev/ /data/ /tmp/ /etc/hosts",
                    "set_hostname box"]  # fmt: skip
    fstab = dict((name, data) for name, data, _ in files)["fstab0"].decode().splitlines()
    assert fstab[:7] == ["proc /proc proc defaults 0 0", "sysfs /sys sysfs defaults 0 0",
                         "devtmpfs /dev devtmpfs defaults 0 0", "rootfs /newroot virtiofs rw 0 0",
                         "proc /newroot/proc proc defaults 0 0", "sysfs /newroot/sys sysfs ro,nosuid,nodev,noexec 0 0",
                         "/dev.oci /newroot/dev none bind 0 0"]  # fmt: skip
    assert fstab[10:] == ["vol0 /newroot/data virtiofs ro 0 0", "tmpfs /newroot/tmp tmpfs nosuid,size=1m 0 0",
                          "/files/f0 /newroot/etc/hosts none bind 0 0"]  # fmt: skip
    plan.nic = {"mac": "02:42:0a:00:00:02", "address": "10.0.0.2/24", "gateway": "10.0.0.1", "mtu": 1500}
    assert (
        bundle.guest_config(spec, plan)[0].splitlines()[-2].strip() == "net_setup 10.0.0.2/24 10.0.0.1 1500"
    )
    assert files[0] == ("f0", b"127.0.0.1 localhost\n", 0o644)
    with pytest.raises(InvalidArgument, match="does not exist"):
        bundle.guest_config({"mounts": [{"destination": "/x", "type": "bind", "source": "/no/such"}]}, plan)


def test_guest_config_nested_mounts_get_their_own_fstab_and_ro_binds_a_remount(tmp_path: Path) -> None:
    """A mount point under an earlier mount of the same table must be made after that mount: a new table."""
    (tmp_path / "v").mkdir()
    (tmp_path / "f").write_text("x")
    spec = {
        "mounts": [
            {"destination": "/a b", "type": "tmpfs", "source": "tmpfs", "options": []},
            {"destination": "/a b/c", "type": "bind", "source": str(tmp_path / "v"), "options": ["rbind"]},
            {
                "destination": "/dev/f",
                "type": "bind",
                "source": str(tmp_path / "f"),
                "options": ["rbind", "ro"],
            },
        ]
    }
    plan = bundle.Plan(id="c", bundle="b", rootfs="r", rootfs_transport="virtiofs", root_readonly=True,
                       memory_mib=256, cpus=1)  # fmt: skip
    config, files = bundle.guest_config(spec, plan)
    body = [line.strip() for line in config.splitlines()[1:-1]]
    assert body == ["mounts /files/fstab0 /proc/ /sys/ /dev/ '/a b/'",
                    "mounts /files/fstab1 '/a b/c/' /dev/f", "remount_ro /dev/f"]  # fmt: skip
    tables = {name: data.decode() for name, data, _ in files if name.startswith("fstab")}
    assert tables["fstab0"].splitlines()[3] == "rootfs /newroot virtiofs ro 0 0"
    assert tables["fstab0"].splitlines()[-1] == "tmpfs /newroot/a\\040b tmpfs defaults 0 0"
    assert tables["fstab1"].splitlines() == ["vol0 /newroot/a\\040b/c virtiofs rw 0 0",
                                             "/files/f0 /newroot/dev/f none bind 0 0"]  # fmt: skip


def test_guest_config_makes_mount_points_in_the_rootfs_with_its_symlinks_resolved_there(
    tmp_path: Path,
) -> None:
    """The guest would resolve an absolute symlink against its initramfs: the host resolves it inside the
    rootfs and makes what is missing; a point inside an earlier mount (here a tmpfs) is left to the guest."""
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "proc").mkdir()
    (root / "etc" / "resolv.conf").symlink_to("/run/resolv.conf")
    (root / "etc" / "hostname").symlink_to("../../../../host-file")  # '..' stops at the rootfs
    (root / "vol").symlink_to("/srv/data")
    (tmp_path / "f").write_text("x")
    (tmp_path / "v").mkdir()
    bind = {"type": "bind", "source": str(tmp_path / "f"), "options": ["rbind"]}
    spec = {
        "mounts": [
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": []},
            {"destination": "/etc/resolv.conf", **bind},
            {"destination": "/etc/hostname", **bind},
            {"destination": "/vol", "type": "bind", "source": str(tmp_path / "v"), "options": ["rbind"]},
        ]
    }
    plan = bundle.Plan(id="c", bundle="b", rootfs=str(root), rootfs_transport="virtiofs", root_readonly=False,
                       memory_mib=256, cpus=1)  # fmt: skip
    config, files = bundle.guest_config(spec, plan, host_mount_points=True)
    body = [line.strip() for line in config.splitlines()[1:-1]]
    assert body == ["mounts /files/fstab0", "mounts /files/fstab1 /run/resolv.conf"]
    assert sorted(p.name for p in root.iterdir()) == [
        "dev",
        "etc",
        "host-file",
        "proc",
        "run",
        "srv",
        "sys",
        "vol",
    ]
    assert (
        (root / "host-file").is_file()
        and (root / "srv" / "data").is_dir()
        and not list((root / "run").iterdir())
    )
    tables = {name: data.decode().splitlines() for name, data, _ in files if name.startswith("fstab")}
    assert tables["fstab0"][-1] == "tmpfs /newroot/run tmpfs defaults 0 0"
    assert tables["fstab1"] == ["/files/f0 /newroot/run/resolv.conf none bind 0 0",
                                "vol0 /newroot/srv/data virtiofs rw 0 0"]  # fmt: skip
    # a file outside the guest's mounts is bound on the host, by the rootfs share's virtiofsd (shim.py)
    assert plan.root_files == [[str(tmp_path / "f"), "/host-file", False]]
    assert [name for name, _, _ in files if not name.startswith("fstab")] == ["f0"]
    (root / "etc" / "hosts").mkdir()
    with pytest.raises(InvalidArgument, match="the image has a directory there"):
        bundle.guest_config({"mounts": [{"destination": "/etc/hosts", **bind}]}, plan, host_mount_points=True)


def test_resources_become_guest_ram_and_vcpus() -> None:
    spec = {
        "linux": {"resources": {"memory": {"limit": 512 << 20}, "cpu": {"quota": 150000, "period": 100000}}}
    }
    assert bundle.resources(spec) == (512, min(2, os.cpu_count() or 1))
    assert bundle.resources({}) == (qemu.DEFAULT_MEMORY_MIB, 1)
    with pytest.raises(InvalidArgument, match="at least 64m"):
        bundle.resources({"linux": {"resources": {"memory": {"limit": 32 << 20}}}})


def test_qemu_command_line(tmp_path: Path) -> None:
    if not shutil.which(qemu.BINARY):
        pytest.skip("qemu-system-x86_64 is not installed")
    tcg = qemu.Machine(kernel=tmp_path / "vmlinux", initrd=tmp_path / "initrd", memory_mib=512, cpus=2,
                       port_fds={"ctl": 7, "tty0": 8}).argv()  # fmt: skip
    append = tcg[tcg.index("-append") + 1]
    assert tcg[tcg.index("-M") + 1].startswith("microvm") and "-nodefaults" in tcg
    assert tcg[tcg.index("-m") + 1] == "512M" and tcg[tcg.index("-smp") + 1] == "2"
    assert "tsc_early_khz=" in append and "panic=-1" in append
    assert (
        "virtconsole,chardev=p-tty0,name=tty0,nr=5" in tcg
        and "virtserialport,chardev=p-ctl,name=ctl,nr=1" in tcg
    )
    kvm = qemu.Machine(kernel=tmp_path / "vmlinux", initrd=tmp_path / "initrd", accel="kvm").argv()
    assert "tsc_early_khz" not in kvm[kvm.index("-append") + 1] and kvm[kvm.index("-cpu") + 1] == "host"


def test_module_order_puts_dependencies_first() -> None:
    modules = sorted(kernel.download_cache().glob("test-assets/kernel/*/modules"))
    if not modules:
        pytest.skip("no unpacked guest kernel (the VM integration tests fetch one)")
    names = [p.name for p in kernel.load_order(modules[-1], ("virtio_blk", "virtiofs", "virtio_net"))]
    assert names.index("virtio_ring.ko") < names.index("virtio.ko") < names.index("virtio_blk.ko")
    assert names.index("fuse.ko") < names.index("virtiofs.ko")
    assert names.index("failover.ko") < names.index("net_failover.ko") < names.index("virtio_net.ko")


def test_engine_flags_choose_the_vm_runtime() -> None:
    hc = host_config(RunOptions(image="busybox", isolation="vm", vm_accel="tcg"))
    assert (hc["Runtime"], hc["Isolation"], hc["VmAccel"]) == ("vm", "vm", "tcg")
    assert host_config(RunOptions(image="busybox", runtime="vm"))["Isolation"] == "vm"
    with pytest.raises(InvalidArgument, match="need --isolation=vm"):
        host_config(RunOptions(image="busybox", vm_accel="kvm"))
    with pytest.raises(InvalidArgument, match="conflicting"):
        host_config(RunOptions(image="busybox", isolation="vm", runtime="crun"))
    with pytest.raises(InvalidArgument, match="invalid --isolation"):
        host_config(RunOptions(image="busybox", isolation="hyperv"))


def test_guest_processes_are_shown_in_ps_ef_columns() -> None:
    from intermodal.engine.containers.top import ps_ef_row
    from intermodal.isolation.microvm.lifecycle import _tty_name
    from intermodal.isolation.oci import GuestProcess

    assert [_tty_name(n) for n in (0, (229 << 8) | 1, (136 << 8) | 3, (4 << 8) | 64, (5 << 8) | 1)] == [
        "?", "hvc1", "pts/3", "ttyS0", "console",
    ]  # fmt: skip
    now = time.mktime((2026, 12, 1, 12, 0, 0, 0, 0, -1))
    day = GuestProcess(pid=7, ppid=1, uid=0, started=now - 2 * 86400 - 10, cpu_seconds=90061.5, tty="?",
                       command="sleep 1000")  # fmt: skip
    assert ps_ef_row(day, {0: "root"}, now) == [
        "root",
        "7",
        "1",
        "52",
        "Nov29",
        "?",
        "1-01:01:01",
        "sleep 1000",
    ]
    fresh = GuestProcess(pid=8, ppid=7, uid=1000, started=now - 60, cpu_seconds=1.2, tty="hvc0", command="sh")
    assert ps_ef_row(fresh, {0: "root"}, now) == ["1000", "8", "7", "2", "11:59", "hvc0", "00:00:01", "sh"]


def test_the_shim_relays_kill_and_resize_to_the_agents_shell_only_as_numbers() -> None:
    from intermodal.isolation.microvm.shim import relayable

    assert relayable(b"kill 1 15".split()) and relayable(b"resize 0 50 132".split())
    for bad in (
        b"kill 1",
        b"kill 1 15 2",
        b"kill 1 TERM",
        b"resize ../x 1 2",
        b"resize 0 5;reboot 2",
        b"ps",
        b"",
    ):
        assert not relayable(bad.split()), bad
