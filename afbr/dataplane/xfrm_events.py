"""EXPIRE and ACQUIRE events from the kernel, as typed values.

The kernel multicasts XFRM_MSG_EXPIRE to XFRMNLGRP_EXPIRE when an SA passes its soft limit
(a rekey is due: RFC 7296 §2.8) or its hard limit (the SA is gone), and XFRM_MSG_ACQUIRE to
XFRMNLGRP_ACQUIRE when an out policy found no SA for its template.  Only events about afbr's
objects (reqid or if_id in afbr's ranges) are passed on.  With `watch_deletions`, the listener
also joins XFRMNLGRP_SA and XFRMNLGRP_POLICY and reports each SA or policy deleted or flushed,
by anyone (`ip xfrm state flush` included), as a `KernelStateChanged`: the owner of the SAs
re-reads the kernel and repairs what it lost.

`XfrmEventListener` is a socket: a blocking `receive(timeout)` for tests and tools, and
`fileno()` + `read_pending()` for an asyncio reader (`loop.add_reader`).
"""

from __future__ import annotations

from dataclasses import dataclass

from afbr.dataplane.xfrm import IF_ID_MAX, IF_ID_MIN, is_afbr_reqid
from afbr.dataplane.xfrm_records import UserPolicyInfo, UserSaInfo, UserTemplate
from afbr.dataplane.xfrm_socket import NetlinkMessage, XfrmSocket, parse_attrs
from afbr.dataplane.xfrm_wire import (
    USER_ACQUIRE_TAIL,
    USER_EXPIRE_TAIL,
    USERPOLICY_INFO,
    USERSA_INFO,
    IPAddress,
    Selector,
    XfrmAttr,
    XfrmDecodeError,
    XfrmGroup,
    XfrmMsgType,
    need,
    unpack_address,
)

# struct xfrm_user_acquire: xfrm_id(24) saddr(16) sel(56) policy(168) then the tail
_ACQ_ID = 0
_ACQ_SADDR = 24
_ACQ_SEL = 40
_ACQ_POLICY = 96
_ACQ_TAIL = _ACQ_POLICY + USERPOLICY_INFO.size
_ACQ_SIZE = _ACQ_TAIL + USER_ACQUIRE_TAIL.size


@dataclass(frozen=True)
class SaExpired:
    """An SA reached a lifetime limit: soft (hard=False) means rekey now, hard means gone."""

    src: IPAddress | None
    dst: IPAddress | None
    spi: int
    reqid: int
    if_id: int
    hard: bool


@dataclass(frozen=True)
class SaAcquire:
    """An out policy needs an SA that does not exist (start an IKE exchange for it)."""

    src: IPAddress | None
    dst: IPAddress | None
    selector: Selector
    reqid: int
    if_id: int
    policy_index: int
    seq: int


@dataclass(frozen=True)
class KernelStateChanged:
    """SAs or policies were deleted or flushed (ours or not): re-read the kernel."""

    what: str  # "sa-deleted", "sa-flush", "policy-deleted", "policy-flush"


XfrmEvent = SaExpired | SaAcquire | KernelStateChanged

_DELETIONS = {
    XfrmMsgType.DELSA: "sa-deleted",
    XfrmMsgType.FLUSHSA: "sa-flush",
    XfrmMsgType.DELPOLICY: "policy-deleted",
    XfrmMsgType.FLUSHPOLICY: "policy-flush",
}


def _if_id(attrs: dict[int, bytes]) -> int:
    raw = attrs.get(XfrmAttr.IF_ID, b"")
    return int.from_bytes(raw[:4], "little") if len(raw) >= 4 else 0


def parse_expire(payload: bytes) -> SaExpired:
    """struct xfrm_user_expire: the SA's usersa_info and the hard flag."""
    need(payload, USERSA_INFO.size + USER_EXPIRE_TAIL.size, "xfrm_user_expire")
    info = UserSaInfo.unpack(payload)
    (hard,) = USER_EXPIRE_TAIL.unpack_from(payload, USERSA_INFO.size)
    attrs = parse_attrs(payload[USERSA_INFO.size + USER_EXPIRE_TAIL.size :])
    return SaExpired(info.saddr, info.daddr, info.spi, info.reqid, _if_id(attrs), bool(hard))


def parse_acquire(payload: bytes) -> SaAcquire:
    """struct xfrm_user_acquire, with the policy's template (reqid) from XFRMA_TMPL."""
    need(payload, _ACQ_SIZE, "xfrm_user_acquire")
    attrs = parse_attrs(payload[_ACQ_SIZE:])
    templates = UserTemplate.unpack_all(attrs.get(XfrmAttr.TMPL, b""))
    policy = UserPolicyInfo.unpack(payload[_ACQ_POLICY:_ACQ_TAIL])
    selector = Selector.unpack(payload[_ACQ_SEL:_ACQ_POLICY])
    family = templates[0].family if templates else selector.family
    *_algos, seq = USER_ACQUIRE_TAIL.unpack_from(payload, _ACQ_TAIL)
    return SaAcquire(
        src=unpack_address(payload[_ACQ_SADDR:_ACQ_SEL], family),
        dst=unpack_address(payload[_ACQ_ID : _ACQ_ID + 16], family),
        selector=selector,
        reqid=templates[0].reqid if templates else 0,
        if_id=_if_id(attrs),
        policy_index=policy.index,
        seq=seq,
    )


def parse_event(msg: NetlinkMessage) -> XfrmEvent | None:
    """An EXPIRE, ACQUIRE or deletion message as an event; None for anything else."""
    if msg.msg_type in _DELETIONS:
        return KernelStateChanged(_DELETIONS[XfrmMsgType(msg.msg_type)])
    if msg.msg_type == XfrmMsgType.EXPIRE:
        return parse_expire(msg.payload)
    if msg.msg_type == XfrmMsgType.ACQUIRE:
        return parse_acquire(msg.payload)
    return None


def is_afbr_event(event: XfrmEvent) -> bool:
    if isinstance(event, KernelStateChanged):
        return True  # a flush names nobody; a deletion may be of ours
    return is_afbr_reqid(event.reqid) or IF_ID_MIN <= event.if_id <= IF_ID_MAX


class XfrmEventListener:
    """Subscribes to XFRMNLGRP_EXPIRE and XFRMNLGRP_ACQUIRE (and, `watch_deletions`, to the
    SA and policy groups) and yields afbr's events."""

    def __init__(
        self, netns: str | None = None, *, only_afbr: bool = True, watch_deletions: bool = False
    ) -> None:
        groups = [XfrmGroup.EXPIRE, XfrmGroup.ACQUIRE]
        if watch_deletions:
            groups += [XfrmGroup.SA, XfrmGroup.POLICY]
        self._sock = XfrmSocket(netns, groups=groups)
        self._only_afbr = only_afbr
        self.malformed = 0  # messages that did not parse (counted, never raised)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> XfrmEventListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def receive(self, timeout: float | None) -> list[XfrmEvent]:
        """Events waiting now, waiting up to `timeout` seconds for the first message."""
        return self._filter(self._sock.receive(timeout))

    def read_pending(self) -> list[XfrmEvent]:
        """Events already queued (for an asyncio reader callback); never blocks."""
        return self._filter(self._sock.receive(0))

    def _filter(self, messages: list[NetlinkMessage]) -> list[XfrmEvent]:
        events: list[XfrmEvent] = []
        for msg in messages:
            try:
                event = parse_event(msg)
            except XfrmDecodeError:
                self.malformed += 1
                continue
            if event is not None and (not self._only_afbr or is_afbr_event(event)):
                events.append(event)
        return events
