"""Bridges, veth pairs and taps: the engine's operations on links, over the small rtnetlink client in `rtnl`
(a tap through /dev/net/tun: rtnetlink cannot make one)."""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import socket
import struct
from pathlib import Path

from intermodal.errors import IntermodalError
from intermodal.net import netns
from intermodal.net.rtnl import Rtnl, index_of


def _error(what: str, e: OSError) -> IntermodalError:
    return IntermodalError(f"{what}: {e.strerror or e}")


def ensure_bridge(name: str, gateway: str, prefixlen: int, mtu: int = 0, alias: str = "") -> None:
    """The bridge with the gateway address, up; `route_localnet` lets DNAT'ed 127.0.0.1 traffic leave
    through it (published ports reachable on localhost without a proxy process)."""
    with Rtnl() as nl:
        try:
            index = index_of(name)
            if index is None:
                nl.add_bridge(name)
                index = index_of(name)
            assert index is not None
            if mtu and _read(name, "mtu") != str(mtu):
                nl.set_mtu(index, mtu)
            if alias and _read(name, "ifalias") != alias:  # also a bridge made before bridges had aliases
                nl.set_alias(index, alias)
            try:
                nl.add_address(index, gateway, prefixlen)
            except FileExistsError:
                pass
            nl.set_up(index)
        except OSError as e:
            raise _error(f"cannot set up bridge {name}", e) from None
    Path(f"/proc/sys/net/ipv4/conf/{name}/route_localnet").write_text("1")


def _read(name: str, attribute: str) -> str:
    """A link's sysfs attribute ("" if the link is gone)."""
    try:
        return Path(f"/sys/class/net/{name}/{attribute}").read_text().strip()
    except OSError:
        return ""


def aliases(prefix: str) -> dict[str, str]:
    """Interfaces whose alias (`ip link set NAME alias …`) starts with `prefix`: name -> alias."""
    out = {}
    for entry in os.scandir("/sys/class/net"):
        alias = _read(entry.name, "ifalias")
        if alias.startswith(prefix):
            out[entry.name] = alias
    return out


def delete(name: str) -> None:
    """Delete a link if it exists (deleting one end of a veth pair deletes both)."""
    index = index_of(name)
    if index is None:
        return
    with Rtnl() as nl:
        try:
            nl.delete_link(index)
        except OSError as e:  # ENODEV: raced with the kernel removing it (its namespace is gone)
            if e.errno != errno.ENODEV:
                raise _error(f"cannot delete {name}", e) from None


def add_endpoint(
    host_name: str,
    bridge: str,
    namespace: Path,
    ifname: str,
    address: str,
    prefixlen: int,
    mac: str,
    gateway: str | None,
    mtu: int = 0,
) -> None:
    """A veth pair: `host_name` enslaved to `bridge`, its peer `ifname` in the namespace with the address,
    the MAC and (unless the network is internal) a default route through the gateway."""
    master = index_of(bridge)
    if master is None:
        raise IntermodalError(f"bridge {bridge} is gone: run the command again to recreate it")
    fd = os.open(namespace, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with Rtnl() as nl:
            try:
                nl.add_veth(host_name, master, ifname, fd, mac, mtu)
            except FileExistsError:  # the previous run's pair, which the kernel has not destroyed yet
                delete(host_name)
                nl.add_veth(host_name, master, ifname, fd, mac, mtu)
    except OSError as e:
        raise _error(f"cannot create the veth pair {host_name}", e) from None
    finally:
        os.close(fd)

    def configure() -> None:
        index = index_of(ifname)
        assert index is not None
        with Rtnl() as nl:
            nl.set_up(index)
            nl.add_address(index, address, prefixlen)
            if gateway:
                nl.add_default_route(gateway)

    try:
        netns.run_in(namespace, configure)
    except OSError as e:
        raise _error(f"cannot configure {ifname} in the container", e) from None


# if_tun.h
_TUNSETIFF, _TUNSETPERSIST = 0x400454CA, 0x400454CB
_IFF_TAP, _IFF_NO_PI = 0x0002, 0x1000


def add_tap(name: str) -> None:
    """A persistent tap `name`, down, in the calling thread's network namespace (the one /dev/net/tun is
    opened in), as `ip tuntap add NAME mode tap` makes it; whoever opens it by name later (QEMU) attaches
    to it, and it goes with its namespace."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        ifreq = struct.pack("=16sH22x", name.encode(), _IFF_TAP | _IFF_NO_PI)  # struct ifreq: 40 bytes
        fcntl.ioctl(fd, _TUNSETIFF, ifreq)
        fcntl.ioctl(fd, _TUNSETPERSIST, 1)
    finally:
        os.close(fd)


def host_networks() -> list[ipaddress.IPv4Network]:
    """Subnets the host routes to (its main IPv4 table, /proc/net/route), which a new network must not overlap."""
    out = []
    with open("/proc/net/route") as f:
        next(f)
        for line in f:
            fields = line.split()
            dst, mask = (socket.inet_ntoa(struct.pack("=I", int(v, 16))) for v in (fields[1], fields[7]))
            network = ipaddress.IPv4Network(f"{dst}/{mask}", strict=False)
            if network.prefixlen > 0 and not network.is_loopback:
                out.append(network)
    return out
