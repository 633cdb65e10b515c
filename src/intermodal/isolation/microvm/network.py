"""The VM's network: the engine gives the bundle a network namespace whose eth0 (a veth on the container's
bridge) carries the container's address, routes, published ports and DNS names. The guest's virtio-net NIC
takes that place: a tap next to eth0 and a tc filter on each redirecting every frame to the other (Kata
Containers' "tcfilter" model), the NIC using eth0's MAC and the guest eth0's address and default route. So
everything the engine set up for a container (DNAT of -p, aardvark-dns names, isolation) applies as is.

All of it is netlink (and one ioctl for the tap) from a thread inside the namespace (`netns.run_in`): the
two `nsenter sh -c` shells of `ip`/`tc` commands it took before cost 20-45 ms of every boot, this ≈1 ms."""

from __future__ import annotations

import errno
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from intermodal.errors import IntermodalError
from intermodal.net import links, netns
from intermodal.net.rtnl import Rtnl, index_of

TAP = "tap0"
ETH = "eth0"


@dataclass
class Nic:
    mac: str
    address: str  # CIDR
    gateway: str
    mtu: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def netns_path(spec: dict[str, Any]) -> str:
    """The network namespace the engine made for the container ("" for none or the host's)."""
    for ns in (spec.get("linux") or {}).get("namespaces") or []:
        if ns.get("type") == "network":
            return str(ns.get("path") or "")
    return ""


def prepare(netns_path: str) -> Nic | None:
    """Bridge a tap to the namespace's eth0; None when there is no eth0 with IPv4 (--network none)."""
    try:
        return netns.run_in(Path(netns_path), _mirror)
    except OSError as e:
        raise IntermodalError(
            f"cannot connect the VM to the container's network: {e.strerror or e}"
        ) from None


def _mirror() -> Nic | None:
    """In the namespace: read eth0, make the tap (a stale one from an earlier boot goes first) and the two
    redirects."""
    eth = index_of(ETH)
    if eth is None:
        return None
    with Rtnl() as nl:
        mac, mtu = nl.link(eth)
        inet = nl.ipv4_addresses(eth)
        if not inet:
            return None
        nic = Nic(mac=mac, address=f"{inet[0][0]}/{inet[0][1]}", gateway=nl.default_gateway(), mtu=mtu)
        stale = index_of(TAP)
        if stale is not None:
            nl.delete_link(stale)
        try:
            nl.delete_ingress_qdisc(eth)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOENT):
                raise
        links.add_tap(TAP)
        tap = index_of(TAP)
        assert tap is not None
        nl.set_mtu(tap, mtu)
        nl.set_up(tap)
        for source, target in ((eth, tap), (tap, eth)):
            nl.add_ingress_qdisc(source)
            nl.add_redirect(source, target)
    return nic
