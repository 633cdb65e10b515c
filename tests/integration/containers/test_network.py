"""Networking with real namespaces, bridges and nftables: the default bridge, published ports, user networks
with names, isolation, --internal, the none/host/container modes, etc files, bad input, garbage collection.

Every test gets its own root whose engine config names its own bridge, subnets and nftables table, sends
traffic only to 127.0.0.1, to the host side of its own bridges or to its own containers, bounds every wait,
and checks at the end that none of its bridges, veths, namespaces, leases or rules is left."""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from engine_cli import Engine

pytestmark = [pytest.mark.root, pytest.mark.slow]
SERVE = ["sh", "-c", "echo hello-$HOSTNAME > /tmp/index.html && exec httpd -f -p 80 -h /tmp"]


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


def ruleset() -> str:
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=True).stdout


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def http_get(host: str, port: int, timeout: float = 3.0) -> str:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/index.html")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def fetch(host: str, port: int, timeout: float = 10.0) -> str:
    """GET with bounded retries while the server in the container starts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return http_get(host, port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_port_free(port: int) -> None:
    """Listen on it as a server would (SO_REUSEADDR: TIME_WAIT leftovers of closed connections are fine)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(1)


@dataclass
class Net:
    """The engine bound to a root with a per-test network config, and what the test made."""

    engine: Engine
    bridge: str
    table: str
    subnet: str
    gateway: str
    seen_links: set[str] = field(default_factory=set)

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return self.engine(*args, check=check, timeout=timeout)

    def inspect_net(self, name: str) -> dict:
        return json.loads(self("network", "inspect", name).stdout)[0]

    def address(self, container: str, network: str = "bridge") -> str:
        """The container's address on `network` (remembering its veth for the leftover check)."""
        for entry in self.inspect_net(network)["Containers"].values():
            self.seen_links.add(entry["EndpointID"])
            if entry["Name"] == container:
                return str(entry["IPv4Address"].split("/")[0])
        raise AssertionError(f"{container} is not on {network}")

    def leases(self) -> dict[str, dict]:
        out = {}
        for path in (self.engine.root / "networks").glob("*/leases.json"):
            out.update(json.loads(path.read_text()))
        return out

    def assert_clean(self) -> None:
        ours = {self.bridge, *self.seen_links}
        # a container's veth goes with its namespace, which the kernel destroys in the background
        assert wait_for(lambda: not ours & links(), 5), f"links left behind: {ours & links()}"
        assert f"table ip {self.table} " not in ruleset() + " ", "the nftables table was left behind"
        assert not self.leases(), f"leases left behind: {self.leases()}"
        ns_dir = self.engine.root / "netns"
        assert not ns_dir.exists() or not list(ns_dir.iterdir()), "network namespaces left behind"


@pytest.fixture
def net(engine: Engine) -> Iterator[Net]:
    token = secrets.token_hex(3)
    third = int(token[:2], 16)
    subnet = f"10.{230 + third % 20}.{third}.0/24"
    config = {
        "bridge": f"imt{token}", "table": f"intermodal_t{token}", "subnet": subnet,
        "pool": f"10.{210 + third % 20}.0.0/16",
    }  # fmt: skip
    (engine.root / "config.json").write_text(json.dumps({"network": config}))
    n = Net(engine, config["bridge"], config["table"], subnet, subnet.rsplit(".", 1)[0] + ".1")
    yield n
    ids = engine("ps", "-aq", "--no-trunc", check=False).stdout.split()
    if ids:
        engine("rm", "-f", *ids, check=False)
    nets = engine("network", "ls", "-q", "--no-trunc").stdout.split()
    for nid in nets:
        info = json.loads(engine("network", "inspect", nid).stdout)[0]
        n.seen_links.add(info["Options"].get("com.docker.network.bridge.name", ""))
    engine("network", "prune", "-f", check=False)
    engine("system", "reset", "--force")
    n.seen_links.discard("")
    n.assert_clean()
    dns_pid = engine.root / "networks" / "dns" / "aardvark.pid"
    assert wait_for(lambda: not dns_pid.exists(), 5), "aardvark-dns did not stop"


