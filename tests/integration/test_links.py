"""The rtnetlink client (and the tap of a VM's NIC) against the real kernel, inside two network namespaces
the test makes (a "host" with the bridge, a "container" with the veth peer): nothing touches the machine's
own links."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import select
import struct
import subprocess
import time
from pathlib import Path

import pytest

from intermodal.isolation.microvm import network
from intermodal.net import links, netns

pytestmark = pytest.mark.root


def ip_json(ns: Path, *args: str) -> list[dict]:
    out = subprocess.run(
        ["nsenter", f"--net={ns}", "ip", "-j", *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_bridge_and_veth_pair_are_made_and_removed(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    host, box = tmp_path / "host", tmp_path / "box"
    netns.create(host)
    netns.create(box)
    try:
        netns.run_in(host, lambda: links.ensure_bridge("imtbr", "10.77.0.1", 24))
        netns.run_in(host, lambda: links.ensure_bridge("imtbr", "10.77.0.1", 24))  # idempotent
        netns.run_in(
            host,
            lambda: links.add_endpoint(
                "vimt", "imtbr", box, "eth0", "10.77.0.2", 24, "02:42:0a:4d:00:02", "10.77.0.1"
            ),
        )
        bridge = next(link for link in ip_json(host, "addr") if link["ifname"] == "imtbr")
        assert "UP" in bridge["flags"]
        assert [a["local"] for a in bridge["addr_info"] if a["family"] == "inet"] == ["10.77.0.1"]
        veth = next(link for link in ip_json(host, "link") if link["ifname"] == "vimt")
        assert veth["master"] == "imtbr" and "UP" in veth["flags"]
        eth0 = next(link for link in ip_json(box, "addr") if link["ifname"] == "eth0")
        assert eth0["address"] == "02:42:0a:4d:00:02" and "UP" in eth0["flags"]
        assert [a["local"] for a in eth0["addr_info"] if a["family"] == "inet"] == ["10.77.0.2"]
        assert ip_json(box, "route", "show", "default")[0]["gateway"] == "10.77.0.1"
        ping = subprocess.run(
            ["nsenter", f"--net={box}", "busybox", "ping", "-c", "1", "-W", "2", "10.77.0.1"],
            capture_output=True,
        )
        assert ping.returncode == 0, "the container side reaches the bridge's address"
        netns.run_in(host, lambda: links.delete("vimt"))
        assert not [link for link in ip_json(host, "link") if link["ifname"] == "vimt"]
        assert not [link for link in ip_json(box, "link") if link["ifname"] == "eth0"], "the peer went too"
    finally:
        netns.remove(box)
        netns.remove(host)


def test_a_vm_tap_is_mirrored_to_the_containers_eth0(tmp_path: Path) -> None:
    """isolation/microvm/network.prepare: eth0's facts read over netlink, a tap made through /dev/net/tun and
    the two tc redirects; frames cross both ways (the test attaches to the tap as QEMU does)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    host, box = tmp_path / "host", tmp_path / "box"
    netns.create(host)
    netns.create(box)
    mac = "02:42:0a:4d:00:02"
    try:
        netns.run_in(host, lambda: links.ensure_bridge("imtbr", "10.77.0.1", 24))
        netns.run_in(
            host,
            lambda: links.add_endpoint("vimt", "imtbr", box, "eth0", "10.77.0.2", 24, mac, "10.77.0.1", 1400),
        )
        assert network.prepare(str(box)) == network.Nic(mac, "10.77.0.2/24", "10.77.0.1", 1400)
        nic = network.prepare(str(box))  # again: the stale tap and redirects are replaced
        assert nic is not None
        tap = next(link for link in ip_json(box, "-d", "link") if link["ifname"] == network.TAP)
        assert tap["linkinfo"]["info_kind"] == "tun" and tap["mtu"] == 1400 and "UP" in tap["flags"]
        tap_fd = netns.run_in(box, _attach_tap)
        try:
            bridge_mac = next(link for link in ip_json(host, "link") if link["ifname"] == "imtbr")["address"]
            ping = subprocess.Popen(["nsenter", f"--net={host}", "busybox", "ping", "-c", "1", "-W", "2", "10.77.0.2"],
                                    stdout=subprocess.DEVNULL)  # fmt: skip
            request = _read_arp(tap_fd)
            assert request[20:22] == b"\x00\x01" and request[38:42] == bytes([10, 77, 0, 2]), "eth0 -> tap"
            os.write(tap_fd, _arp_reply(mac, "10.77.0.2", bridge_mac, "10.77.0.1"))
            ping.wait(5)
            neigh = ip_json(host, "neigh", "show", "10.77.0.2")
            assert neigh and neigh[0].get("lladdr") == mac, "tap -> eth0: the host learnt the guest's answer"
        finally:
            os.close(tap_fd)
    finally:
        netns.remove(box)
        netns.remove(host)


def _attach_tap() -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    fcntl.ioctl(fd, 0x400454CA, struct.pack("=16sH22x", b"tap0", 0x0002 | 0x1000))  # TUNSETIFF, IFF_TAP|NO_PI
    return fd


def _read_arp(fd: int) -> bytes:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        select.select([fd], [], [], 0.1)
        with contextlib.suppress(BlockingIOError):
            frame = os.read(fd, 2048)
            if frame[12:14] == b"\x08\x06":
                return frame
    raise AssertionError("no ARP request reached the tap")


def _arp_reply(mac: str, ip: str, to_mac: str, to_ip: str) -> bytes:
    sender, target = bytes.fromhex(mac.replace(":", "")), bytes.fromhex(to_mac.replace(":", ""))
    header = target + sender + b"\x08\x06"
    arp = b"\x00\x01\x08\x00\x06\x04\x00\x02" + sender + ipaddress.IPv4Address(ip).packed
    return header + arp + target + ipaddress.IPv4Address(to_ip).packed
