"""Bridges and veth pairs over netlink (pyroute2).

pyroute2's package `__init__` imports its whole toolbox (NDB, IPDB, conntrack, a CLI): 300+ ms here. Only
`pyroute2.iproute.linux` is needed, so the package is registered without running its `__init__`, which
cuts the import to what IPRoute itself needs; it is loaded only when a container gets a network."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import ipaddress
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from intermodal.errors import IntermodalError
from intermodal.net import netns


@functools.cache
def _iproute_class() -> Any:
    if "pyroute2" not in sys.modules:
        spec = importlib.util.find_spec("pyroute2")
        if spec is None or spec.submodule_search_locations is None:
            raise IntermodalError("pyroute2 is not installed: reinstall intermodal (make install)")
        package = types.ModuleType("pyroute2")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["pyroute2"] = package
    from pyroute2.iproute.linux import IPRoute

    return IPRoute


@contextlib.contextmanager
def iproute() -> Iterator[Any]:
    """An rtnetlink socket in the calling thread's network namespace."""
    ipr = _iproute_class()()
    try:
        yield ipr
    finally:
        ipr.close()


def _error(what: str, e: Exception) -> IntermodalError:
    code = getattr(e, "code", 0)
    reason = os.strerror(code) if code else str(e)
    return IntermodalError(f"{what}: {reason}")


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def exists(name: str) -> bool:
    with iproute() as ipr:
        return _index(ipr, name) is not None


def ensure_bridge(name: str, gateway: str, prefixlen: int) -> None:
    """The bridge with the gateway address, up; `route_localnet` lets DNAT'ed 127.0.0.1 traffic leave
    through it (published ports reachable on localhost without a proxy process)."""
    with iproute() as ipr:
        index = _index(ipr, name)
        try:
            if index is None:
                ipr.link("add", ifname=name, kind="bridge")
                index = _index(ipr, name)
            have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index, family=2)}
            if gateway not in have:
                ipr.addr("add", index=index, address=gateway, prefixlen=prefixlen)
            ipr.link("set", index=index, state="up")
        except Exception as e:
            raise _error(f"cannot set up bridge {name}", e) from None
    Path(f"/proc/sys/net/ipv4/conf/{name}/route_localnet").write_text("1")


def delete(name: str) -> None:
    """Delete a link if it exists (deleting one end of a veth pair deletes both)."""
    with iproute() as ipr:
        index = _index(ipr, name)
        if index is not None:
            with contextlib.suppress(Exception):  # raced with the kernel removing it (namespace gone)
                ipr.link("del", index=index)


def add_endpoint(
    host_name: str,
    bridge: str,
    namespace: Path,
    ifname: str,
    address: str,
    prefixlen: int,
    mac: str,
    gateway: str | None,
) -> None:
    """A veth pair: `host_name` enslaved to `bridge`, its peer `ifname` in the namespace with the address,
    the MAC and (unless the network is internal) a default route through the gateway."""
    fd = os.open(namespace, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with iproute() as ipr:
            try:
                ipr.link("add", ifname=host_name, kind="veth", peer={"ifname": ifname, "net_ns_fd": fd})
                ipr.link("set", index=_index(ipr, host_name), master=_index(ipr, bridge), state="up")
            except Exception as e:
                raise _error(f"cannot create the veth pair {host_name}", e) from None
    finally:
        os.close(fd)

    def configure() -> None:
        with iproute() as ipr:
            index = _index(ipr, ifname)
            try:
                ipr.link("set", index=index, address=mac, state="up")
                ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
                if gateway:
                    ipr.route("add", dst="0.0.0.0/0", gateway=gateway)
            except Exception as e:
                raise _error(f"cannot configure {ifname} in the container", e) from None

    netns.run_in(namespace, configure)


def remove_in(namespace: Path, ifname: str) -> None:
    """Remove `ifname` from a container's namespace (network disconnect of a running container)."""
    netns.run_in(namespace, lambda: delete(ifname))


def host_networks() -> list[ipaddress.IPv4Network]:
    """Subnets of the host's IPv4 addresses and routes, which a new network must not overlap."""
    out = []
    with iproute() as ipr:
        for route in ipr.get_routes(family=2):
            dst = route.get_attr("RTA_DST")
            if dst and route["dst_len"] > 0:
                out.append(ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False))
    return [n for n in out if isinstance(n, ipaddress.IPv4Network) and not n.is_loopback]