def serve(net: Net, *args: str) -> str:
    """A detached busybox httpd; returns its name."""
    name = f"web{secrets.token_hex(3)}"
    net("run", "-d", "--name", name, *args, "busybox", *SERVE)
    return name


def test_default_bridge_host_and_gateway(net: Net) -> None:
    name = serve(net)
    ip = net.address(name)
    assert ip.startswith(net.subnet.rsplit(".", 1)[0])
    assert net.bridge in links()
    assert fetch(ip, 80).startswith("hello-"), "host → container address"
    probe = net("run", "--rm", "busybox", "ping", "-c", "1", "-W", "2", net.gateway, check=False)
    assert probe.returncode == 0, f"container → gateway: {probe.stdout}{probe.stderr}"
    addr = net("run", "--rm", "busybox", "ip", "-o", "addr").stdout
    assert "lo" in addr and "127.0.0.1" in addr
    table = subprocess.run(["nft", "list", "table", "ip", net.table], capture_output=True, text=True).stdout
    assert f'ip saddr {net.subnet} oifname != "{net.bridge}" masquerade' in table, "outbound masquerade"
    assert Path(f"/proc/sys/net/ipv4/conf/{net.bridge}/route_localnet").read_text().strip() == "1"
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"


def test_bridge_lives_with_its_network_and_reset_takes_it_down(net: Net) -> None:
    """Like docker0: the default bridge and the table stay up between containers (so a container's start
    touches no firewall), a user network's bridge goes with `network rm`, and `system reset` takes down
    what is left; `network reload` puts back a table that something else deleted."""
    net("run", "--rm", "busybox", "true")
    assert net.bridge in links()
    assert f"table ip {net.table} " in ruleset()
    net("network", "create", "--subnet", "10.251.78.0/24", "short")
    net("run", "--rm", "--network", "short", "busybox", "true")
    short = net.inspect_net("short")["Options"]["com.docker.network.bridge.name"]
    assert short in links() and short in ruleset()
    net("network", "rm", "short")
    assert short not in links() and short not in ruleset() and net.bridge in ruleset()
    subprocess.run(["nft", "delete", "table", "ip", net.table], check=True)
    net("network", "reload")
    assert f"table ip {net.table} " in ruleset()
    net("system", "reset", "--force")
    assert net.bridge not in links() and f"table ip {net.table} " not in ruleset()
    assert [p.name for p in net.engine.root.iterdir()] == ["config.json"], "reset keeps only the config"
    assert net("images", "-q").stdout == ""


def test_a_deleted_roots_bridge_and_table_go_with_the_next_bridge(net: Net, tmp_path: Path) -> None:
    """A root removed with rm -rf instead of `system reset` leaves its bridge and table only until any root
    brings a bridge up: each bridge's alias names the root it belongs to."""
    scratch = Engine(tmp_path / "scratch")
    shutil.copytree(net.engine.root / "images", scratch.root / "images", symlinks=True)
    scratch("run", "--rm", "busybox", "true")
    bridge = json.loads(scratch("network", "inspect", "bridge").stdout)[0]["Options"][
        "com.docker.network.bridge.name"
    ]
    alias = Path(f"/sys/class/net/{bridge}/ifalias").read_text().split()
    assert alias[0] == "intermodal" and alias[2] == str(scratch.root)
    table = alias[1]
    assert f"table ip {table} " in ruleset()
    shutil.rmtree(scratch.root)
    net("run", "--rm", "busybox", "true")  # this root's first bridge
    assert bridge not in links() and f"table ip {table} " not in ruleset()


