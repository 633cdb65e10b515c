"""The VM's network: the engine gives the bundle a network namespace whose eth0 (a veth on the container's
bridge) carries the container's address, routes, published ports and DNS names. The guest's virtio-net NIC
takes that place: a tap next to eth0 and a tc filter on each redirecting every frame to the other (Kata
Containers' "tcfilter" model), the NIC using eth0's MAC and the guest eth0's address and default route. So
everything the engine set up for a container (DNAT of -p, aardvark-dns names, isolation) applies as is.

u32 `match u8 0 0` is the match-everything classifier: matchall is often not built (it is not here)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

from intermodal.errors import IntermodalError

TAP = "tap0"


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


def _in_netns(netns: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={netns}", "sh", "-c", script], capture_output=True, text=True)


def prepare(netns: str) -> Nic | None:
    """Bridge a tap to the namespace's eth0; None when there is no eth0 with IPv4 (--network none)."""
    facts = _in_netns(netns, "ip -j addr show dev eth0 2>/dev/null || echo []; ip -j -4 route show default")
    if facts.returncode != 0:
        raise IntermodalError(f"cannot read the container's network: {facts.stderr.strip()}")
    decoder = json.JSONDecoder()
    links, end = decoder.raw_decode(facts.stdout)
    routes = json.loads(facts.stdout[end:].strip() or "[]")
    inet = [a for link in links for a in link.get("addr_info", []) if a.get("family") == "inet"]
    if not links or not inet:
        return None
    nic = Nic(mac=links[0]["address"], address=f"{inet[0]['local']}/{inet[0]['prefixlen']}",
              gateway=routes[0].get("gateway", "") if routes else "", mtu=int(links[0].get("mtu", 1500)))  # fmt: skip
    redirect = "protocol all u32 match u8 0 0 action mirred egress redirect dev"
    setup = _in_netns(
        netns,
        f"""set -e
ip link del {TAP} 2>/dev/null || true
tc qdisc del dev eth0 ingress 2>/dev/null || true
ip tuntap add dev {TAP} mode tap
ip link set {TAP} mtu {nic.mtu} up
tc qdisc add dev eth0 ingress
tc filter add dev eth0 parent ffff: {redirect} {TAP}
tc qdisc add dev {TAP} ingress
tc filter add dev {TAP} parent ffff: {redirect} eth0""",
    )
    if setup.returncode != 0:
        raise IntermodalError(f"cannot connect the VM to the container's network: {setup.stderr.strip()}")
    return nic
