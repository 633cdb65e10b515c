"""The few rtnetlink requests container networking needs, over a raw NETLINK_ROUTE socket.

Why not pyroute2: its IPRoute (0.9, built on asyncio) takes about 220 ms to import here, ten times the whole
budget a container's network may add to `run` (20 ms), and the engine only sends a dozen kinds of request:
links, addresses and routes for containers; reading a namespace's eth0 and the tc filters that mirror it to
a VM's tap (isolation/microvm/network.py). Each is one message built from the kernel's structs
(include/uapi/linux/{netlink,rtnetlink,if_link,pkt_sched,pkt_cls,tc_act/tc_mirred}.h), sent with NLM_F_ACK
(a dump ends with NLMSG_DONE instead); the kernel's error is raised as OSError with its errno.

A socket belongs to the network namespace of the thread that opened it, so `Rtnl()` opened inside another
namespace (see `netns.run_in`) configures that namespace from then on."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterable

# netlink.h
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_DUMP, _NLM_F_EXCL, _NLM_F_CREATE = 0x1, 0x4, 0x300, 0x200, 0x400
_NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
# rtnetlink.h
_RTM_NEWLINK, _RTM_DELLINK, _RTM_GETLINK, _RTM_NEWADDR, _RTM_GETADDR, _RTM_NEWROUTE, _RTM_GETROUTE = (
    16,
    17,
    18,
    20,
    22,
    24,
    26,
)
_RTM_NEWQDISC, _RTM_DELQDISC, _RTM_NEWTFILTER = 36, 37, 44
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
_RTA_TABLE = 15
IFF_UP = 0x1
# pkt_sched.h, pkt_cls.h, tc_mirred.h, if_ether.h
_TC_H_INGRESS, _INGRESS_HANDLE = 0xFFFFFFF1, 0xFFFF0000
_TCA_KIND, _TCA_OPTIONS = 1, 2
_TCA_U32_SEL, _TCA_U32_ACT, _TC_U32_TERMINAL = 5, 7, 1
_TCA_ACT_KIND, _TCA_ACT_OPTIONS, _TCA_MIRRED_PARMS = 1, 2, 2
_TC_ACT_STOLEN, _TCA_EGRESS_REDIR = 4, 1
_ETH_P_ALL = 0x0003

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct(
    "=BBBBBBBBI"
)  # rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
_TCMSG = struct.Struct("=BxxxiIII")  # tcmsg: family, ifindex, handle, parent, info
_U32_SEL = struct.Struct(
    "=BBBxHHhhI"
)  # tc_u32_sel: flags, offshift, nkeys, offmask, off, offoff, hoff, hmask
_U32_KEY = struct.Struct("=IIii")  # tc_u32_key: mask, val, off, offmask
_MIRRED = struct.Struct(
    "=IIiiiiI"
)  # tc_mirred: tc_gen (index, capab, action, refcnt, bindcnt), eaction, ifindex


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


def attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """The rtattrs from `offset` on (after a message's fixed header): type -> payload."""
    out = {}
    while offset + 4 <= len(data):
        size, kind = struct.unpack_from("=HH", data, offset)
        if size < 4:
            break
        out[kind & _NLA_TYPE_MASK] = data[offset + 4 : offset + size]
        offset += size + (-size % 4)
    return out


def _ipv4(packed: bytes) -> str:
    return str(ipaddress.IPv4Address(packed))


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

    def request(self, kind: int, flags: int, body: bytes) -> list[bytes]:
        """Send one request and return the payloads of its replies, up to its ack (or, for a dump, its
        NLMSG_DONE); a kernel error becomes OSError(errno)."""
        self.seq += 1
        ack = 0 if flags & _NLM_F_DUMP == _NLM_F_DUMP else _NLM_F_ACK
        header = _HEADER.pack(_HEADER.size + len(body), kind, flags | _NLM_F_REQUEST | ack, self.seq, 0)
        self.sock.sendto(header + body, (0, 0))
        replies: list[bytes] = []
        while True:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, msg_type, _, seq, _ = _HEADER.unpack_from(data, offset)
                payload = data[offset + _HEADER.size : offset + max(length, _HEADER.size)]
                offset += max(length, _HEADER.size) + (-length % 4)
                if seq != self.seq:
                    continue
                if msg_type in (_NLMSG_ERROR, _NLMSG_DONE):
                    (error,) = struct.unpack_from("=i", payload) if len(payload) >= 4 else (0,)
                    if error:
                        raise OSError(-error, os.strerror(-error))
                    return replies
                replies.append(payload)

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

    def link(self, index: int) -> tuple[str, int]:
        """Link `index`'s MAC address and MTU."""
        (reply,) = self.request(_RTM_GETLINK, 0, ifinfo(index))
        found = attrs(reply, _IFINFO.size)
        (mtu,) = struct.unpack("=I", found[_IFLA_MTU])
        return ":".join(f"{b:02x}" for b in found[_IFLA_ADDRESS]), mtu

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

    def ipv4_addresses(self, index: int) -> list[tuple[str, int]]:
        """Link `index`'s IPv4 addresses as (address, prefixlen)."""
        out = []
        for reply in self.request(_RTM_GETADDR, _NLM_F_DUMP, _IFADDR.pack(socket.AF_INET, 0, 0, 0, 0)):
            family, prefixlen, _, _, link = _IFADDR.unpack_from(reply)
            found = attrs(reply, _IFADDR.size)
            local = found.get(_IFA_LOCAL) or found.get(_IFA_ADDRESS)
            if family == socket.AF_INET and link == index and local:
                out.append((_ipv4(local), prefixlen))
        return out

    def default_gateway(self) -> str:
        """The gateway of the main table's IPv4 default route ("" if there is none)."""
        body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
        for reply in self.request(_RTM_GETROUTE, _NLM_F_DUMP, body):
            family, dst_len, _, _, table, _, _, kind, _ = _RTMSG.unpack_from(reply)
            found = attrs(reply, _RTMSG.size)
            if _RTA_TABLE in found:
                (table,) = struct.unpack("=I", found[_RTA_TABLE])
            if family == socket.AF_INET and dst_len == 0 and table == _RT_TABLE_MAIN and kind == _RTN_UNICAST:
                return _ipv4(found[_RTA_GATEWAY]) if _RTA_GATEWAY in found else ""
        return ""

    # -- traffic control ------------------------------------------------------------------------------------------

    def add_ingress_qdisc(self, index: int) -> None:
        """The ingress qdisc on link `index` (`tc qdisc add dev X ingress`); EEXIST if it has one."""
        body = _TCMSG.pack(socket.AF_UNSPEC, index, _INGRESS_HANDLE, _TC_H_INGRESS, 0) + attr(
            _TCA_KIND, "ingress"
        )
        self.request(_RTM_NEWQDISC, _NLM_F_CREATE | _NLM_F_EXCL, body)

    def delete_ingress_qdisc(self, index: int) -> None:
        """Its filters go with it; EINVAL (or ENOENT) if the link has none."""
        self.request(_RTM_DELQDISC, 0, _TCMSG.pack(socket.AF_UNSPEC, index, 0, _TC_H_INGRESS, 0))

    def add_redirect(self, index: int, target: int) -> None:
        """Every frame arriving on link `index` leaves through link `target` instead: `tc filter add dev X
        parent ffff: protocol all u32 match u8 0 0 action mirred egress redirect dev Y` (u32 with one key
        that matches anything: matchall is often not built)."""
        selector = _U32_SEL.pack(_TC_U32_TERMINAL, 0, 1, 0, 0, 0, 0, 0) + _U32_KEY.pack(0, 0, 0, 0)
        mirred = _MIRRED.pack(0, 0, _TC_ACT_STOLEN, 0, 0, _TCA_EGRESS_REDIR, target)
        action = [attr(_TCA_ACT_KIND, "mirred"), attr(_TCA_ACT_OPTIONS, [attr(_TCA_MIRRED_PARMS, mirred)])]
        options = [
            attr(_TCA_U32_SEL, selector),
            attr(_TCA_U32_ACT, [attr(1, action)]),
        ]  # action 1 of the list
        protocol = socket.htons(_ETH_P_ALL)  # info: priority (0: the kernel picks one) << 16 | protocol
        body = _TCMSG.pack(socket.AF_UNSPEC, index, 0, _INGRESS_HANDLE, protocol)
        body += attr(_TCA_KIND, "u32") + attr(_TCA_OPTIONS, options)
        self.request(_RTM_NEWTFILTER, _NLM_F_CREATE | _NLM_F_EXCL, body)


def index_of(name: str) -> int | None:
    """The link's index in the calling thread's namespace, or None."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None