def test_publish_on_localhost_only(net: Net) -> None:
    port = free_port()
    name = serve(net, "-p", f"127.0.0.1:{port}:80")
    net.address(name)
    assert fetch("127.0.0.1", port).startswith("hello-")
    with pytest.raises(OSError):
        http_get(net.gateway, port)  # another host address: not published there
    assert net("port", name).stdout.strip() == f"80/tcp -> 127.0.0.1:{port}"
    settings = json.loads(net("inspect", name).stdout)[0]["NetworkSettings"]
    assert settings["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert settings["IPAddress"] == settings["Networks"]["bridge"]["IPAddress"] == net.address(name)
    assert settings["Gateway"] == net.gateway and settings["MacAddress"].startswith("02:42:")
    assert f"127.0.0.1:{port}->80/tcp" in net("ps").stdout
    other = net("run", "--rm", "busybox", "timeout", "3", "wget", "-qO-", f"http://{net.gateway}:{port}/index.html",
                check=False)  # fmt: skip
    assert other.returncode != 0


def test_publish_any_address_reaches_from_containers_and_ranges(net: Net) -> None:
    first = free_port()
    name = serve(net, "-p", f"{first}:80", "-p", "127.0.0.1::80/udp")
    net.address(name)
    assert fetch("127.0.0.1", first).startswith("hello-")
    assert fetch(net.gateway, first).startswith("hello-"), "published on every host address"
    hairpin = net(
        "run", "--rm", "busybox", "timeout", "5", "wget", "-qO-", f"http://{net.gateway}:{first}/index.html"
    )
    assert hairpin.stdout.startswith("hello-"), "another container reaches the published port"
    udp = net("port", name, "80/udp").stdout.strip()
    assert udp.startswith("127.0.0.1:") and int(udp.split(":")[1]) > 0


def test_publish_all_uses_expose(net: Net, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
    for applet in ("sh", "httpd", "echo"):
        os.symlink("busybox", rootfs / "bin" / applet)
    (rootfs / "tmp").mkdir(mode=0o1777)
    archive = tmp_path / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".")
    net("import", "-c", "EXPOSE 80/tcp", "-c", "ENV PATH=/bin", str(archive), "exposed:1")
    name = f"exp{secrets.token_hex(3)}"
    net("run", "-d", "--name", name, "-P", "exposed:1", *SERVE)
    net.address(name)
    mapping = net("port", name, "80").stdout.strip()
    host, _, port = mapping.rpartition(":")
    assert host == "0.0.0.0" and int(port) > 0
    assert fetch("127.0.0.1", int(port)).startswith("hello-")


def test_port_in_use_fails_before_anything_is_made(net: Net) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = net("run", "-d", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "30", check=False)
        assert result.returncode == 125
        assert f"127.0.0.1:{port}/tcp" in result.stderr and "in use" in result.stderr
        net.assert_clean()  # no bridge, veth, namespace, lease or rule
    mine = free_port()
    name = serve(net, "-p", f"127.0.0.1:{mine}:80")
    net.address(name)
    conflict = net("run", "--rm", "-p", f"127.0.0.1:{mine}:80", "busybox", "true", check=False)
    assert conflict.returncode == 125 and "in use" in conflict.stderr, "our own published port is held"


def test_user_network_names_and_aliases(net: Net) -> None:
    net("network", "create", "app")
    net(
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "app",
        "--network-alias",
        "database",
        "busybox",
        "sleep",
        "60",
    )
    for target in ("db", "database"):
        probe = net(
            "run", "--rm", "--network", "app", "busybox", "ping", "-c", "1", "-W", "3", target, check=False
        )
        assert probe.returncode == 0, f"{target}: {probe.stdout}{probe.stderr}"
    resolv = net("run", "--rm", "--network", "app", "busybox", "cat", "/etc/resolv.conf").stdout
    gateway = net.inspect_net("app")["IPAM"]["Config"][0]["Gateway"]
    assert f"nameserver {gateway}" in resolv
    net.address("db", "app")
    # a container connected later is found by its alias too; after disconnect it is gone
    net("run", "-d", "--name", "late", "busybox", "sleep", "60")
    net("network", "connect", "--alias", "cache", "app", "late")
    net.address("late", "app")
    assert (
        net(
            "run", "--rm", "--network", "app", "busybox", "ping", "-c", "1", "-W", "3", "cache", check=False
        ).returncode
        == 0
    )
    records = net.engine.root / "networks" / "dns" / "app"
    assert "cache" in records.read_text()
    net("network", "disconnect", "app", "late")
    # checked in aardvark-dns's records: asking for a name it does not know would be forwarded off the host
    assert "cache" not in records.read_text() and "database" in records.read_text()


def test_driver_options_ip_range_and_filters(net: Net) -> None:
    """Docker's `network create -o` for the bridge name, MTU and outbound masquerade, `--ip-range`, and
    `network ls --filter`."""
    bridge = f"imo{secrets.token_hex(3)}"
    net(
        "network", "create", "--subnet", "10.251.79.0/24", "--ip-range", "10.251.79.64/26", "--label", "tier=db",
        "-o", f"com.docker.network.bridge.name={bridge}", "-o", "com.docker.network.driver.mtu=1400",
        "-o", "com.docker.network.bridge.enable_ip_masquerade=false", "tuned",
    )  # fmt: skip
    net.seen_links.add(bridge)
    out = net(
        "run",
        "--rm",
        "--network",
        "tuned",
        "busybox",
        "sh",
        "-c",
        "cat /sys/class/net/eth0/mtu; ip -o -4 addr show eth0",
    )
    mtu, addr = out.stdout.splitlines()
    assert mtu == "1400"
    assert ipaddress.ip_address(addr.split()[3].split("/")[0]) in ipaddress.ip_network("10.251.79.64/26")
    assert Path(f"/sys/class/net/{bridge}/mtu").read_text().strip() == "1400"
    table = subprocess.run(["nft", "list", "table", "ip", net.table], capture_output=True, text=True).stdout
    assert "ip saddr 10.251.79.0/24 oifname" not in table, "no outbound masquerade for this network"
    assert f'oifname "{bridge}" ip saddr 127.0.0.0/8 masquerade' in table, "published ports still work"
    assert net("network", "ls", "--filter", "label=tier=db", "--format", "{{.Name}}").stdout.split() == [
        "tuned"
    ]
    assert net("network", "ls", "-f", "type=custom", "-f", "name=tun", "-q").stdout.strip() != ""
    assert (
        "bridge" in net("network", "ls", "--filter", "type=builtin", "--format", "{{.Name}}").stdout.split()
    )
    for args, message in (
        (["-o", f"com.docker.network.bridge.name={bridge}", "clash"], "exists already"),
        (["--subnet", "10.251.80.0/24", "--ip-range", "10.251.81.0/26", "outside"], "not inside"),
        (["-o", "com.docker.network.bridge.enable_icc=false", "icc"], "not supported"),
        (["-o", "com.docker.network.driver.mtu=9", "tiny"], "68 to 65535"),
    ):
        refused = net("network", "create", *args, check=False)
        assert refused.returncode == 125 and message in refused.stderr, refused.stderr
    net("network", "rm", "tuned")


def test_networks_are_isolated(net: Net) -> None:
    net("network", "create", "one")
    net("network", "create", "two")
    net("run", "-d", "--name", "a", "--network", "one", "busybox", "sleep", "60")
    ip = net.address("a", "one")
    same = net("run", "--rm", "--network", "one", "busybox", "ping", "-c", "1", "-W", "2", ip, check=False)
    other = net("run", "--rm", "--network", "two", "busybox", "ping", "-c", "1", "-W", "2", ip, check=False)
    default = net("run", "--rm", "busybox", "ping", "-c", "1", "-W", "2", ip, check=False)
    assert same.returncode == 0
    assert other.returncode != 0 and default.returncode != 0


def test_internal_network_has_no_way_out(net: Net) -> None:
    net("network", "create", "--internal", "--subnet", "10.251.77.0/24", "sealed")
    net("run", "-d", "--name", "s", "--network", "sealed", "busybox", "sleep", "60")
    net.address("s", "sealed")
    routes = net("run", "--rm", "--network", "sealed", "busybox", "ip", "route").stdout
    assert "default" not in routes and "10.251.77.0/24" in routes
    bridge = net.inspect_net("sealed")["Options"]["com.docker.network.bridge.name"]
    table = subprocess.run(["nft", "list", "table", "ip", net.table], capture_output=True, text=True).stdout
    assert f'iifname "{bridge}" oifname != "{bridge}" drop' in table
    assert "10.251.77.0/24" not in table.split("chain postrouting")[1].split("chain forward")[0], (
        "no masquerade"
    )


def test_none_host_and_container_modes(net: Net) -> None:
    none = net("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link").stdout
    assert [line.split(": ")[1] for line in none.splitlines()] == ["lo"]
    host = net("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link").stdout
    assert len(host.splitlines()) == len(links())
    net(
        "run",
        "-d",
        "--name",
        "owner",
        "--hostname",
        "ownerhost",
        "--add-host",
        "db:10.1.2.3",
        "busybox",
        "sleep",
        "60",
    )
    ip = net.address("owner")
    joined = net("run", "--rm", "--network", "container:owner", "busybox", "ip", "-o", "-4", "addr").stdout
    assert ip in joined
    # Docker shares the joined container's host name, /etc/hosts and resolv.conf
    seen = net(
        "run", "--rm", "--network", "container:owner", "busybox", "sh", "-c", "hostname; cat /etc/hosts"
    )
    assert (
        seen.stdout.startswith("ownerhost\n")
        and "10.1.2.3\tdb" in seen.stdout
        and f"{ip}\townerhost" in seen.stdout
    )
    for flags in (["-p", "80"], ["--hostname", "other"]):
        bad = net("run", "--rm", "--network", "container:owner", *flags, "busybox", "true", check=False)
        assert bad.returncode == 125 and "conflicting options" in bad.stderr


def test_dns_add_host_mac_and_ip(net: Net) -> None:
    out = net(
        "run", "--rm", "--dns", "10.1.2.3", "--add-host", "db.local:10.9.9.9", "--add-host", "gw:host-gateway",
        "--mac-address", "02:aa:bb:cc:dd:ee", "busybox", "sh", "-c", "cat /etc/resolv.conf /etc/hosts; ip link show eth0",
    ).stdout  # fmt: skip
    assert "nameserver 10.1.2.3" in out and "nameserver 8.8.8.8" not in out
    assert "10.9.9.9\tdb.local" in out and f"{net.gateway}\tgw" in out
    assert "02:aa:bb:cc:dd:ee" in out
    net("network", "create", "--subnet", "10.252.33.0/24", "fixed")
    fixed = net(
        "run", "--rm", "--network", "fixed", "--ip", "10.252.33.77", "busybox", "ip", "-o", "-4", "addr"
    ).stdout
    assert "10.252.33.77/24" in fixed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["network", "create", "--subnet", "10.253.5.0/24", "x2"], "overlaps"),
        (
            ["network", "create", "--subnet", "10.254.0.0/24", "--gateway", "10.254.1.1", "x3"],
            "not a usable address",
        ),
        (["network", "create", "x1"], "already exists"),
        (["network", "create", "bridge"], "reserved"),
        (["network", "create", "--subnet", "nonsense", "x4"], "invalid subnet"),
        (["run", "--rm", "--network", "x1", "--ip", "10.9.0.5", "busybox", "true"], "not a usable address"),
        (["run", "--rm", "--ip", "10.9.0.5", "busybox", "true"], "user-defined networks"),
        (["run", "--rm", "-p", "99999:80", "busybox", "true"], "ports are 1-65535"),
        (["run", "--rm", "-p", "1:2:3:4", "busybox", "true"], "invalid -p"),
        (["run", "--rm", "-p", "80/sctp", "busybox", "true"], "use tcp or udp"),
        (["run", "--rm", "-p", "8000-8002:80-81", "busybox", "true"], "same length"),
        (["run", "--rm", "--network", "nosuchnet", "busybox", "true"], "not found"),
        (["run", "--rm", "--mac-address", "01:00:5e:00:00:01", "busybox", "true"], "unicast"),
        (["run", "--rm", "--add-host", "nohost", "busybox", "true"], "NAME:IP"),
    ],
)
def test_bad_input_is_refused(net: Net, args: list[str], message: str) -> None:
    net("network", "create", "--subnet", "10.253.0.0/16", "x1")
    result = net(*args, check=False)
    assert result.returncode == 125, result.stdout
    assert message in result.stderr, result.stderr
    assert not net.leases()


