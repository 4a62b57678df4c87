"""NETLINK_XFRM records: xfrm_usersa_info, xfrm_user_tmpl and xfrm_userpolicy_info.

The fixed structures of SA and policy messages, as frozen dataclasses with pack/unpack
(layouts in xfrm_wire).  No I/O; decoders raise XfrmDecodeError on short input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from afbr.dataplane.xfrm_wire import (
    IPPROTO_ESP,
    USER_TMPL,
    USERPOLICY_INFO,
    USERSA_INFO,
    IPAddress,
    Lifetime,
    LifetimeCurrent,
    PolicyAction,
    Selector,
    XfrmDecodeError,
    need,
    pack_address,
    unpack_address,
)


@dataclass(frozen=True)
class UserSaInfo:
    """struct xfrm_usersa_info, the fixed part of NEWSA/UPDSA/GETSA replies and EXPIRE."""

    selector: Selector
    daddr: IPAddress | None
    spi: int
    proto: int
    saddr: IPAddress | None
    lifetime: Lifetime
    current: LifetimeCurrent
    replay_window_drops: int
    replay_drops: int
    integrity_failed: int
    seq: int
    reqid: int
    family: int
    mode: int
    replay_window: int
    flags: int

    def pack(self) -> bytes:
        cur = self.current
        return USERSA_INFO.pack(
            self.selector.pack(),
            pack_address(self.daddr),
            _be32(self.spi),
            self.proto,
            pack_address(self.saddr),
            self.lifetime.pack(),
            LifetimeCurrent.FORMAT.pack(cur.octets, cur.packets, cur.add_time, cur.use_time),
            self.replay_window_drops,
            self.replay_drops,
            self.integrity_failed,
            self.seq,
            self.reqid,
            self.family,
            self.mode,
            self.replay_window,
            self.flags,
        )

    @classmethod
    def unpack(cls, raw: bytes) -> UserSaInfo:
        need(raw, USERSA_INFO.size, "xfrm_usersa_info")
        (sel, d, spi, proto, s, lft, cur, rw, rp, integ, seq, reqid, fam, mode, win, flags) = (
            USERSA_INFO.unpack_from(raw)
        )
        return cls(
            selector=Selector.unpack(sel),
            daddr=unpack_address(d, fam),
            spi=_be32(spi),
            proto=proto,
            saddr=unpack_address(s, fam),
            lifetime=Lifetime.unpack(lft),
            current=LifetimeCurrent.unpack(cur),
            replay_window_drops=rw,
            replay_drops=rp,
            integrity_failed=integ,
            seq=seq,
            reqid=reqid,
            family=fam,
            mode=mode,
            replay_window=win,
            flags=flags,
        )


def _be32(value: int) -> int:
    """Swap a 32-bit value between host (little-endian) and network order (SPIs)."""
    return int.from_bytes(value.to_bytes(4, "little"), "big")


@dataclass(frozen=True)
class UserTemplate:
    """struct xfrm_user_tmpl: which SA a policy asks for."""

    family: int
    daddr: IPAddress | None
    saddr: IPAddress | None
    reqid: int
    mode: int
    spi: int = 0
    proto: int = IPPROTO_ESP
    share: int = 0
    optional: int = 0
    aalgos: int = 0xFFFF_FFFF
    ealgos: int = 0xFFFF_FFFF
    calgos: int = 0xFFFF_FFFF

    def pack(self) -> bytes:
        return USER_TMPL.pack(
            pack_address(self.daddr),
            _be32(self.spi),
            self.proto,
            self.family,
            pack_address(self.saddr),
            self.reqid,
            self.mode,
            self.share,
            self.optional,
            self.aalgos,
            self.ealgos,
            self.calgos,
        )

    @classmethod
    def unpack_all(cls, raw: bytes) -> list[UserTemplate]:
        if len(raw) % USER_TMPL.size:
            raise XfrmDecodeError(f"XFRMA_TMPL of {len(raw)} bytes")
        out = []
        for d, spi, proto, fam, s, reqid, mode, share, opt, aa, ea, ca in USER_TMPL.iter_unpack(
            raw
        ):
            out.append(
                cls(
                    fam,
                    unpack_address(d, fam),
                    unpack_address(s, fam),
                    reqid,
                    mode,
                    _be32(spi),
                    proto,
                    share,
                    opt,
                    aa,
                    ea,
                    ca,
                )
            )
        return out


@dataclass(frozen=True)
class UserPolicyInfo:
    """struct xfrm_userpolicy_info."""

    selector: Selector
    direction: int
    action: int = PolicyAction.ALLOW
    priority: int = 0
    index: int = 0
    flags: int = 0
    share: int = 0
    lifetime: Lifetime = field(default_factory=Lifetime)

    def pack(self) -> bytes:
        return USERPOLICY_INFO.pack(
            self.selector.pack(),
            self.lifetime.pack(),
            bytes(32),
            self.priority,
            self.index,
            self.direction,
            self.action,
            self.flags,
            self.share,
        )

    @classmethod
    def unpack(cls, raw: bytes) -> UserPolicyInfo:
        need(raw, USERPOLICY_INFO.size, "xfrm_userpolicy_info")
        sel, lft, _cur, prio, index, direction, action, flags, share = USERPOLICY_INFO.unpack_from(
            raw
        )
        return cls(
            Selector.unpack(sel),
            direction,
            action,
            prio,
            index,
            flags,
            share,
            Lifetime.unpack(lft),
        )
