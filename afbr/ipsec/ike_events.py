"""Events the IKEv2 core hands to its user (the daemon, the XFRM adapter).

Every event names the IKE SA it comes from by `ike_sa` (the SPI pair).  A CHILD SA event holds
everything `afbr.dataplane.xfrm` needs to install the pair of kernel SAs: SPIs, algorithms and
keys per direction, addresses, mode, traffic selectors, UDP encapsulation and lifetimes.
Order for make-before-break: ChildSaRekeyed (install the new pair) comes before the
ChildSaDeleted of the pair it replaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from afbr.ipsec.ike_config import Address, Identity, IpsecMode
from afbr.ipsec.ike_payloads import TrafficSelector
from afbr.ipsec.ike_proposals import AlgorithmSuite


@dataclass(frozen=True, slots=True)
class IkeSaId:
    spi_i: bytes
    spi_r: bytes

    def __str__(self) -> str:
        return f"{self.spi_i.hex()}_i {self.spi_r.hex()}_r"


@dataclass(frozen=True, slots=True)
class EspSaKeys:
    """One direction of a CHILD SA: kernel SPI, encryption key (AES-GCM: salt at the end, as
    the kernel's rfc4106(gcm(aes)) takes it) and integrity key (empty for AEAD)."""

    spi: int
    encryption_key: bytes = field(repr=False)  # secrets: kept out of repr() and so out of logs
    integrity_key: bytes = field(repr=False)
    source: str
    destination: str


@dataclass(frozen=True, slots=True)
class ChildSaParams:
    """A negotiated ESP SA pair.  `algorithms.encryption`/`key_length`/`integrity` are IANA
    IKEv2 transform ids (ENCR_AES_GCM_16 with ICV 16, ENCR_AES_CBC, ENCR_NULL;
    AUTH_HMAC_SHA2_256_128 truncates to 128 bits)."""

    inbound: EspSaKeys
    outbound: EspSaKeys
    algorithms: AlgorithmSuite
    mode: IpsecMode
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    udp_encapsulation: tuple[int, int] | None  # (local port, remote port), RFC 3948, or None
    soft_lifetime: float  # seconds; the core rekeys at about this age on its own timer
    hard_lifetime: float  # seconds; give the kernel this as its hard expiry


@dataclass(frozen=True, slots=True)
class IkeSaEstablished:
    ike_sa: IkeSaId
    local_id: Identity
    remote_id: Identity
    local_addr: Address
    remote_addr: Address
    suite: AlgorithmSuite
    nat_detected: bool


@dataclass(frozen=True, slots=True)
class IkeSaRekeyed:
    """The IKE SA was replaced by the one named `new_ike_sa` (its CHILD SAs move over; nothing
    to do in XFRM).  Events name SAs by id only; the dispatcher finds the new SA object in the
    old one's `rekeyed_to`."""

    ike_sa: IkeSaId
    new_ike_sa: IkeSaId
    redundant: bool = False  # RFC 7296 §2.8.2 collision loser: route it until its delete


@dataclass(frozen=True, slots=True)
class IkeSaDeleted:
    ike_sa: IkeSaId
    reason: str


@dataclass(frozen=True, slots=True)
class ChildSaEstablished:
    """A new CHILD SA (not a rekey).  `responder`: the peer asked for it, so it installs its
    inbound SA only when our answer arrives; where an older pair to the peer still carries
    traffic, the responder keeps sending on that one a little longer (afbr.ipsec.xfrm_adapter).
    """

    ike_sa: IkeSaId
    child: ChildSaParams
    responder: bool = False


@dataclass(frozen=True, slots=True)
class ChildSaRekeyed:
    """`child` replaces the pair with inbound SPI `old_inbound_spi`; install it now, the old
    pair's ChildSaDeleted follows once the rekey completes.

    `responder`: the peer started this rekey.  It installs its new inbound SA only when our
    answer arrives, so we must not send on the new outbound SA until it deletes the old pair
    (RFC 7296 §2.8); as initiator we may switch at once (the peer answered with it in place).
    """

    ike_sa: IkeSaId
    old_inbound_spi: int
    old_outbound_spi: int
    child: ChildSaParams
    responder: bool = False


@dataclass(frozen=True, slots=True)
class ChildSaDeleted:
    ike_sa: IkeSaId
    inbound_spi: int
    outbound_spi: int
    reason: str


@dataclass(frozen=True, slots=True)
class ChildSaFailed:
    """A CHILD SA could not be negotiated (the IKE SA stays); `notify` is the RFC's error."""

    ike_sa: IkeSaId
    notify: int
    reason: str


@dataclass(frozen=True, slots=True)
class AuthenticationFailed:
    """The peer did not authenticate (or we were refused): no SA is installed (RFC 5619 §4.4.2)."""

    ike_sa: IkeSaId
    remote_addr: Address
    remote_id: Identity | None
    reason: str


IkeEvent = (
    IkeSaEstablished
    | IkeSaRekeyed
    | IkeSaDeleted
    | ChildSaEstablished
    | ChildSaRekeyed
    | ChildSaDeleted
    | ChildSaFailed
    | AuthenticationFailed
)
