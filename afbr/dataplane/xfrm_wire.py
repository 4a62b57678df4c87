"""NETLINK_XFRM wire formats: the structures of the kernel's include/uapi/linux/xfrm.h.

pyroute2 has no XFRM SA/policy API, and these structures are fixed-size C structs with a
handful of attributes, so they are packed with `struct` here (clearer and faster than
declaring them on pyroute2's nlmsg classes).  Layouts are those of x86-64 (the host and the
User-Mode-Linux guest): u64 members are 8-byte aligned, so `xfrm_usersa_info` is 224 bytes,
`xfrm_userpolicy_info` 168, `xfrm_user_tmpl` 64 and `xfrm_user_acquire` 280.

This module does no I/O.  Decoders raise `XfrmDecodeError` on anything short or malformed.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import IntEnum

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

AF_INET = 2
AF_INET6 = 10
IPPROTO_ESP = 50
XFRM_INF = 0xFFFF_FFFF_FFFF_FFFF  # "no limit" in xfrm_lifetime_cfg
IF_ID_MIN = 0xAFB0_0001  # afbr's xfrm interface ids (if_id 0 is "none" to the kernel)
IF_ID_MAX = 0xAFB0_FFFF


class XfrmDecodeError(ValueError):
    """A NETLINK_XFRM message from the kernel was shorter or otherwise other than expected."""


class XfrmMsgType(IntEnum):
    """XFRM_MSG_* netlink message types (xfrm.h)."""

    NEWSA = 0x10
    DELSA = 0x11
    GETSA = 0x12
    NEWPOLICY = 0x13
    DELPOLICY = 0x14
    GETPOLICY = 0x15
    ALLOCSPI = 0x16
    ACQUIRE = 0x17
    EXPIRE = 0x18
    UPDPOLICY = 0x19
    UPDSA = 0x1A
    POLEXPIRE = 0x1B
    FLUSHSA = 0x1C
    FLUSHPOLICY = 0x1D


class XfrmAttr(IntEnum):
    """XFRMA_* attribute types (enum xfrm_attr_type_t)."""

    ALG_AUTH = 1
    ALG_CRYPT = 2
    ENCAP = 4
    TMPL = 5
    LTIME_VAL = 9
    REPLAY_VAL = 10
    SRCADDR = 13
    POLICY_TYPE = 16
    ALG_AEAD = 18
    ALG_AUTH_TRUNC = 20
    MARK = 21
    REPLAY_ESN_VAL = 23
    SA_EXTRA_FLAGS = 24
    IF_ID = 31


class XfrmGroup(IntEnum):
    """XFRMNLGRP_* multicast groups (enum xfrm_nlgroups)."""

    ACQUIRE = 1
    EXPIRE = 2
    SA = 3
    POLICY = 4


class XfrmMode(IntEnum):
    """XFRM_MODE_*."""

    TRANSPORT = 0
    TUNNEL = 1


class PolicyDir(IntEnum):
    """XFRM_POLICY_IN/OUT/FWD."""

    IN = 0
    OUT = 1
    FWD = 2


class PolicyAction(IntEnum):
    ALLOW = 0
    BLOCK = 1


XFRM_STATE_AF_UNSPEC = 32  # keep a zero selector: inner family may differ from the outer one
UDP_ENCAP_ESPINUDP = 2  # RFC 3948 UDP encapsulation (with the non-ESP marker for IKE)


def pack_address(addr: IPAddress | None) -> bytes:
    """xfrm_address_t: 16 bytes, an IPv4 address in the first four."""
    if addr is None:
        return bytes(16)
    return addr.packed.ljust(16, b"\0")


def unpack_address(raw: bytes, family: int) -> IPAddress | None:
    if family == AF_INET:
        return ipaddress.IPv4Address(raw[:4])
    if family == AF_INET6:
        return ipaddress.IPv6Address(raw[:16])
    return None


def family_of(addr: IPAddress) -> int:
    return AF_INET if addr.version == 4 else AF_INET6


@dataclass(frozen=True)
class Selector:
    """struct xfrm_selector (56 bytes).  family 0 with zero prefixes matches everything."""

    family: int = 0
    daddr: IPAddress | None = None
    saddr: IPAddress | None = None
    prefixlen_d: int = 0
    prefixlen_s: int = 0
    proto: int = 0
    dport: int = 0
    dport_mask: int = 0
    sport: int = 0
    sport_mask: int = 0
    ifindex: int = 0

    FORMAT = struct.Struct("=16s16sHHHHHBBB3xiI")  # ports are big-endian: swapped by hand

    @classmethod
    def any_of(cls, family: int) -> Selector:
        """0.0.0.0/0 or ::/0: the wildcard selector of route-based policies."""
        zero: IPAddress = (
            ipaddress.IPv4Address(0) if family == AF_INET else ipaddress.IPv6Address(0)
        )
        return cls(family=family, daddr=zero, saddr=zero)

    def pack(self) -> bytes:
        return self.FORMAT.pack(
            pack_address(self.daddr),
            pack_address(self.saddr),
            _be16(self.dport),
            _be16(self.dport_mask),
            _be16(self.sport),
            _be16(self.sport_mask),
            self.family,
            self.prefixlen_d,
            self.prefixlen_s,
            self.proto,
            self.ifindex,
            0,
        )

    @classmethod
    def unpack(cls, raw: bytes) -> Selector:
        need(raw, cls.FORMAT.size, "xfrm_selector")
        d, s, dp, dpm, sp, spm, fam, pld, pls, proto, ifindex, _user = cls.FORMAT.unpack_from(raw)
        return cls(
            family=fam,
            daddr=unpack_address(d, fam),
            saddr=unpack_address(s, fam),
            prefixlen_d=pld,
            prefixlen_s=pls,
            proto=proto,
            dport=_be16(dp),
            dport_mask=_be16(dpm),
            sport=_be16(sp),
            sport_mask=_be16(spm),
            ifindex=ifindex,
        )


def _be16(value: int) -> int:
    """Swap a 16-bit value between host (little-endian) and network order."""
    return ((value & 0xFF) << 8) | ((value >> 8) & 0xFF)


def need(raw: bytes, size: int, what: str) -> None:
    if len(raw) < size:
        raise XfrmDecodeError(f"{what}: {len(raw)} bytes, need {size}")


@dataclass(frozen=True)
class Lifetime:
    """struct xfrm_lifetime_cfg: soft and hard limits; XFRM_INF means none."""

    soft_bytes: int = XFRM_INF
    hard_bytes: int = XFRM_INF
    soft_packets: int = XFRM_INF
    hard_packets: int = XFRM_INF
    soft_add_seconds: int = 0  # 0 = no limit for the time limits
    hard_add_seconds: int = 0
    soft_use_seconds: int = 0
    hard_use_seconds: int = 0

    FORMAT = struct.Struct("=8Q")

    def pack(self) -> bytes:
        return self.FORMAT.pack(
            self.soft_bytes,
            self.hard_bytes,
            self.soft_packets,
            self.hard_packets,
            self.soft_add_seconds,
            self.hard_add_seconds,
            self.soft_use_seconds,
            self.hard_use_seconds,
        )

    @classmethod
    def unpack(cls, raw: bytes) -> Lifetime:
        need(raw, cls.FORMAT.size, "xfrm_lifetime_cfg")
        return cls(*cls.FORMAT.unpack_from(raw))


@dataclass(frozen=True)
class LifetimeCurrent:
    """struct xfrm_lifetime_cur: what an SA has carried so far."""

    octets: int = 0
    packets: int = 0
    add_time: int = 0
    use_time: int = 0

    FORMAT = struct.Struct("=4Q")

    @classmethod
    def unpack(cls, raw: bytes) -> LifetimeCurrent:
        need(raw, cls.FORMAT.size, "xfrm_lifetime_cur")
        return cls(*cls.FORMAT.unpack_from(raw))


# struct xfrm_usersa_info: sel(56) id(daddr 16, spi be32, proto u8, 3 pad) saddr(16) lft(64)
# curlft(32) stats(3 x u32) seq reqid family mode replay_window flags, padded to 224.
USERSA_INFO = struct.Struct("=56s16sIB3x16s64s32sIIIIIHBBB7x")
USERSA_ID = struct.Struct("=16sIHBx")  # struct xfrm_usersa_id (24)
USERSPI_INFO_TAIL = struct.Struct("=II")  # min, max after xfrm_usersa_info
USERPOLICY_INFO = struct.Struct("=56s64s32sIIBBBB4x")  # struct xfrm_userpolicy_info (168)
USERPOLICY_ID = struct.Struct("=56sIB3x")  # struct xfrm_userpolicy_id (64)
USER_TMPL = struct.Struct("=16sIB3xH2x16sIBBBxIII")  # struct xfrm_user_tmpl (64)
ENCAP_TMPL = struct.Struct("=HHH2x16s")  # struct xfrm_encap_tmpl (24), ports big-endian
ALGO_HEAD = struct.Struct("=64sI")  # struct xfrm_algo
ALGO_AUTH_HEAD = struct.Struct("=64sII")  # struct xfrm_algo_auth / xfrm_algo_aead
MARK = struct.Struct("=II")
REPLAY_ESN_HEAD = struct.Struct("=6I")  # bmp_len oseq seq oseq_hi seq_hi replay_window
USER_EXPIRE_TAIL = struct.Struct("=B7x")
USER_ACQUIRE_TAIL = struct.Struct("=IIII")  # aalgos ealgos calgos seq (after id/saddr/sel/pol)

# the kernel's layouts (x86-64): checked explicitly, since `assert` vanishes under `python -O`
for _struct, _size in (
    (USERSA_INFO, 224),
    (USERPOLICY_INFO, 168),
    (USER_TMPL, 64),
    (USERSA_ID, 24),
):
    if _struct.size != _size:
        raise ImportError(f"xfrm struct {_struct.format} is {_struct.size} bytes, not {_size}")


def pack_encap(sport: int, dport: int) -> bytes:
    """struct xfrm_encap_tmpl for ESP in UDP (RFC 3948)."""
    return ENCAP_TMPL.pack(UDP_ENCAP_ESPINUDP, _be16(sport), _be16(dport), bytes(16))


def unpack_encap(raw: bytes) -> tuple[int, int, int]:
    need(raw, ENCAP_TMPL.size, "xfrm_encap_tmpl")
    kind, sport, dport, _oa = ENCAP_TMPL.unpack_from(raw)
    return kind, _be16(sport), _be16(dport)


def pack_algo(name: str, key: bytes) -> bytes:
    return ALGO_HEAD.pack(name.encode(), len(key) * 8) + key


def pack_algo_with_len(name: str, key: bytes, bits: int) -> bytes:
    """xfrm_algo_auth (truncation length) and xfrm_algo_aead (ICV length) share a layout."""
    return ALGO_AUTH_HEAD.pack(name.encode(), len(key) * 8, bits) + key


def unpack_algo_name(raw: bytes) -> str:
    need(raw, 64, "xfrm_algo")
    return raw[:64].split(b"\0", 1)[0].decode("ascii", "replace")


def pack_replay_esn(window: int) -> bytes:
    """xfrm_replay_state_esn with ESN off: a bitmap replay window wider than 32 packets."""
    words = (window + 31) // 32
    return REPLAY_ESN_HEAD.pack(words, 0, 0, 0, 0, window) + bytes(4 * words)