def test_remove_network_in_use(net: Net) -> None:
    net("network", "create", "busy")
    net("run", "-d", "--name", "user", "--network", "busy", "busybox", "sleep", "60")
    net.address("user", "busy")
    refused = net("network", "rm", "busy", check=False)
    assert refused.returncode == 125 and "active endpoints" in refused.stderr and "user" in refused.stderr
    net("rm", "-f", "user")
    net("network", "rm", "busy")


def test_kill_9_of_the_monitor_releases_everything(net: Net) -> None:
    port = free_port()
    name = serve(net, "-p", f"127.0.0.1:{port}:80")
    net.address(name)
    assert fetch("127.0.0.1", port)
    cid = net("ps", "-q", "--no-trunc").stdout.split()[0]
    conmon = int((net.engine.root / "containers" / cid / "conmon.pid").read_text())
    os.kill(conmon, signal.SIGKILL)
    assert wait_for(
        lambda: (
            not Path(f"/proc/{conmon}").exists() or "Z" in Path(f"/proc/{conmon}/stat").read_text().split()[2]
        )
    )
    net("network", "ls")  # any engine command collects the stale network
    assert not net.leases()
    assert not net.seen_links & links(), "the veth of the dead container's namespace"
    assert_port_free(port)  # conmon held the reservation: the kernel freed it with the process


