"""XFRM security associations: allocate SPIs, add/update/delete/read ESP states.

Typed functions over a `XfrmSocket` (NETLINK_XFRM).  Policies and the route-based layout are in
`xfrm_policy`, the xfrm interface in `xfrm_iface`, EXPIRE/ACQUIRE events in `xfrm_events`.

Ownership: every SA afbr installs carries a reqid in [REQID_MIN, REQID_MAX] (and, route-based,
an if_id in [IF_ID_MIN, IF_ID_MAX]); listing and flushing look only at those, so states of other
IKE daemons in the same namespace are never touched.

Make-before-break rekey (RFC 7296 §2.8; DESIGN.md) is an order of calls, see `rekey_swap`:
  1. install the NEW INBOUND SA first: from now on the peer may switch at any time;
  2. install the NEW OUTBOUND SA: the kernel prefers the newest matching state (it bumps the
     older state's generation, so cached routes re-resolve) and our traffic moves over;
  3. delete the OLD OUTBOUND SA, then the OLD INBOUND SA (the latter only once the peer has
     switched, i.e. after its DELETE or a grace period: packets still in flight use it).
Nothing is ever removed before its replacement exists, and with the route-based policies a
packet that finds no SA is dropped, never sent in clear.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from enum import IntEnum

from afbr.dataplane import xfrm_wire
from afbr.dataplane.xfrm_records import UserSaInfo
from afbr.dataplane.xfrm_socket import (
    NLM_F_CREATE,
    NLM_F_EXCL,
    NetlinkMessage,
    XfrmKernelError,
    XfrmSocket,
    attr,
    parse_attrs,
)
from afbr.dataplane.xfrm_wire import (
    IPPROTO_ESP,
    MARK,
    USERSA_ID,
    USERSA_INFO,
    USERSPI_INFO_TAIL,
    XFRM_STATE_AF_UNSPEC,
    IPAddress,
    Lifetime,
    LifetimeCurrent,
    Selector,
    XfrmAttr,
    XfrmDecodeError,
    XfrmMode,
    XfrmMsgType,
    family_of,
    pack_address,
    pack_algo,
    pack_algo_with_len,
    pack_encap,
    pack_replay_esn,
    unpack_algo_name,
    unpack_encap,
)

# afbr's xfrm interface ids live with the wire constants (no I/O), so the pure kernel_plan can
# import them without loading this module's socket; re-exported for the XFRM adapters
IF_ID_MIN = xfrm_wire.IF_ID_MIN
IF_ID_MAX = xfrm_wire.IF_ID_MAX
REQID_MIN = 0xAFB0_0000  # afbr's reqid range: states and policy templates it owns
REQID_MAX = 0xAFB0_FFFF
NAT_T_PORT = 4500  # RFC 3948 / RFC 7296 §2.23
LEGACY_REPLAY_MAX = 32  # the legacy replay bitmap is one u32; wider windows need the ESN form


class EspCipher(IntEnum):
    """ESP encryption, numbered as IKEv2 transform type 1 (RFC 7296 §3.3.2, IANA)."""

    NULL = 11
    AES_CBC = 12
    AES_GCM_16 = 20


class EspIntegrity(IntEnum):
    """ESP integrity, numbered as IKEv2 transform type 3; NONE with AES-GCM."""

    NONE = 0
    HMAC_SHA2_256_128 = 12
    HMAC_SHA2_512_256 = 14


# kernel algorithm name, key length in bytes, truncated ICV length in bits (RFC 4868 §2.3)
_INTEGRITY = {
    EspIntegrity.HMAC_SHA2_256_128: ("hmac(sha256)", 32, 128),
    EspIntegrity.HMAC_SHA2_512_256: ("hmac(sha512)", 64, 256),
}


GCM_SALT_LEN = 4  # RFC 4106 §8.1: the key material carries a 4-byte salt after the AES key


@dataclass(frozen=True)
class UdpEncap:
    """ESP in UDP (RFC 3948): the ports on the wire, 4500 unless a NAT remapped them."""

    sport: int = NAT_T_PORT
    dport: int = NAT_T_PORT


@dataclass(frozen=True)
class SaSpec:
    """Everything needed to install one ESP SA in one direction."""

    src: IPAddress
    dst: IPAddress
    spi: int
    reqid: int
    cipher: EspCipher
    encryption_key: bytes  # AES key (+ 4-byte salt for GCM); empty for NULL
    integrity: EspIntegrity = EspIntegrity.NONE
    integrity_key: bytes = b""
    mode: XfrmMode = XfrmMode.TUNNEL
    if_id: int = 0  # route-based: the peer's xfrm interface id
    encap: UdpEncap | None = None
    replay_window: int = 32  # inbound anti-replay window in packets; 0 for outbound SAs
    lifetime: Lifetime = field(default_factory=Lifetime)
    selector: Selector = field(default_factory=Selector)  # zero: any inner family/address
    mark: tuple[int, int] | None = None  # (value, mask)


@dataclass(frozen=True)
class SaRef:
    """What identifies an installed SA: (destination, SPI, ESP)."""

    dst: IPAddress
    spi: int
    src: IPAddress | None = None


@dataclass(frozen=True)
class SaState:
    """An SA as the kernel reports it, with its counters."""

    src: IPAddress | None
    dst: IPAddress | None
    spi: int
    reqid: int
    mode: int
    if_id: int
    octets: int
    packets: int
    add_time: int
    use_time: int
    replay_window_drops: int
    replay_drops: int
    integrity_failed: int
    lifetime: Lifetime
    algorithms: tuple[str, ...]
    encap: tuple[int, int] | None

    @property
    def ref(self) -> SaRef:
        if self.dst is None:
            raise XfrmDecodeError("SA without a destination address")
        return SaRef(self.dst, self.spi, self.src)


def is_afbr_reqid(reqid: int) -> bool:
    return REQID_MIN <= reqid <= REQID_MAX


def _check_spec(spec: SaSpec) -> None:
    if not is_afbr_reqid(spec.reqid):
        raise ValueError(f"reqid {spec.reqid:#x} is outside afbr's range")
    if spec.src.version != spec.dst.version:
        raise ValueError("SA endpoints of different families")


def _algorithm_attrs(spec: SaSpec) -> bytes:
    if spec.cipher == EspCipher.AES_GCM_16:
        if len(spec.encryption_key) not in (16 + GCM_SALT_LEN, 32 + GCM_SALT_LEN):
            raise ValueError("AES-GCM key must be 16 or 32 bytes plus a 4-byte salt")
        # RFC 4106: 16-octet ICV
        return attr(
            XfrmAttr.ALG_AEAD, pack_algo_with_len("rfc4106(gcm(aes))", spec.encryption_key, 128)
        )
    if spec.integrity not in _INTEGRITY:
        raise ValueError("non-AEAD ESP needs an HMAC-SHA2 integrity algorithm")
    auth_name, auth_key_len, icv_bits = _INTEGRITY[spec.integrity]
    if len(spec.integrity_key) != auth_key_len:
        raise ValueError(f"{auth_name} needs a {auth_key_len}-byte key")
    if spec.cipher == EspCipher.AES_CBC:
        if len(spec.encryption_key) not in (16, 32):
            raise ValueError("AES-CBC key must be 16 or 32 bytes")
        crypt = pack_algo("cbc(aes)", spec.encryption_key)
    else:
        crypt = pack_algo("ecb(cipher_null)", b"")  # RFC 5619 §4.4.2: integrity-only ESP
    auth = pack_algo_with_len(auth_name, spec.integrity_key, icv_bits)  # RFC 4868 §2.3
    return attr(XfrmAttr.ALG_CRYPT, crypt) + attr(XfrmAttr.ALG_AUTH_TRUNC, auth)


def _sa_info(spec: SaSpec) -> UserSaInfo:
    legacy_window = spec.replay_window if spec.replay_window <= LEGACY_REPLAY_MAX else 0
    return UserSaInfo(
        selector=spec.selector,
        daddr=spec.dst,
        spi=spec.spi,
        proto=IPPROTO_ESP,
        saddr=spec.src,
        lifetime=spec.lifetime,
        current=LifetimeCurrent(),
        replay_window_drops=0,
        replay_drops=0,
        integrity_failed=0,
        seq=0,
        reqid=spec.reqid,
        family=family_of(spec.dst),
        mode=spec.mode,
        replay_window=legacy_window,
        flags=XFRM_STATE_AF_UNSPEC if spec.selector.family == 0 else 0,
    )


def _sa_payload(spec: SaSpec) -> bytes:
    _check_spec(spec)
    out = _sa_info(spec).pack() + _algorithm_attrs(spec)
    if spec.replay_window > LEGACY_REPLAY_MAX:
        out += attr(XfrmAttr.REPLAY_ESN_VAL, pack_replay_esn(spec.replay_window))
    if spec.encap is not None:
        out += attr(XfrmAttr.ENCAP, pack_encap(spec.encap.sport, spec.encap.dport))
    if spec.if_id:
        out += attr(XfrmAttr.IF_ID, spec.if_id.to_bytes(4, "little"))
    if spec.mark is not None:
        out += attr(XfrmAttr.MARK, MARK.pack(*spec.mark))
    return out


def add_sa(sock: XfrmSocket, spec: SaSpec) -> None:
    """Install a new SA (XFRM_MSG_NEWSA); fails with EEXIST if that SPI is in use."""
    sock.request(XfrmMsgType.NEWSA, _sa_payload(spec), NLM_F_CREATE | NLM_F_EXCL)


def update_sa(sock: XfrmSocket, spec: SaSpec) -> None:
    """Complete an SA whose SPI came from `allocate_spi`, or replace one (XFRM_MSG_UPDSA)."""
    sock.request(XfrmMsgType.UPDSA, _sa_payload(spec))


def allocate_spi(
    sock: XfrmSocket,
    src: IPAddress,
    dst: IPAddress,
    reqid: int,
    *,
    mode: XfrmMode = XfrmMode.TUNNEL,
    if_id: int = 0,
    spi_min: int = 0x100,
    spi_max: int = 0xFFFF_FFFF,
) -> int:
    """Reserve an unused inbound SPI (XFRM_MSG_ALLOCSPI) and return it.

    The kernel keeps a larval state for it (for about 30 s, XFRM_ACQ_EXPIRES); complete it with
    `update_sa` using the same src/dst/SPI.  `dst` is our own address (the SA is inbound).
    """
    if not is_afbr_reqid(reqid):
        raise ValueError(f"reqid {reqid:#x} is outside afbr's range")
    info = UserSaInfo(
        selector=Selector(),
        daddr=dst,
        spi=0,
        proto=IPPROTO_ESP,
        saddr=src,
        lifetime=Lifetime(),
        current=LifetimeCurrent(),
        replay_window_drops=0,
        replay_drops=0,
        integrity_failed=0,
        seq=0,
        reqid=reqid,
        family=family_of(dst),
        mode=mode,
        replay_window=0,
        flags=0,
    )
    payload = info.pack() + USERSPI_INFO_TAIL.pack(spi_min, spi_max)
    if if_id:
        payload += attr(XfrmAttr.IF_ID, if_id.to_bytes(4, "little"))
    for msg in sock.request(XfrmMsgType.ALLOCSPI, payload):
        if msg.msg_type == XfrmMsgType.NEWSA:
            return UserSaInfo.unpack(msg.payload).spi
    raise XfrmKernelError(errno.EPROTO, "ALLOCSPI answered without an SA")


def _sa_id(ref: SaRef) -> bytes:
    payload = USERSA_ID.pack(
        pack_address(ref.dst), _spi_be(ref.spi), family_of(ref.dst), IPPROTO_ESP
    )
    if ref.src is not None:
        payload += attr(XfrmAttr.SRCADDR, pack_address(ref.src))
    return payload


def _spi_be(spi: int) -> int:
    return int.from_bytes(spi.to_bytes(4, "big"), "little")


def delete_sa(sock: XfrmSocket, ref: SaRef, *, missing_ok: bool = True) -> bool:
    """Remove an SA (XFRM_MSG_DELSA); True if it existed."""
    try:
        sock.request(XfrmMsgType.DELSA, _sa_id(ref))
    except XfrmKernelError as exc:
        if missing_ok and exc.errno == errno.ESRCH:
            return False
        raise
    return True


def get_sa(sock: XfrmSocket, ref: SaRef) -> SaState | None:
    """Read one SA with its counters (bytes, packets, replay and integrity failures)."""
    try:
        replies = sock.request(XfrmMsgType.GETSA, _sa_id(ref))
    except XfrmKernelError as exc:
        if exc.errno == errno.ESRCH:
            return None
        raise
    for msg in replies:
        if msg.msg_type == XfrmMsgType.NEWSA:
            return parse_sa(msg)
    return None


def list_sas(sock: XfrmSocket, *, only_afbr: bool = True) -> list[SaState]:
    """Every SA of the namespace (afbr's only, by reqid range, unless told otherwise)."""
    states = [parse_sa(msg) for msg in sock.dump(XfrmMsgType.GETSA)]
    return [s for s in states if not only_afbr or is_afbr_reqid(s.reqid)]


def flush_afbr_sas(sock: XfrmSocket) -> int:
    """Delete afbr's SAs (and nobody else's); return how many went."""
    return sum(delete_sa(sock, state.ref) for state in list_sas(sock))


def rekey_swap(
    sock: XfrmSocket,
    new_inbound: SaSpec,
    new_outbound: SaSpec,
    old_outbound: SaRef | None,
    old_inbound: SaRef | None,
) -> None:
    """Make-before-break swap: new in, new out, then old out and old in (module docstring).

    A caller that must keep the old inbound SA a while (packets in flight) passes None for it
    and deletes it later with `delete_sa`.
    """
    add_sa(sock, new_inbound)
    add_sa(sock, new_outbound)
    if old_outbound is not None:
        delete_sa(sock, old_outbound)
    if old_inbound is not None:
        delete_sa(sock, old_inbound)


def parse_sa(msg: NetlinkMessage) -> SaState:
    """A NEWSA message (GETSA reply or dump entry) as an SaState."""
    info = UserSaInfo.unpack(msg.payload)
    attrs = parse_attrs(msg.payload[USERSA_INFO.size :])
    current = info.current
    if XfrmAttr.LTIME_VAL in attrs:
        current = LifetimeCurrent.unpack(attrs[XfrmAttr.LTIME_VAL])
    algorithms = tuple(
        unpack_algo_name(attrs[kind])
        for kind in (XfrmAttr.ALG_AEAD, XfrmAttr.ALG_CRYPT, XfrmAttr.ALG_AUTH_TRUNC)
        if kind in attrs
    )
    encap = None
    if XfrmAttr.ENCAP in attrs:
        _kind, sport, dport = unpack_encap(attrs[XfrmAttr.ENCAP])
        encap = (sport, dport)
    if_id = 0
    if len(attrs.get(XfrmAttr.IF_ID, b"")) >= 4:
        if_id = int.from_bytes(attrs[XfrmAttr.IF_ID][:4], "little")
    return SaState(
        src=info.saddr,
        dst=info.daddr,
        spi=info.spi,
        reqid=info.reqid,
        mode=info.mode,
        if_id=if_id,
        octets=current.octets,
        packets=current.packets,
        add_time=current.add_time,
        use_time=current.use_time,
        replay_window_drops=info.replay_window_drops,
        replay_drops=info.replay_drops,
        integrity_failed=info.integrity_failed,
        lifetime=info.lifetime,
        algorithms=algorithms,
        encap=encap,
    )
