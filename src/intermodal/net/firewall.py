"""nftables rules for container networks, kept in one table of our own (`ip <table>`).

The table is declarative: its whole content is rendered from the engine's state (bridges and published
ports) and replaced in one nft transaction after every change. Nothing is ever edited rule by rule, so there
are no rule handles to track, a crash cannot leave half a change behind, and rules of a container that is
gone disappear at the next change. With no bridge up the table is deleted."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from intermodal.errors import IntermodalError, NotFound
from intermodal.fsutil import atomic_write_bytes


@dataclass(frozen=True)
class Bridge:
    name: str
    subnet: str
    internal: bool
    masquerade: bool = True  # outbound NAT (Docker's com.docker.network.bridge.enable_ip_masquerade)


@dataclass(frozen=True)
class Forward:
    """A published port: traffic to host_ip:host_port (host_ip "" = any host address) goes to address:port."""

    host_ip: str
    proto: str
    host_port: int
    address: str
    port: int


def _nft(required: bool = True) -> str:
    found = shutil.which("nft") or ("/usr/sbin/nft" if Path("/usr/sbin/nft").exists() else "")
    if not found and required:
        raise NotFound("nft not found: install Debian's nftables package (apt-get install nftables)")
    return found


def _run(script: str) -> None:
    import subprocess

    proc = subprocess.run([_nft(), "-f", "-"], input=script, capture_output=True, text=True)
    if proc.returncode != 0:
        raise IntermodalError(f"nftables refused the rules: {proc.stderr.strip()}")


def _names(names: Sequence[str]) -> str:
    return "{ " + ", ".join(f'"{n}"' for n in names) + " }"


def render(table: str, bridges: Sequence[Bridge], forwards: Sequence[Forward]) -> str:
    """The table's full text (without the replace preamble)."""
    by_ip = [
        f"{f.host_ip} . {f.proto} . {f.host_port} : {f.address} . {f.port}" for f in forwards if f.host_ip
    ]
    by_port = [f"{f.proto} . {f.host_port} : {f.address} . {f.port}" for f in forwards if not f.host_ip]
    post, forward = [], []
    internal = [b for b in bridges if b.internal]
    routed = [b for b in bridges if not b.internal]
    for b in internal:  # --internal: nothing in or out but the bridge itself
        forward += [
            f'iifname "{b.name}" oifname != "{b.name}" drop',
            f'oifname "{b.name}" iifname != "{b.name}" drop',
        ]
    forward.append(
        "ct status dnat accept"
    )  # published ports stay reachable from containers of other networks
    for b in routed:
        others = [o.name for o in bridges if o.name != b.name]
        if others:
            forward.append(f'iifname "{b.name}" oifname {_names(others)} drop')
        post += [
            f'oifname "{b.name}" ip saddr 127.0.0.0/8 masquerade',  # localhost → published port
            f'oifname "{b.name}" ct status dnat ip saddr {b.subnet} masquerade',  # hairpin
        ]
        if b.masquerade:
            post.append(f'ip saddr {b.subnet} oifname != "{b.name}" masquerade')  # outbound

    def block(name: str, kind: str, items: list[str]) -> str:
        elements = f"\n\t\telements = {{ {', '.join(items)} }}" if items else ""
        return f"\tmap {name} {{\n\t\ttype {kind}{elements}\n\t}}\n"

    def chain(name: str, head: str, rules: list[str]) -> str:
        body = "".join(f"\t\t{r}\n" for r in rules)
        return f"\tchain {name} {{\n" + (f"\t\t{head}\n" if head else "") + body + "\t}\n"

    return (
        f"table ip {table} {{\n"
        + block("ports", "ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service", by_ip)
        + block("ports_any", "inet_proto . inet_service : ipv4_addr . inet_service", by_port)
        + chain("prerouting", "type nat hook prerouting priority dstnat; policy accept;",
                ["fib daddr type local jump published"])
        + chain("output", "type nat hook output priority -100; policy accept;",
                ["fib daddr type local jump published"])
        + chain("published", "", ["dnat to ip daddr . meta l4proto . th dport map @ports",
                                  "dnat to meta l4proto . th dport map @ports_any"])
        + chain("postrouting", "type nat hook postrouting priority srcnat; policy accept;", post)
        + chain("forward", "type filter hook forward priority filter; policy accept;", forward)
        + "}\n"
    )  # fmt: skip


def apply(
    table: str, bridges: Sequence[Bridge], forwards: Sequence[Forward], applied: Path, *, force: bool = False
) -> None:
    """Replace the table atomically (create-if-missing, delete, recreate in one transaction), or delete it
    when there is no bridge. `applied` remembers what was last sent (with the boot it was sent in), so an
    unchanged table costs no nft run unless `force`."""
    if not bridges:
        if force or _read(applied) is not None:  # else it was never made here
            drop(table)
            applied.unlink(missing_ok=True)
        return
    script = _DROP.format(table=table) + render(table, bridges, forwards)
    stamp = f"# boot {_boot_id()}\n{script}"
    if not force and _read(applied) == stamp:
        return
    if any(not b.internal for b in bridges):
        enable_forwarding()
    _run(script)
    atomic_write_bytes(applied, stamp.encode(), durable=False)


_DROP = "table ip {table} {{}}\ndelete table ip {table}\n"  # create-if-missing first: never fails


def drop(table: str) -> None:
    """Delete the table if it exists (nothing to do without nft)."""
    if _nft(required=False):
        _run(_DROP.format(table=table))


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def enable_forwarding() -> None:
    """Routing between the bridges and the uplink; left on afterwards, as Docker and Podman do."""
    path = Path("/proc/sys/net/ipv4/ip_forward")
    if path.read_text().strip() != "1":
        path.write_text("1")