def test_concurrent_runs_get_distinct_addresses(net: Net) -> None:
    procs = [net.engine.popen("run", "-d", "--name", f"c{i}", "busybox", "sleep", "60") for i in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    addresses = {net.address(f"c{i}") for i in range(4)}
    assert len(addresses) == 4


def test_userland_proxy_mode_honours_the_input_firewall(net: Net) -> None:
    """With userland_proxy, published ports are served by docker-proxy on the host, so an INPUT-chain rule
    that drops the port applies; the default DNAT mode forwards before INPUT (as Docker does)."""
    config = json.loads((net.engine.root / "config.json").read_text())
    firewall_table = f"imtest_{secrets.token_hex(3)}"
    nat_port, proxy_port = free_port(), free_port()
    nat = serve(net, "-p", f"127.0.0.1:{nat_port}:80")
    net.address(nat)
    config["network"]["userland_proxy"] = True
    (net.engine.root / "config.json").write_text(json.dumps(config))
    proxied = serve(net, "-p", f"127.0.0.1:{proxy_port}:80")
    net.address(proxied)
    assert fetch("127.0.0.1", proxy_port).startswith("hello-")
    rules = f"""table inet {firewall_table} {{
        chain input {{ type filter hook input priority 0; policy accept;
            tcp dport {{ {nat_port}, {proxy_port} }} ip saddr 127.0.0.1 drop; }}
    }}"""
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)
    try:
        assert fetch("127.0.0.1", nat_port).startswith("hello-"), "DNAT traffic never reaches INPUT"
        with pytest.raises(OSError):
            http_get("127.0.0.1", proxy_port, timeout=1.5)
    finally:
        subprocess.run(["nft", "delete", "table", "inet", firewall_table], check=True)
    net("rm", "-f", proxied)
    assert_port_free(proxy_port)  # the proxy is gone with the container
