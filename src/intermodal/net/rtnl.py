"""The few rtnetlink requests container networking needs, over a raw NETLINK_ROUTE socket.

Why not pyroute2: its IPRoute (0.9, built on asyncio) takes about 220 ms to import here, ten times the whole
budget a container's network may add to `run` (20 ms), and the engine only ever sends six kinds of request.
Each is one message built from the kernel's structs (include/uapi/linux/{netlink,rtnetlink,if_link}.h),
sent with NLM_F_ACK; the kernel's error in the ack is raised as OSError with its errno.

A socket belongs to the network namespace of the thread that opened it, so `Rtnl()` opened inside another
namespace (see `netns.run_in`) configures that namespace from then on."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterable

# netlink.h
_NLMSG_ERROR = 2
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_EXCL, _NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
# rtnetlink.h
_RTM_NEWLINK, _RTM_DELLINK, _RTM_NEWADDR, _RTM_NEWROUTE = 16, 17, 20, 24
_RT_TABLE_MAIN, _RTPROT_BOOT, _RT_SCOPE_UNIVERSE, _RTN_UNICAST = 254, 3, 0, 1
_RTA_GATEWAY = 5
# if_link.h, if_addr.h, veth.h
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MTU, _IFLA_MASTER, _IFLA_LINKINFO, _IFLA_IFALIAS, _IFLA_NET_NS_FD = (
    1,
    3,
    4,
    10,
    18,
    20,
    28,
)
_IFLA_INFO_KIND, _IFLA_INFO_DATA, _VETH_INFO_PEER = 1, 2, 1
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
IFF_UP = 0x1

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct(
    "=BBBBBBBBI"
)  # rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags


def attr(kind: int, payload: bytes | str | int | Iterable[bytes]) -> bytes:
    """One rtattr, padded to 4 bytes: a str is NUL-terminated, an int is a u32, an iterable of attrs nests."""
    if isinstance(payload, str):
        data = payload.encode() + b"\0"
    elif isinstance(payload, int):
        data = struct.pack("=I", payload)
    elif isinstance(payload, bytes):
        data = payload
    else:
        data = b"".join(payload)
    size = 4 + len(data)
    return struct.pack("=HH", size, kind) + data + b"\0" * (-size % 4)


def ifinfo(index: int = 0, up: bool = False) -> bytes:
    return _IFINFO.pack(socket.AF_UNSPEC, 0, index, IFF_UP if up else 0, IFF_UP if up else 0)


def _mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


class Rtnl:
    """A NETLINK_ROUTE socket in the namespace of the thread that made it."""

    def __init__(self) -> None:
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
        )
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, kind: int, flags: int, body: bytes) -> None:
        """Send one request and wait for its ack; a kernel error becomes OSError(errno)."""
        self.seq += 1
        header = _HEADER.pack(
            _HEADER.size + len(body), kind, flags | _NLM_F_REQUEST | _NLM_F_ACK, self.seq, 0
        )
        self.sock.sendto(header + body, (0, 0))
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, msg_type, _, seq, _ = _HEADER.unpack_from(data, offset)
                if msg_type == _NLMSG_ERROR and seq == self.seq:
                    (error,) = struct.unpack_from("=i", data, offset + _HEADER.size)
                    if error:
                        raise OSError(-error, os.strerror(-error))
                    return
                offset += max(length, _HEADER.size) + (-length % 4)

    # -- links ------------------------------------------------------------------------------------------------

    def add_bridge(self, name: str) -> None:
        """Create bridge `name` (up); EEXIST if it is already there."""
        linkinfo = attr(_IFLA_LINKINFO, [attr(_IFLA_INFO_KIND, "bridge")])
        self.request(
            _RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL, ifinfo(up=True) + attr(_IFLA_IFNAME, name) + linkinfo
        )

    def set_mtu(self, index: int, mtu: int) -> None:
        """Set on an existing bridge this way, the MTU is the user's: the bridge no longer follows its ports'
        (br_change_mtu sets mtu_set_by_user; one given at creation falls back to 1500 with the last port)."""
        self.request(_RTM_NEWLINK, 0, ifinfo(index) + attr(_IFLA_MTU, mtu))

    def add_veth(
        self, name: str, master: int, peer: str, peer_netns_fd: int, peer_mac: str, mtu: int = 0
    ) -> None:
        """A veth pair in one request: `name` here, enslaved to `master` and up; `peer` created straight in the
        namespace behind `peer_netns_fd` with `peer_mac`, down: veth_newlink configures the peer before it
        pairs the two, so asking for the peer up here fails with ENOTCONN (drivers/net/veth.c)."""
        peer_msg = ifinfo() + attr(_IFLA_IFNAME, peer) + attr(_IFLA_NET_NS_FD, peer_netns_fd)
        peer_msg += attr(_IFLA_ADDRESS, _mac(peer_mac))
        mtu_attr = attr(_IFLA_MTU, mtu) if mtu else b""
        peer_msg += mtu_attr
        linkinfo = attr(
            _IFLA_LINKINFO,
            [attr(_IFLA_INFO_KIND, "veth"), attr(_IFLA_INFO_DATA, [attr(_VETH_INFO_PEER, peer_msg)])],
        )
        body = ifinfo(up=True) + attr(_IFLA_IFNAME, name) + mtu_attr + attr(_IFLA_MASTER, master) + linkinfo
        self.request(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL, body)

    def set_alias(self, index: int, alias: str) -> None:
        """The interface alias (only an existing link's: the kernel ignores IFLA_IFALIAS when creating one)."""
        self.request(_RTM_NEWLINK, 0, ifinfo(index) + attr(_IFLA_IFALIAS, alias))

    def set_up(self, index: int) -> None:
        self.request(_RTM_NEWLINK, 0, ifinfo(index, up=True))

    def delete_link(self, index: int) -> None:
        self.request(_RTM_DELLINK, 0, ifinfo(index))

    # -- addresses and routes ------------------------------------------------------------------------------------

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        """IPv4 `address/prefixlen` on link `index` (which also adds the subnet's route); EEXIST if present."""
        packed = ipaddress.IPv4Address(address).packed
        body = _IFADDR.pack(socket.AF_INET, prefixlen, 0, _RT_SCOPE_UNIVERSE, index)
        body += attr(_IFA_LOCAL, packed) + attr(_IFA_ADDRESS, packed)
        self.request(_RTM_NEWADDR, _NLM_F_CREATE | _NLM_F_EXCL, body)

    def add_default_route(self, gateway: str) -> None:
        body = _RTMSG.pack(
            socket.AF_INET, 0, 0, 0, _RT_TABLE_MAIN, _RTPROT_BOOT, _RT_SCOPE_UNIVERSE, _RTN_UNICAST, 0
        )
        body += attr(_RTA_GATEWAY, ipaddress.IPv4Address(gateway).packed)
        self.request(_RTM_NEWROUTE, _NLM_F_CREATE | _NLM_F_EXCL, body)


def index_of(name: str) -> int | None:
    """The link's index in the calling thread's namespace, or None."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None
