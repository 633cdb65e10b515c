"""The rtnetlink client against the real kernel, inside two network namespaces the test makes (a "host"
with the bridge, a "container" with the veth peer): nothing touches the machine's own links."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

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
