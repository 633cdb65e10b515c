"""IPv4 address management: subnet checks and persistent leases.

Leases live in one JSON file per network (`$ROOT/networks/<id>/leases.json`) and change only under the
networks lock, so two concurrent `run`s can never hand out the same address, and a crashed CLI leaves a
lease the engine's garbage collection can see and release."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from intermodal.errors import Conflict, InvalidArgument
from intermodal.fsutil import atomic_write_bytes, atomic_write_json, file_lock, read_json

Network = ipaddress.IPv4Network
Address = ipaddress.IPv4Address


def parse_subnet(text: str) -> Network:
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        raise InvalidArgument(
            f"invalid subnet {text!r}: {e}; use CIDR notation such as 10.90.0.0/24"
        ) from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise InvalidArgument(f"invalid subnet {text!r}: only IPv4 subnets are supported")
    if net.prefixlen > 30:
        raise InvalidArgument(
            f"invalid subnet {text!r}: it is too small for a gateway and a container (/30 at most)"
        )
    return net


def parse_address(text: str, subnet: Network, what: str) -> Address:
    """An address that must be a usable host address of `subnet`."""
    try:
        addr = ipaddress.IPv4Address(text)
    except ValueError:
        raise InvalidArgument(f"invalid {what} {text!r}: give an IPv4 address such as 10.90.0.10") from None
    if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"invalid {what} {text}: it is not a usable address of the subnet {subnet}")
    return addr


def check_overlap(subnet: Network, others: Iterable[tuple[str, Network]]) -> None:
    for name, other in others:
        if subnet.overlaps(other):
            raise Conflict(
                f"subnet {subnet} overlaps with {other} of {name}: choose a subnet that does not overlap"
            )


def free_subnet(pool: Network, prefixlen: int, taken: Iterable[Network]) -> Network:
    """The first `prefixlen` block of `pool` that overlaps nothing in `taken` (networks and host routes)."""
    used = list(taken)
    for candidate in pool.subnets(new_prefix=prefixlen):
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise Conflict(
        f"no free /{prefixlen} subnet left in the pool {pool}: remove unused networks or give --subnet"
    )


def mac_for(addr: Address) -> str:
    """Docker's scheme: 02:42 followed by the four address bytes, unique wherever the address is."""
    return "02:42:" + ":".join(f"{b:02x}" for b in addr.packed)


class LeaseStore:
    """Per-network lease files; callers hold `locked()` across a read-modify-write."""

    def __init__(self, directory: Path):
        self.dir = directory

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with file_lock(self.dir / "lock"):
            yield

    def _path(self, net_id: str) -> Path:
        return self.dir / net_id / "leases.json"

    def leases(self, net_id: str) -> dict[str, dict[str, Any]]:
        data: dict[str, dict[str, Any]] = read_json(self._path(net_id), {})
        return data

    def save(self, net_id: str, leases: dict[str, dict[str, Any]]) -> None:
        """Not fsynced: leases describe veths and namespaces, which do not survive a reboot either."""
        atomic_write_json(self._path(net_id), leases, durable=False)

    def allocate(
        self,
        net_id: str,
        subnet: Network,
        gateway: Address,
        owner: str,
        requested: Address | None = None,
        within: Network | None = None,
    ) -> Address:
        """Lease the requested address, or the next free one after the last handed out (round robin, as
        Docker's allocator does: an address just released may still sit on a namespace the kernel is tearing
        down, with the same MAC, so it is the last to be reused), from `within` (`--ip-range`) if given. The
        lease is on disk when this returns."""
        leases = self.leases(net_id)
        taken = {Address(v["address"]) for k, v in leases.items() if k != owner}
        if requested is not None:
            if requested == gateway or requested in taken:
                raise Conflict(f"address {requested} is already in use on this network: choose another --ip")
            addr = requested
        else:
            cursor = self.dir / net_id / "last"
            last = Address(cursor.read_text()) if cursor.exists() else gateway
            pool = within or subnet
            first = max(int(pool.network_address), int(subnet.network_address) + 1)
            end = min(int(pool.broadcast_address) + 1, int(subnet.broadcast_address))
            start = int(last) + 1 if first <= int(last) < end else first
            order = (Address(i) for i in itertools.chain(range(start, end), range(first, start)))
            found = next((a for a in order if a != gateway and a not in taken), None)
            if found is None:
                raise Conflict(f"no free address left in {pool}: remove containers or use a larger subnet")
            addr = found
            atomic_write_bytes(cursor, str(addr).encode(), durable=False)
        leases[owner] = {**leases.get(owner, {}), "address": str(addr)}
        self.save(net_id, leases)
        return addr

    def update(self, net_id: str, owner: str, **fields: Any) -> None:
        leases = self.leases(net_id)
        leases.setdefault(owner, {}).update(fields)
        self.save(net_id, leases)

    def release(self, net_id: str, owner: str) -> None:
        leases = self.leases(net_id)
        if leases.pop(owner, None) is not None:
            self.save(net_id, leases)
