"""Published ports: `-p` parsing, host-port reservation and the optional userland proxy.

A host port is reserved by binding (and, for TCP, listening on) a socket before anything else of the
container's network is made: a port in use fails the start with a clear error and nothing to undo, and
while the monitor (conmon, or the CLI in the foreground) holds the socket no other program can take the
port the NAT rules send elsewhere. The kernel frees it when the monitor exits, even after kill -9."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from intermodal.errors import Conflict, InvalidArgument, NotFound
from intermodal.runtime.state import process_start_time

if TYPE_CHECKING:
    import socket

_PORTS = re.compile(r"^(\d+)(?:-(\d+))?$")
PROXY = "/usr/sbin/docker-proxy"


def _range(text: str, spec: str) -> range:
    m = _PORTS.match(text)
    if not m:
        raise InvalidArgument(
            f"invalid port {text!r} in -p {spec!r}: give a port (80) or a range (8000-8010)"
        )
    first, last = int(m.group(1)), int(m.group(2) or m.group(1))
    if not (1 <= first <= last <= 65535):
        raise InvalidArgument(f"invalid port range {text!r} in -p {spec!r}: ports are 1-65535, low-high")
    return range(first, last + 1)


def parse_publish(specs: Iterable[str]) -> dict[str, list[dict[str, str]]]:
    """`-p [ip:][hostPort:]containerPort[/proto]` (ports or ranges) → Docker's HostConfig.PortBindings."""
    out: dict[str, list[dict[str, str]]] = {}
    for spec in specs:
        rest, _, proto = spec.partition("/")
        proto = proto or "tcp"
        if proto not in ("tcp", "udp"):
            raise InvalidArgument(f"invalid protocol {proto!r} in -p {spec!r}: use tcp or udp")
        parts = rest.split(":")
        if len(parts) > 3 or not parts[-1]:
            raise InvalidArgument(f"invalid -p {spec!r}: use [ip:][hostPort:]containerPort[/tcp|udp]")
        host_ip = parts[0] if len(parts) == 3 else ""
        host = parts[-2] if len(parts) >= 2 else ""
        if host_ip:
            try:
                if not isinstance(ipaddress.ip_address(host_ip), ipaddress.IPv4Address):
                    raise ValueError
            except ValueError:
                raise InvalidArgument(
                    f"invalid host IP {host_ip!r} in -p {spec!r}: give an IPv4 address"
                ) from None
            if host_ip == "0.0.0.0":
                host_ip = ""
        container = _range(parts[-1], spec)
        hosts = _range(host, spec) if host else None
        if hosts is not None and len(hosts) != len(container) and len(container) != 1:
            raise InvalidArgument(
                f"invalid -p {spec!r}: the host and container port ranges must have the same length"
            )
        for i, port in enumerate(container):
            if hosts is None:
                host_port = ""
            elif len(container) == 1:  # one container port, a host range: any free port of the range
                host_port = str(hosts[0]) if len(hosts) == 1 else f"{hosts[0]}-{hosts[-1]}"
            else:
                host_port = str(hosts[i])
            out.setdefault(f"{port}/{proto}", []).append({"HostIp": host_ip, "HostPort": host_port})
    return out


@dataclass
class Reservation:
    host_ip: str  # "" = every host address
    proto: str
    host_port: int
    sock: socket.socket


def reserve(host_ip: str, proto: str, host_port: str) -> Reservation:
    """Bind the host port ("" = any free one, "a-b" = the first free one of the range)."""
    import socket

    candidates = [0] if not host_port else list(_range(host_port, host_port))
    last: OSError | None = None
    for port in candidates:
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_INET, kind)
        try:
            if proto == "tcp":
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
                )  # TIME_WAIT leftovers are no conflict
            sock.bind((host_ip or "0.0.0.0", port))
            if proto == "tcp":
                sock.listen(1)  # a listener keeps SO_REUSEADDR binders out too
        except OSError as e:
            sock.close()
            last = e
            continue
        return Reservation(host_ip, proto, sock.getsockname()[1], sock)
    where = f"{host_ip or '0.0.0.0'}:{host_port or 0}/{proto}"
    raise Conflict(
        f"cannot publish port {where}: {last.strerror if last else 'unavailable'}: the host port is in use "
        "(stop whatever uses it or choose another host port)"
    )


def start_proxy(r: Reservation, address: str, port: int) -> dict[str, Any]:
    """docker-proxy (Debian's docker.io) relaying host_ip:host_port to the container; the reservation is
    handed over (closed just before the proxy binds). Returns {"pid", "start"} to stop it later."""
    if not os.path.exists(PROXY):
        raise NotFound(f"{PROXY} not found: install Debian's docker.io package for userland_proxy mode")
    r.sock.close()
    ready_r, ready_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    argv = [PROXY, "-proto", r.proto, "-host-ip", r.host_ip or "0.0.0.0", "-host-port", str(r.host_port),
            "-container-ip", address, "-container-port", str(port)]  # fmt: skip
    try:  # docker-proxy reports "0\n" or "1\n<error>" on fd 3; every other fd of ours is close-on-exec
        pid = os.posix_spawn(
            PROXY, argv, os.environ, setsid=True,
            file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                          (os.POSIX_SPAWN_DUP2, devnull, 2), (os.POSIX_SPAWN_DUP2, ready_w, 3)],
        )  # fmt: skip
    finally:
        os.close(ready_w)
        os.close(devnull)
    with os.fdopen(ready_r, "rb") as f:
        status = f.read().decode(errors="replace")
    if not status.startswith("0"):
        os.waitpid(pid, 0)
        raise Conflict(f"cannot publish port {r.host_ip or '0.0.0.0'}:{r.host_port}/{r.proto}: {status[2:]}")
    return {"pid": pid, "start": process_start_time(pid) or 0}


def stop_proxy(proxy: dict[str, Any]) -> None:
    """Stop a proxy and wait (bounded) until it is gone, so its host port is free when this returns."""
    pid = proxy["pid"]
    deadline = time.monotonic() + 2
    sig = signal.SIGTERM
    while process_start_time(pid) == proxy["start"]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # our child if started by this process
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        time.sleep(0.01)
