"""What one IKE SA with one remote AFBR is configured with (identities, credentials, algorithms,
traffic selectors, lifetimes and timers).  Built by the daemon from afbr.yaml and BGP state."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum

from afbr.ipsec.ike_auth import LocalCredential, PeerTrust
from afbr.ipsec.ike_constants import IdType
from afbr.ipsec.ike_payloads import TrafficSelector
from afbr.ipsec.ike_proposals import (
    DEFAULT_ESP_PROPOSALS,
    DEFAULT_IKE_PROPOSALS,
    AlgorithmSuite,
    DhGroup,
)

Address = tuple[str, int]  # (IP address text, UDP port)


class IpsecMode(Enum):
    TUNNEL = "tunnel"  # ESP tunnel mode carrying client packets (RFC 5566 tunnel type 4)
    TRANSPORT = "transport"  # ESP transport mode protecting IP-in-IP (RFC 5566 type 5) or GRE


@dataclass(frozen=True, slots=True)
class Identity:
    """An IKE identity (RFC 7296 §3.5)."""

    id_type: IdType
    data: bytes

    @classmethod
    def fqdn(cls, name: str) -> Identity:
        return cls(IdType.ID_FQDN, name.encode())

    @classmethod
    def address(cls, text: str) -> Identity:
        ip = ipaddress.ip_address(text)
        kind = IdType.ID_IPV4_ADDR if ip.version == 4 else IdType.ID_IPV6_ADDR
        return cls(kind, ip.packed)

    def __str__(self) -> str:
        if self.id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
            return str(ipaddress.ip_address(self.data))
        if self.id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
            return self.data.decode(errors="replace")
        return self.data.hex()


WILDCARD_SELECTORS = (
    TrafficSelector.from_network("0.0.0.0/0"),
    TrafficSelector.from_network("::/0"),
)


@dataclass(frozen=True, slots=True)
class Timers:
    """Seconds.  Retransmission as RFC 7296 §2.1 asks: exponential backoff, then give up."""

    retransmit_timeout: float = 2.0
    retransmit_base: float = 1.8
    retransmit_tries: int = 5
    dpd_delay: float = 30.0  # RFC 7296 §2.4 liveness check after this much silence
    nat_keepalive: float = 20.0  # RFC 3948 §4
    half_open_timeout: float = 30.0
    ike_rekey: float = 14400.0
    child_rekey: float = 3600.0  # soft lifetime: rekey (make-before-break)
    child_lifetime: float = 3960.0  # hard lifetime: the kernel drops the SA
    rekey_jitter: float = 0.1  # fraction of the rekey time randomised away, spreads rekeys


@dataclass(frozen=True, slots=True)
class IkeConfig:
    local_id: Identity
    credential: LocalCredential
    peer_trust: PeerTrust
    remote_id: Identity | None = None  # None: accept whatever the trusted key/PSK vouches for
    ike_proposals: tuple[AlgorithmSuite, ...] = DEFAULT_IKE_PROPOSALS
    esp_proposals: tuple[AlgorithmSuite, ...] = DEFAULT_ESP_PROPOSALS
    child_pfs_group: DhGroup | None = None  # KE in CREATE_CHILD_SA rekeys of CHILD SAs
    local_ts: tuple[TrafficSelector, ...] = WILDCARD_SELECTORS
    remote_ts: tuple[TrafficSelector, ...] = WILDCARD_SELECTORS
    mode: IpsecMode = IpsecMode.TUNNEL
    timers: Timers = field(default_factory=Timers)
    force_udp_encapsulation: bool = False  # pretend a NAT (RFC 7296 §2.23 allows the fake hash)
    send_certificate: bool = True  # send our raw key / self-signed certificate in CERT
