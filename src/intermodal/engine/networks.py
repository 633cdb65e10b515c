"""Networks: Docker's network objects (`network create|ls|inspect|rm|prune|connect|disconnect`), the default
`bridge` network, and what a container gets when it starts (`attach`) and gives back when it stops
(`detach`). Modes: a bridge network (default or user-defined), `none` (loopback only), `host`,
`container:NAME` (join that container's namespace).

Daemonless like the rest of the engine: every piece of network state is on disk (`$ROOT/networks/<id>/`
network.json + leases.json, namespaces pinned under `$ROOT/netns/<container id>`), derived resources are
named after the container, and `gc()` releases the network of any container whose monitor is gone (killed
with -9, or a CLI killed mid-`run`) on the next command. A bridge comes up with its network's first
container and stays up until the network is removed (the default one until `system reset`), like Docker's
docker0; the nftables table exists while any bridge does.

Engine config (`$ROOT/config.json`, key "network"): bridge (default bridge name), subnet (its subnet;
env INTERMODAL_BRIDGE_SUBNET overrides), pool (where user networks get /24s), table (nftables table name),
userland_proxy (publish ports through docker-proxy so the host's INPUT firewall applies)."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import ipaddress
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intermodal.engine.containers.record import ContainerRecord, ContainerStore
from intermodal.engine.root import DEFAULT_ROOT
from intermodal.errors import Conflict, IntermodalError, InvalidArgument, NotFound
from intermodal.fsutil import atomic_write_json, read_json
from intermodal.lazy import lazy_import
from intermodal.net import ipam
from intermodal.net.dns import Resolver

if TYPE_CHECKING:
    from intermodal.isolation import oci
    from intermodal.net import firewall, links, netns, ports, rtnl
else:  # `--network none|host` and `ps` need none of the machinery (sockets, subprocess, netlink)
    firewall, links, netns, ports, rtnl = (
        lazy_import(f"intermodal.net.{name}") for name in ("firewall", "links", "netns", "ports", "rtnl")
    )
    oci = lazy_import("intermodal.isolation.oci")
from intermodal.runtime.state import process_start_time

DEFAULT = "bridge"
PREDEFINED = (DEFAULT, "host", "none")
# Docker's bridge driver options (`network create -o KEY=VALUE`); others are kept in Options, as Docker does.
BRIDGE_NAME = "com.docker.network.bridge.name"
MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
ICC = "com.docker.network.bridge.enable_icc"
MTU = "com.docker.network.driver.mtu"
_IFNAME = re.compile(r"^[a-zA-Z0-9_.-]{1,15}$")
_ALIAS = "intermodal "  # bridge alias: "intermodal <nftables table> <state root>"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_RUNNING = ("running", "paused", "restarting")


@dataclass
class NetworkConfig:
    bridge: str = "intermodal0"
    subnet: str = "10.66.0.0/16"
    pool: str = "10.67.0.0/16"
    table: str = "intermodal"
    userland_proxy: bool = False


def load_config(root: Path) -> NetworkConfig:
    """The engine config over the defaults. A root other than the default one gets its own bridge name,
    table and subnets (derived from its path), so roots that run side by side (tests, a developer's scratch
    root) never share, clobber or delete each other's bridge and rules."""
    data = (read_json(root / "config.json", {}) or {}).get("network", {})
    unknown = set(data) - set(NetworkConfig.__dataclass_fields__)
    if unknown:
        raise InvalidArgument(f"unknown network setting(s) {sorted(unknown)} in {root / 'config.json'}")
    derived: dict[str, Any] = {}
    if root != DEFAULT_ROOT:
        h = hashlib.sha256(os.fsencode(root)).digest()
        derived = {
            "bridge": f"im0-{h.hex()[:8]}", "table": f"intermodal_{h.hex()[:8]}",
            "subnet": f"10.{100 + h[0] % 100}.{h[1]}.0/24", "pool": f"10.{200 + h[2] % 50}.0.0/16",
        }  # fmt: skip
    config = NetworkConfig(**{**derived, **data})
    config.subnet = os.environ.get("INTERMODAL_BRIDGE_SUBNET") or config.subnet
    return config


