"""Address leases, the firewall's apply-only-on-change, and rtnetlink message encoding (no kernel needed)."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest

from intermodal.errors import Conflict
from intermodal.net import firewall, ipam, rtnl

SUBNET = ipaddress.IPv4Network("10.9.8.0/29")  # hosts .1-.6; .1 is the gateway
GATEWAY = ipaddress.IPv4Address("10.9.8.1")


def test_addresses_go_round_robin_so_a_released_one_is_reused_last(tmp_path: Path) -> None:
    store = ipam.LeaseStore(tmp_path)
    first = store.allocate("n", SUBNET, GATEWAY, "a")
    store.release("n", "a")
    second = store.allocate("n", SUBNET, GATEWAY, "b")
    assert (str(first), str(second)) == ("10.9.8.2", "10.9.8.3")
    got = [str(store.allocate("n", SUBNET, GATEWAY, c)) for c in "cdef"]
    assert got == ["10.9.8.4", "10.9.8.5", "10.9.8.6", "10.9.8.2"], "wraps around to the freed address"
    with pytest.raises(Conflict, match="no free address"):
        store.allocate("n", SUBNET, GATEWAY, "g")
    with pytest.raises(Conflict, match="already in use"):
        store.allocate("n", SUBNET, GATEWAY, "h", ipaddress.IPv4Address("10.9.8.3"))


def test_firewall_sends_the_table_only_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    monkeypatch.setattr(firewall, "_run", sent.append)
    monkeypatch.setattr(firewall, "enable_forwarding", lambda: None)
    monkeypatch.setattr(firewall, "_nft", lambda required=True: "/usr/sbin/nft")
    applied = tmp_path / "firewall.applied"
    bridge = [firewall.Bridge("imx", "10.9.8.0/29", False)]
    forward = [firewall.Forward("127.0.0.1", "tcp", 8080, "10.9.8.2", 80)]
    firewall.apply("t", [], [], applied)
    assert sent == [], "no table was ever made: nothing to delete"
    firewall.apply("t", bridge, [], applied)
    firewall.apply("t", bridge, [], applied)
    assert len(sent) == 1 and 'oifname != "imx" masquerade' in sent[0]
    firewall.apply("t", bridge, forward, applied)
    assert len(sent) == 2 and "127.0.0.1 . tcp . 8080 : 10.9.8.2 . 80" in sent[1]
    firewall.apply("t", bridge, forward, applied, force=True)
    assert len(sent) == 3, "force (network reload) always sends"
    firewall.apply("t", [], [], applied)
    assert sent[-1] == "table ip t {}\ndelete table ip t\n" and not applied.exists()


def test_rtattr_is_padded_and_nests() -> None:
    assert rtnl.attr(3, "eth0") == struct.pack("=HH", 9, 3) + b"eth0\0" + b"\0" * 3
    assert rtnl.attr(10, 7) == struct.pack("=HHI", 8, 10, 7)
    inner = rtnl.attr(1, "veth")
    nested = rtnl.attr(18, [inner])
    assert nested == struct.pack("=HH", 4 + len(inner), 18) + inner
    assert len(rtnl.ifinfo(5, up=True)) == 16


def test_attrs_parse_back_what_attr_builds_and_the_redirect_nests_like_tc() -> None:
    body = rtnl.attr(3, "eth0") + rtnl.attr(4, 1400) + rtnl.attr(0x8000 | 18, [rtnl.attr(1, "veth")])
    parsed = rtnl.attrs(body)
    assert parsed[3] == b"eth0\0" and struct.unpack("=I", parsed[4]) == (1400,)
    assert rtnl.attrs(parsed[18]) == {1: b"veth\0"}, "NLA_F_NESTED is masked off the type"
    sent: list[tuple[int, int, bytes]] = []

    class Recorder(rtnl.Rtnl):
        def __init__(self) -> None:  # no socket
            pass

        def request(self, kind: int, flags: int, body: bytes) -> list[bytes]:
            sent.append((kind, flags, body))
            return []

    Recorder().add_redirect(5, 7)
    ((kind, _, body),) = sent
    family, ifindex, handle, parent, info = struct.unpack_from("=BxxxiIII", body)
    assert (kind, ifindex, parent, info) == (44, 5, 0xFFFF0000, 0x0300), (
        "RTM_NEWTFILTER, ingress, protocol all"
    )
    top = rtnl.attrs(body, 20)
    assert top[1] == b"u32\0"
    u32 = rtnl.attrs(top[2])
    assert u32[5][:3] == b"\x01\x00\x01", "TC_U32_TERMINAL, one key"
    action = rtnl.attrs(rtnl.attrs(u32[7])[1])
    assert action[1] == b"mirred\0"
    parms = rtnl.attrs(action[2])[2]
    assert struct.unpack("=IIiiiiI", parms)[2:] == (4, 0, 0, 1, 7), "stolen, egress redirect to link 7"
