"""The BGP part of afbr's configuration, in the shape the BGP modules use.

`afbr.config` reads and validates the operator's YAML file; `BgpSessionConfig.from_afbr_config`
takes what BGP needs from it: local AS, router id, the core's family and address (the SW-NHOP,
RFC 5565 §4), the neighbors (route reflectors or a full mesh) with their TCP-MD5 key names, the
local client prefixes, and the SW-Encap set in local preference order (RFC 5565 §5) with the
IPsec Tunnel Authenticator when IPsec is on (RFC 5566 §4).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from pathlib import Path
from typing import TYPE_CHECKING

from afbr.bgp.exabgp_events import IPAddress

if TYPE_CHECKING:
    from afbr.config import AfbrConfig

IPNetwork = IPv4Network | IPv6Network


class SessionConfigError(Exception):
    """The BGP settings cannot be used as given; the message names the setting."""


class NeighborRole(StrEnum):
    ROUTE_REFLECTOR = "route-reflector"  # afbr is its client (RFC 4456)
    PEER = "peer"  # full mesh


class SwEncapKind(StrEnum):
    """Encapsulations an AFBR can offer, by config name."""

    L2TPV3 = "l2tpv3"
    GRE = "gre"
    IPSEC_TUNNEL = "ipsec-tunnel"
    IP_IN_IP_IPSEC_TRANSPORT = "ip-in-ip-ipsec-transport"
    IP_IN_IP = "ip-in-ip"


# IANA BGP Tunnel Encapsulation Attribute Tunnel Types of each kind.
SW_ENCAP_TUNNEL_TYPE = {
    SwEncapKind.L2TPV3: 1,  # RFC 9012 §3.2.3
    SwEncapKind.GRE: 2,  # RFC 9012 §3.2.4
    SwEncapKind.IPSEC_TUNNEL: 4,  # RFC 5566 §2
    SwEncapKind.IP_IN_IP_IPSEC_TRANSPORT: 5,  # RFC 5566 §2
    SwEncapKind.IP_IN_IP: 7,  # RFC 9012 §3.2
}
SHA1_AUTHENTICATOR_SIZE = 20  # RFC 5566 §4
# RFC 4724 §3 Restart Time afbr advertises: how long its peers keep its routes while ExaBGP or
# the daemon restarts (2-5 s measured on a lab host), and so also how long a stopped AFBR's
# routes linger elsewhere (GoBGP 3.10 keeps them exactly this long; the demo allows 60 s).
DEFAULT_RESTART_TIME = 30
MAX_RESTART_TIME = 0xFFF  # RFC 4724 §3


@dataclass(frozen=True, slots=True)
class SwEncap:
    """One entry of the local SW-Encap set."""

    kind: SwEncapKind
    gre_key: int | None = None
    l2tpv3_session_id: int | None = None
    l2tpv3_cookie: bytes = b""

    def __post_init__(self) -> None:
        if self.gre_key is not None and self.kind is not SwEncapKind.GRE:
            raise SessionConfigError(f"{self.kind}: only gre has a key")
        if self.kind is SwEncapKind.L2TPV3 and not self.l2tpv3_session_id:
            raise SessionConfigError("l2tpv3: needs a non-zero session id (RFC 3931 §4.1)")
        if len(self.l2tpv3_cookie) not in (0, 4, 8):
            raise SessionConfigError("l2tpv3: the cookie is 0, 4 or 8 octets (RFC 3931 §4.1)")


@dataclass(frozen=True, slots=True)
class NeighborConfig:
    address: IPAddress
    peer_as: int
    role: NeighborRole = NeighborRole.ROUTE_REFLECTOR
    hold_time: int = 90
    md5_key: str | None = None  # a name in the key file, never the key itself
    allow_unauthenticated: bool = False
    local_address: IPAddress | None = None  # default: the core address
    description: str = ""
    # RFC 4724 Restart Time in seconds (12 bits, §3); 0: Graceful Restart off.
    graceful_restart: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.graceful_restart <= MAX_RESTART_TIME:
            raise SessionConfigError(
                f"neighbor {self.address}: graceful_restart {self.graceful_restart} is not "
                f"0..{MAX_RESTART_TIME} seconds (RFC 4724 §3: a 12-bit Restart Time)"
            )


@dataclass(frozen=True, slots=True)
class BgpSessionConfig:
    local_as: int
    router_id: IPv4Address
    core_address: IPAddress
    neighbors: tuple[NeighborConfig, ...]
    client_prefixes: tuple[IPNetwork, ...] = ()
    sw_encap: tuple[SwEncap, ...] = ()
    ipsec_authenticator: bytes | None = None  # RFC 5566 §4: SHA-1 of the public key
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if self.ipsec_authenticator is not None and (
            len(self.ipsec_authenticator) != SHA1_AUTHENTICATOR_SIZE
        ):
            raise SessionConfigError("ipsec authenticator: 20 octets (RFC 5566 §4 SHA-1)")
        kinds = [entry.kind for entry in self.sw_encap]
        if len(set(kinds)) != len(kinds):
            raise SessionConfigError("sw_encap lists a type twice")

    @property
    def core_family(self) -> int:
        """4 or 6: the address family of the transit core."""
        return self.core_address.version

    @classmethod
    def from_afbr_config(
        cls,
        config: AfbrConfig,
        ipsec_authenticator: bytes | None = None,
        *,
        graceful_restart: int = 0,
    ) -> BgpSessionConfig:
        """The BGP view of afbr's validated config.

        With IPsec on, ESP tunnel mode (tunnel type 4, RFC 5566 §2) leads the SW-Encap set,
        as DESIGN.md makes it the default; the authenticator, when given, rides on every
        tunnel (RFC 5566 §4).  `graceful_restart` is the RFC 4724 Restart Time of every
        session (0: off): a driver that renders ExaBGP's config itself (the daemon) sets it,
        e.g. to DEFAULT_RESTART_TIME; the plugin, running under an operator's ExaBGP, does not.
        """
        encap = config.encap
        entries: list[SwEncap] = []
        if config.ipsec.enabled:
            entries.append(SwEncap(SwEncapKind.IPSEC_TUNNEL))
        for name in encap.preference:
            kind = SwEncapKind(name)
            entries.append(
                SwEncap(
                    kind,
                    gre_key=encap.gre_key if kind is SwEncapKind.GRE else None,
                    l2tpv3_session_id=(
                        encap.l2tpv3_session_id if kind is SwEncapKind.L2TPV3 else None
                    ),
                    l2tpv3_cookie=encap.l2tpv3_cookie if kind is SwEncapKind.L2TPV3 else b"",
                )
            )
        return cls(
            local_as=config.asn,
            router_id=config.router_id,
            core_address=config.core.address,
            neighbors=tuple(
                NeighborConfig(
                    address=n.address,
                    peer_as=n.asn,
                    role=NeighborRole(n.role),
                    hold_time=n.hold_time,
                    md5_key=n.md5_key,
                    allow_unauthenticated=n.allow_unauthenticated,
                    graceful_restart=graceful_restart,
                )
                for n in config.bgp.neighbors
            ),
            client_prefixes=config.client_prefixes,
            sw_encap=tuple(entries),
            ipsec_authenticator=ipsec_authenticator if config.ipsec.enabled else None,
            key_file=config.bgp.keys_file,
        )