@dataclass
class Attachment:
    """What the bundle needs: the namespace to join and the facts for /etc/hosts and resolv.conf."""

    namespace: str | None  # path to join; None = the host's network; "" = a new one with only lo
    addresses: list[str] = field(default_factory=list)
    nameservers: list[str] = field(default_factory=list)  # [] = the host's resolvers
    gateway: str = ""  # for --add-host NAME:host-gateway
    etc_from: str = ""  # `container:X`: X's directory, whose hosts, hostname and resolv.conf it shares


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def endpoints_config(record: ContainerRecord) -> dict[str, dict[str, Any]]:
    """The networks a container joins, primary first (`--network`, then `network connect` order)."""
    mode = record.host_config.get("NetworkMode") or DEFAULT
    configs: dict[str, dict[str, Any]] = record.host_config.get("EndpointsConfig") or {}
    if mode in ("host", "none") or mode.startswith("container:"):
        return {}
    return configs or {mode: {}}


class NetworkService:
    def __init__(self, root: Path):
        self.root = root
        self.dir = root / "networks"
        self.leases = ipam.LeaseStore(self.dir)
        self.containers = ContainerStore(root)
        self.resolver = Resolver(self.dir / "dns")
        self._config: NetworkConfig | None = None
        self._held: dict[str, list[ports.Reservation]] = {}

    @property
    def config(self) -> NetworkConfig:
        if self._config is None:
            self._config = load_config(self.root)
        return self._config

    def netns_path(self, cid: str) -> Path:
        return self.root / "netns" / cid

    # -- network objects ----------------------------------------------------------------------------------

    def _stored(self) -> list[dict[str, Any]]:
        if not self.dir.is_dir():
            return []
        out = []
        for entry in sorted(os.scandir(self.dir), key=lambda e: e.name):
            data = read_json(Path(entry.path) / "network.json") if entry.is_dir() else None
            if data:
                out.append(data)
        return out

    def _save(self, net: dict[str, Any]) -> None:
        atomic_write_json(self.dir / net["Id"] / "network.json", net)

    def _default(self) -> dict[str, Any]:
        """The `bridge` network as the engine config says; re-derived whenever nothing uses it."""
        cfg = self.config
        subnet = ipam.parse_subnet(cfg.subnet)
        stored = next((n for n in self._stored() if n["Name"] == DEFAULT), None)
        wanted = {
            "Subnet": str(subnet),
            "Gateway": str(next(subnet.hosts())),
            "Bridge": cfg.bridge,
        }
        current = stored and {**stored["IPAM"]["Config"][0], "Bridge": bridge_name(stored)}
        if stored and (current == wanted or self.leases.leases(stored["Id"])):
            return stored
        if stored:  # the config changed: the next container brings the bridge up with the new address
            links.delete(bridge_name(stored))
        net = stored or self._new(DEFAULT, {})
        net["IPAM"]["Config"] = [{"Subnet": wanted["Subnet"], "Gateway": wanted["Gateway"]}]
        net["Options"] = {
            BRIDGE_NAME: cfg.bridge,
            "com.docker.network.bridge.default_bridge": "true",
        }
        self._save(net)
        return net

    @staticmethod
    def _new(name: str, labels: dict[str, str], internal: bool = False) -> dict[str, Any]:
        return {
            "Name": name, "Id": os.urandom(32).hex(), "Created": _now(), "Scope": "local", "Driver": "bridge",
            "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": {}, "Config": []},
            "Internal": internal, "Attachable": False, "Ingress": False, "Options": {}, "Labels": labels,
        }  # fmt: skip

    def networks(self) -> list[dict[str, Any]]:
        """Every network, the default first (created on first use), with the pseudo `host` and `none`."""
        with self.leases.locked():
            return self._networks()

    def _networks(self) -> list[dict[str, Any]]:
        default = self._default()
        pseudo = [
            {**self._new(name, {}), "Id": hashlib.sha256(name.encode()).hexdigest(), "Driver": driver,
             "Created": default["Created"]}
            for name, driver in (("host", "host"), ("none", "null"))
        ]  # fmt: skip
        return [default, *pseudo, *[n for n in self._stored() if n["Name"] != DEFAULT]]

    def get(self, spec: str) -> dict[str, Any]:
        with self.leases.locked():
            return self._get(spec)

    def _get(self, spec: str) -> dict[str, Any]:
        """Docker's lookup: full ID, exact name, then unique ID prefix (the caller holds the lock)."""
        candidates = self._networks()
        for n in candidates:
            if spec in (n["Id"], n["Name"]):
                return n
        matches = [n for n in candidates if re.fullmatch(r"[a-f0-9]+", spec) and n["Id"].startswith(spec)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"network ID prefix {spec!r} is ambiguous: give more characters")
        raise NotFound(f"network {spec} not found")

    def create(
        self,
        name: str,
        *,
        subnet: str = "",
        gateway: str = "",
        internal: bool = False,
        driver: str = "bridge",
        labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
        ip_range: str = "",
        attachable: bool = False,
    ) -> dict[str, Any]:
        if driver != "bridge":
            raise InvalidArgument(f"unsupported network driver {driver!r}: only bridge is available")
        if not _NAME.match(name):
            raise InvalidArgument(
                f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )
        if name in PREDEFINED:
            raise Conflict(f"network name {name} is reserved for a predefined network: choose another name")
        if gateway and not subnet:
            raise InvalidArgument("--gateway needs --subnet: give the subnet the gateway belongs to")
        self.gc()
        with self.leases.locked():
            self._default()
            existing = self._stored()
            if any(n["Name"] == name for n in existing):
                raise Conflict(f"network with name {name} already exists: remove it or choose another name")
            taken = [(f"network {n['Name']}", _subnet(n)) for n in existing]
            if subnet:
                net_subnet = ipam.parse_subnet(subnet)
                ipam.check_overlap(net_subnet, taken)
            else:
                pool = ipam.parse_subnet(self.config.pool)
                net_subnet = ipam.free_subnet(pool, 24, [t[1] for t in taken] + links.host_networks())
            gw = ipam.parse_address(gateway, net_subnet, "gateway") if gateway else next(net_subnet.hosts())
            net = self._new(name, labels or {}, internal)
            net["Attachable"] = attachable
            net["IPAM"]["Config"] = [{"Subnet": str(net_subnet), "Gateway": str(gw)}]
            if ip_range:
                pool = ipam.parse_subnet(ip_range)
                if not pool.subnet_of(net_subnet):
                    raise InvalidArgument(f"--ip-range {pool} is not inside the subnet {net_subnet}")
                net["IPAM"]["Config"][0]["IPRange"] = str(pool)
            net["Options"] = _bridge_options(
                {BRIDGE_NAME: f"im-{net['Id'][:12]}", **(options or {})}, {bridge_name(n) for n in existing}
            )
            self._save(net)
        return net

    def remove(self, spec: str) -> str:
        self.gc()
        net = self.get(spec)
        if net["Name"] in PREDEFINED:
            raise Conflict(f"{net['Name']} is a pre-defined network and cannot be removed")
        with self.leases.locked():
            users = self.leases.leases(net["Id"])
            if users:
                names = ", ".join(sorted(u.get("name", c[:12]) for c, u in users.items()))
                raise Conflict(
                    f"network {net['Name']} has active endpoints ({names}): stop or disconnect them first"
                )
            for path in (self.dir / net["Id"]).iterdir():
                path.unlink()
            (self.dir / net["Id"]).rmdir()
            links.delete(bridge_name(net))
            self._apply_firewall()
        return str(net["Name"])

    def reload(self) -> None:
        """Send the nftables table again (after something else flushed the host's ruleset)."""
        with self.leases.locked():
            self._apply_firewall(force=True)

    def reset(self) -> None:
        """Take down every bridge, the nftables table and the resolver of this root (`system reset`; the
        caller has removed the containers first)."""
        self.gc()
        with self.leases.locked():
            for net in self._stored():
                links.delete(bridge_name(net))
                if net["Name"] != DEFAULT:
                    self.resolver.update(net["Name"], _gateway(net), [])
            firewall.drop(self.config.table)
            (self.dir / "firewall.applied").unlink(missing_ok=True)

    def prune(self) -> list[str]:
        referenced = {name for r in self.containers.all() for name in endpoints_config(r)}
        removed = []
        for net in self._stored():
            if net["Name"] not in PREDEFINED and net["Name"] not in referenced:
                with contextlib.suppress(Conflict):
                    removed.append(self.remove(net["Id"]))
        return removed

    def inspect(self, spec: str) -> dict[str, Any]:
        net = self.get(spec)
        containers = {}
        if not net["IPAM"]["Config"]:  # host, none
            return {**net, "Containers": {}}
        prefix = _subnet(net).prefixlen
        for cid, lease in self.leases.leases(net["Id"]).items():
            containers[cid] = {
                "Name": lease.get("name", ""), "EndpointID": lease.get("veth", ""), "MacAddress": lease.get("mac", ""),
                "IPv4Address": f"{lease['address']}/{prefix}", "IPv6Address": "",
            }  # fmt: skip
        return {**net, "Containers": containers}

    # -- containers ---------------------------------------------------------------------------------------

    def check(self, hc: dict[str, Any]) -> None:
        """Refuse, at `create`, networks that do not exist and per-network options they cannot take."""
        mode = hc.get("NetworkMode") or DEFAULT
        if mode.startswith("container:"):
            self.containers.resolve(mode.partition(":")[2])
            return
        for name, ep in (hc.get("EndpointsConfig") or {}).items():
            net = self.get(name)
            ip = (ep.get("IPAMConfig") or {}).get("IPv4Address")
            if net["Name"] == DEFAULT and (ip or ep.get("Aliases")):
                raise InvalidArgument(
                    "--ip and --network-alias work only on user-defined networks: create one with "
                    "`intermodal network create NAME` and use --network NAME"
                )
            if ip:
                ipam.parse_address(ip, _subnet(net), "--ip")

    def attach(self, record: ContainerRecord) -> Attachment:
        """Make the container's network before the runtime's `create`; on failure nothing is left."""
        mode = record.host_config.get("NetworkMode") or DEFAULT
        if mode == "host":
            return Attachment(None)
        if mode == "none":
            return Attachment("")
        if mode.startswith("container:"):
            return self._join(mode.partition(":")[2])
        self.gc()
        held = self._reserve_ports(record)
        try:
            with self.leases.locked():
                attachment = self._attach_locked(record, held)
        except BaseException:
            for r, _ in held:
                r.sock.close()
            self.detach(record.id)
            raise
        if not self.config.userland_proxy:
            self._held[record.id] = [r for r, _ in held]
        return attachment

    def held_fds(self, cid: str) -> list[int]:
        """Sockets that reserve this container's host ports, for its monitor to inherit."""
        return [r.sock.fileno() for r in self._held.get(cid, [])]

    def drop_held(self, cid: str) -> None:
        """Close our copies once a monitor process holds them."""
        for r in self._held.pop(cid, []):
            r.sock.close()

    def _join(self, spec: str) -> Attachment:
        target = self.containers.resolve(spec)
        if target.status not in _RUNNING:
            raise Conflict(f"cannot join the network of container {spec}: it is not running; start it first")
        tmode = target.host_config.get("NetworkMode") or DEFAULT
        if tmode == "host":
            return Attachment(None)
        if tmode.startswith("container:"):
            return self._join(tmode.partition(":")[2])
        path = self.netns_path(target.id)
        ns = str(path) if path.exists() else f"/proc/{target.state['Pid']}/ns/net"
        addresses = [lease["address"] for _, lease in self._leases_of(target.id)]
        return Attachment(ns, addresses=addresses, etc_from=str(self.containers.dir(target.id)))

    def _bindings(self, record: ContainerRecord) -> dict[str, list[dict[str, str]]]:
        bindings = {k: list(v) for k, v in (record.host_config.get("PortBindings") or {}).items()}
        if record.host_config.get("PublishAllPorts"):
            for key in record.config.get("ExposedPorts") or {}:
                bindings.setdefault(key if "/" in key else f"{key}/tcp", [{"HostIp": "", "HostPort": ""}])
        return bindings

    def _reserve_ports(self, record: ContainerRecord) -> list[tuple[ports.Reservation, int]]:
        """Bind every published host port first: a port in use fails before anything is made."""
        held: list[tuple[ports.Reservation, int]] = []
        try:
            for key, binds in self._bindings(record).items():
                port, _, proto = key.partition("/")
                for b in binds:
                    held.append(
                        (ports.reserve(b.get("HostIp", ""), proto or "tcp", b.get("HostPort", "")), int(port))
                    )
        except BaseException:
            for r, _ in held:
                r.sock.close()
            raise
        return held

    def _attach_locked(
        self, record: ContainerRecord, held: list[tuple[ports.Reservation, int]]
    ) -> Attachment:
        cid = record.id
        path = self.netns_path(cid)
        nets = [(self._get(name), ep) for name, ep in endpoints_config(record).items()]
        for i, (net, ep) in enumerate(nets):
            self._allocate(net, record, ep, f"eth{i}", primary=i == 0)
        netns.create(path)
        attachment = Attachment(str(path))
        for i, (net, _) in enumerate(nets):
            lease = self.leases.leases(net["Id"])[cid]
            self._plug(net, cid, lease, primary=i == 0)
            attachment.addresses.append(lease["address"])
            if i == 0:
                attachment.gateway = _gateway(net)
                if net["Name"] != DEFAULT:
                    attachment.nameservers = [attachment.gateway]
                published = []
                for r, port in held:
                    entry: dict[str, Any] = {
                        "host_ip": r.host_ip,
                        "proto": r.proto,
                        "host_port": r.host_port,
                        "port": port,
                    }
                    if self.config.userland_proxy:
                        entry["proxy"] = ports.start_proxy(r, lease["address"], port)
                    published.append(entry)
                self.leases.update(net["Id"], cid, ports=published)
        self._sync([n for n, _ in nets])
        return attachment

    def _allocate(
        self, net: dict[str, Any], record: ContainerRecord, ep: dict[str, Any], ifname: str, *, primary: bool
    ) -> None:
        subnet = _subnet(net)
        gateway = ipaddress.IPv4Address(_gateway(net))
        ip = (ep.get("IPAMConfig") or {}).get("IPv4Address")
        requested = ipam.parse_address(ip, subnet, "--ip") if ip else None
        within = net["IPAM"]["Config"][0].get("IPRange")
        address = self.leases.allocate(
            net["Id"], subnet, gateway, record.id, requested, ipam.parse_subnet(within) if within else None
        )
        mac = (
            ep.get("MacAddress")
            or (record.config.get("MacAddress") if primary else "")
            or ipam.mac_for(address)
        )
        names = [record.name, *(ep.get("Aliases") or []), record.id[:12]]
        veth = "vim" + hashlib.sha256(f"{record.id}/{net['Id']}".encode()).hexdigest()[:11]
        self.leases.update(
            net["Id"], record.id, mac=mac, name=record.name, names=names, veth=veth, ifname=ifname
        )

    def _plug(self, net: dict[str, Any], cid: str, lease: dict[str, Any], *, primary: bool) -> None:
        """Bridge up, veth in; only the primary network (and not an internal one) gets the default route."""
        prefix = _subnet(net).prefixlen
        mtu = int(net["Options"].get(MTU) or 0)
        if rtnl.index_of(bridge_name(net)) is None:
            self._reap_orphans()
        alias = f"{_ALIAS}{self.config.table} {self.root}"
        links.ensure_bridge(bridge_name(net), _gateway(net), prefix, mtu, alias)
        gateway = _gateway(net) if primary and not net.get("Internal") else None
        links.add_endpoint(
            lease["veth"], bridge_name(net), self.netns_path(cid), lease["ifname"], lease["address"], prefix,
            lease["mac"], gateway, mtu,
        )  # fmt: skip

    @staticmethod
    def _reap_orphans() -> None:
        """Bridges (and their roots' tables) of state roots that are gone: each bridge's alias names its root
        and table, so a root deleted without `system reset` (a test's temp dir, a scratch root) leaves
        nothing behind for longer than the next bridge any root brings up."""
        for name, alias in links.aliases(_ALIAS).items():
            table, _, root = alias.removeprefix(_ALIAS).partition(" ")
            if root and not Path(root, "networks").is_dir():
                links.delete(name)
                firewall.drop(table)

    def _leases_of(self, cid: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        out = []
        for net in self._stored():
            lease = self.leases.leases(net["Id"]).get(cid)
            if lease:
                out.append((net, lease))
        return out

    def detach(self, cid: str, *, exited: bool = False) -> None:
        """Release everything the container's network holds (idempotent; also the undo of `attach`).

        `exited`: no process of the container is left, so unpinning its namespace lets the kernel destroy the
        namespace and the veths in it in the background; deleting a veth here would wait for an RCU grace
        period (15 ms here) on every container's exit."""
        self.drop_held(cid)
        with self.leases.locked():
            self._release_locked([cid], delete_veths=not exited)

    def _release_locked(self, cids: list[str], delete_veths: bool = True) -> None:
        touched = []
        for cid in cids:
            for net, lease in self._leases_of(cid):
                self._unplug(lease, delete_veth=delete_veths)
                self.leases.release(net["Id"], cid)
                touched.append(net)
            netns.remove(self.netns_path(cid))
        if touched:
            self._sync(touched)

    @staticmethod
    def _unplug(lease: dict[str, Any], delete_veth: bool = True) -> None:
        for entry in lease.get("ports") or []:
            if entry.get("proxy"):
                ports.stop_proxy(entry["proxy"])
        if lease.get("veth") and delete_veth:
            links.delete(lease["veth"])

    def _sync(self, touched: list[dict[str, Any]]) -> None:
        """Bring the nftables table and DNS in line with the bridges and leases (under the lock)."""
        self._apply_firewall()
        seen = set()
        for net in touched:
            if net["Id"] in seen or net["Name"] == DEFAULT:
                continue
            seen.add(net["Id"])
            leases = self.leases.leases(net["Id"])
            entries = [(cid, lease["address"], lease.get("names", [])) for cid, lease in leases.items()]
            self.resolver.update(net["Name"], _gateway(net), entries)

    def _apply_firewall(self, force: bool = False) -> None:
        """The table for every network whose bridge is up and every published port. A bridge stays up from
        its network's first container until the network is removed (the default one until `system reset`),
        as Docker keeps docker0, so a container's start and stop change no rule unless it publishes ports;
        an unchanged table is not sent to nft again (`network reload` forces it)."""
        bridges, forwards = [], []
        for net in self._stored():
            if rtnl.index_of(bridge_name(net)) is None:
                continue
            masquerade = net["Options"].get(MASQUERADE, "true") == "true"
            bridges.append(
                firewall.Bridge(bridge_name(net), str(_subnet(net)), bool(net.get("Internal")), masquerade)
            )
            if net.get("Internal"):
                continue
            for lease in self.leases.leases(net["Id"]).values():
                for p in lease.get("ports") or []:
                    if p.get("proxy"):  # served by docker-proxy (userland_proxy when it started)
                        continue
                    forwards.append(
                        firewall.Forward(
                            p["host_ip"], p["proto"], p["host_port"], lease["address"], p["port"]
                        )
                    )
        firewall.apply(self.config.table, bridges, forwards, self.dir / "firewall.applied", force=force)

    # -- connect / disconnect -----------------------------------------------------------------------------

    def connect(self, spec: str, container: str, aliases: list[str], ip: str) -> None:
        """Add a network to a container's config; a running container gets the interface now."""
        net = self.get(spec)
        name = net["Name"]
        target = self.containers.resolve(container)
        with self.containers.locked(target.id):
            record = self.containers.load(target.id)
            mode = record.host_config.get("NetworkMode") or DEFAULT
            if name in ("host", "none") or mode in ("host", "none") or mode.startswith("container:"):
                raise Conflict(
                    f"container {record.name} uses network mode {mode}: it cannot join network {name}"
                )
            configs = dict(endpoints_config(record))
            if name in configs:
                raise Conflict(f"container {record.name} is already connected to network {name}")
            if record.runtime == oci.VM:  # its one NIC mirrors eth0 (isolation/microvm/network.py)
                if self._running(record):
                    raise Conflict(
                        f"cannot connect running micro-VM {record.name} to network {name}: its network "
                        "interface is fixed at boot; stop it, connect, and start it again"
                    )
                if configs:
                    raise Conflict(
                        f"micro-VM {record.name} has one network interface, on {next(iter(configs))}: "
                        "disconnect it from that network first"
                    )
            ep: dict[str, Any] = {
                "Aliases": aliases or None,
                "IPAMConfig": {"IPv4Address": ip} if ip else None,
            }
            self.check({"NetworkMode": mode, "EndpointsConfig": {name: ep}})
            if self._running(record):
                with self.leases.locked():
                    try:
                        self._allocate(
                            net, record, ep, _free_ifname(self._leases_of(record.id)), primary=False
                        )
                        self._plug(net, record.id, self.leases.leases(net["Id"])[record.id], primary=False)
                    except BaseException:
                        lease = self.leases.leases(net["Id"]).get(record.id)
                        if lease:
                            self._unplug(lease)
                            self.leases.release(net["Id"], record.id)
                        raise
                    finally:
                        self._sync([net])
            configs[name] = ep
            record.host_config["EndpointsConfig"] = configs
            record.host_config["NetworkMode"] = next(iter(configs))
            self.containers.save(record)

    def disconnect(self, spec: str, container: str) -> None:
        net = self.get(spec)
        target = self.containers.resolve(container)
        with self.containers.locked(target.id):
            record = self.containers.load(target.id)
            configs = dict(endpoints_config(record))
            if net["Name"] not in configs:
                raise NotFound(f"container {record.name} is not connected to network {net['Name']}")
            del configs[net["Name"]]
            with self.leases.locked():
                lease = self.leases.leases(net["Id"]).get(record.id)
                if lease:
                    self._unplug(lease)
                    self.leases.release(net["Id"], record.id)
                    self._sync([net])
            record.host_config["EndpointsConfig"] = configs
            record.host_config["NetworkMode"] = next(iter(configs), "none")
            self.containers.save(record)

    def _running(self, record: ContainerRecord) -> bool:
        return record.status in _RUNNING and _monitor_alive(record) and self.netns_path(record.id).exists()

    # -- views ---------------------------------------------------------------------------------------------

    def settings(self, record: ContainerRecord) -> dict[str, Any]:
        """Docker's NetworkSettings for `inspect` (empty addresses while the container is stopped)."""
        leases = {net["Name"]: (net, lease) for net, lease in self._leases_of(record.id)}
        networks: dict[str, Any] = {}
        ports_view: dict[str, Any] = {}
        mode = record.host_config.get("NetworkMode") or DEFAULT
        names = list(endpoints_config(record)) or ([mode] if mode in ("host", "none") else [])
        for name in names:
            ep = (record.host_config.get("EndpointsConfig") or {}).get(name) or {}
            net, lease = leases.get(name, ({}, {}))
            cfg = (net.get("IPAM", {}).get("Config") or [{}])[0] if net else {}
            networks[name] = {
                "IPAMConfig": ep.get("IPAMConfig"), "Links": None, "Aliases": ep.get("Aliases") or None,
                "MacAddress": lease.get("mac", ""), "NetworkID": net.get("Id", ""), "EndpointID": lease.get("veth", ""),
                "Gateway": cfg.get("Gateway", "") if lease else "", "IPAddress": lease.get("address", ""),
                "IPPrefixLen": int(cfg["Subnet"].split("/")[1]) if lease else 0,
                "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "DNSNames": lease.get("names") if net and net["Name"] != DEFAULT else None,
            }  # fmt: skip
            for p in lease.get("ports") or []:
                ports_view.setdefault(f"{p['port']}/{p['proto']}", []).append(
                    {"HostIp": p["host_ip"] or "0.0.0.0", "HostPort": str(p["host_port"])}
                )
        for key in record.config.get("ExposedPorts") or {}:
            ports_view.setdefault(key, None)
        primary: dict[str, Any] = next(iter(networks.values()), {})
        path = self.netns_path(record.id)
        return {
            "Bridge": "", "SandboxID": record.id if path.exists() else "", "SandboxKey": str(path) if path.exists() else "",
            "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": ports_view,
            "EndpointID": primary.get("EndpointID", ""), "Gateway": primary.get("Gateway", ""),
            "IPAddress": primary.get("IPAddress", ""), "IPPrefixLen": primary.get("IPPrefixLen", 0),
            "MacAddress": primary.get("MacAddress", ""), "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "IPv6Gateway": "", "Networks": networks,
        }  # fmt: skip

    # -- garbage collection --------------------------------------------------------------------------------

    def gc(self) -> None:
        """Release the network of every container that no live process stands behind any more."""
        owners = {cid for net in self._stored() for cid in self.leases.leases(net["Id"])}
        ns_dir = self.root / "netns"
        if ns_dir.is_dir():
            owners |= {p.name for p in ns_dir.iterdir()}
        stale = [cid for cid in owners if not self._live(cid)]
        if stale:
            with self.leases.locked():
                self._release_locked([cid for cid in stale if not self._live(cid)])

    def _live(self, cid: str) -> bool:
        """A start in progress (the container's lock is held) or a monitor that is still the same process."""
        try:
            record = self.containers.load(cid)
        except IntermodalError:
            return False
        with _try_lock(self.containers.dir(cid) / "lock") as free:
            if not free:
                return True
        return _monitor_alive(record)


def _monitor_alive(record: ContainerRecord) -> bool:
    return record.monitor_pid > 0 and process_start_time(record.monitor_pid) == record.monitor_start


def _bridge_options(options: dict[str, str], taken: set[str]) -> dict[str, str]:
    """Check the bridge driver options this engine applies (name, outbound masquerade, MTU)."""
    name = options[BRIDGE_NAME]
    if not _IFNAME.match(name):
        raise InvalidArgument(f"invalid {BRIDGE_NAME} {name!r}: an interface name of 1-15 of [a-zA-Z0-9_.-]")
    if name in taken or rtnl.index_of(name) is not None:
        raise Conflict(f"{BRIDGE_NAME}={name}: an interface of that name exists already: choose another")
    out = dict(options)
    for flag in (MASQUERADE, ICC):
        if flag in out:
            out[flag] = out[flag].lower()
            if out[flag] not in ("true", "false"):
                raise InvalidArgument(f"invalid {flag} {options[flag]!r}: true or false")
    if out.get(ICC) == "false":
        raise InvalidArgument(
            f"{ICC}=false is not supported: put containers that must not talk to each other on separate networks"
        )
    if MTU in out and not (out[MTU].isdigit() and 68 <= int(out[MTU]) <= 65535):
        raise InvalidArgument(f"invalid {MTU} {out[MTU]!r}: a number from 68 to 65535")
    return out


def bridge_name(net: dict[str, Any]) -> str:
    return str(net["Options"][BRIDGE_NAME])


def _subnet(net: dict[str, Any]) -> ipam.Network:
    return ipam.parse_subnet(net["IPAM"]["Config"][0]["Subnet"])


def _gateway(net: dict[str, Any]) -> str:
    return str(net["IPAM"]["Config"][0]["Gateway"])


def _free_ifname(current: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    used = {lease.get("ifname") for _, lease in current}
    return next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)


@contextlib.contextmanager
def _try_lock(path: Path) -> Iterator[bool]:
    """Yield whether the flock at `path` was free (and hold it for the block if so)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno != errno.EWOULDBLOCK:
                raise
            yield False
            return
        yield True
    finally:
        os.close(fd)


def format_ports(settings: dict[str, Any]) -> str:
    """`ps`'s PORTS column: 127.0.0.1:8080->80/tcp, 443/tcp."""
    out = []
    for key, binds in (settings.get("Ports") or {}).items():
        if not binds:
            out.append(key)
        for b in binds or []:
            out.append(f"{b['HostIp']}:{b['HostPort']}->{key}")
    return ", ".join(out)
