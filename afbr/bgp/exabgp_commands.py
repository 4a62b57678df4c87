"""Commands to ExaBGP 5.0 for the local AFBR's own routes (pure: config in, text lines out).

Each local client prefix is announced with next hop = the AFBR's core address (SW-NHOP,
RFC 5565 §4; an IPv4 prefix over an IPv6 core per RFC 8950, an IPv6 prefix over an IPv4 core
with the IPv4-mapped next hop, RFC 4798 §2) and its SW-Encap set as a Tunnel Encapsulation
attribute (RFC 9012; RFC 5565 §5) with the IPsec Tunnel Authenticator when IPsec is on
(RFC 5566 §4).  ExaBGP 5.0 does not know attribute 23, so it goes as a raw attribute:

    announce attributes next-hop 2001:db8::a origin igp attribute [ 0x17 0xc0 0x0002... ]
        nlri 198.51.100.0/24 198.51.100.128/25 ...
    withdraw attributes next-hop 2001:db8::a nlri 198.51.100.0/24 ...

(one line each; both forms checked against ExaBGP 5.0.15 in tests/bgp/test_exabgp_interop.py).
The prefixes sharing one attribute set go in chunks of a few hundred per command, which
ExaBGP packs into few UPDATEs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from afbr.bgp.exabgp_events import IPAddress
from afbr.bgp.session_config import BgpSessionConfig, IPNetwork, SwEncap, SwEncapKind
from afbr.bgp.tunnel_encap import (
    ATTRIBUTE_FLAGS,
    TUNNEL_ENCAP_ATTRIBUTE_TYPE,
    Authenticator,
    AuthenticatorType,
    EtherType,
    Tunnel,
    TunnelEncapAttribute,
    encode_tunnel_encap,
)

COMMAND_CHUNK = 300  # prefixes per command: ExaBGP packs them, its parser stays quick


def next_hop_for(core_address: IPAddress, prefix_version: int) -> str:
    """The next hop text for a local prefix of `prefix_version` over this core."""
    if prefix_version == 6 and isinstance(core_address, IPv4Address):
        return f"::ffff:{core_address}"  # RFC 4798 §2: IPv4-mapped IPv6 next hop
    return str(core_address)  # same family, or RFC 8950 IPv6 next hop for IPv4 NLRI


def _tunnel(entry: SwEncap, protocol_type: int, authenticator: Authenticator | None) -> Tunnel:
    if entry.kind is SwEncapKind.GRE:
        return Tunnel.gre(
            key=entry.gre_key, protocol_type=protocol_type, authenticator=authenticator
        )
    if entry.kind is SwEncapKind.L2TPV3:
        return Tunnel.l2tpv3(
            session_id=entry.l2tpv3_session_id or 0,
            cookie=entry.l2tpv3_cookie,
            protocol_type=protocol_type,
            authenticator=authenticator,
        )
    if entry.kind is SwEncapKind.IP_IN_IP:
        return Tunnel.ip_in_ip(protocol_type=protocol_type, authenticator=authenticator)
    if entry.kind is SwEncapKind.IPSEC_TUNNEL:
        return Tunnel.ipsec_tunnel_mode(protocol_type=protocol_type, authenticator=authenticator)
    return Tunnel.ip_in_ip_ipsec_transport(protocol_type=protocol_type, authenticator=authenticator)


def local_tunnel_encap(config: BgpSessionConfig, client_version: int) -> bytes | None:
    """The attribute-23 value for the local SW-Encap set, or None when the set is empty.

    Tunnel TLVs in local preference order (RFC 9012 §2: the order carries no meaning to the
    receiver; afbr's peers read it as the originator's preference); each names the client
    payload in a Protocol Type sub-TLV (RFC 9012 §3.4.1).
    """
    if not config.sw_encap:
        return None
    protocol_type = EtherType.IPV4 if client_version == 4 else EtherType.IPV6
    authenticator = None
    if config.ipsec_authenticator is not None:
        authenticator = Authenticator(
            AuthenticatorType.SHA1_PUBLIC_KEY, config.ipsec_authenticator
        )  # RFC 5566 §4
    tunnels = tuple(_tunnel(e, protocol_type, authenticator) for e in config.sw_encap)
    return encode_tunnel_encap(TunnelEncapAttribute(tunnels))


@dataclass(frozen=True, slots=True)
class LocalAdvertisement:
    """What the local AFBR announces for one client family: one attribute set, many prefixes."""

    next_hop: str
    tunnel_encap: bytes | None
    prefixes: frozenset[str]

    def attribute_text(self) -> str:
        text = f"next-hop {self.next_hop} origin igp"
        if self.tunnel_encap is not None:
            text += (
                f" attribute [ 0x{TUNNEL_ENCAP_ATTRIBUTE_TYPE:02x} 0x{ATTRIBUTE_FLAGS:02x}"
                f" 0x{self.tunnel_encap.hex()} ]"
            )
        return text


def local_advertisements(config: BgpSessionConfig) -> dict[int, LocalAdvertisement]:
    """Per client IP version, what to announce."""
    by_version: dict[int, list[IPNetwork]] = {}
    for prefix in config.client_prefixes:
        by_version.setdefault(prefix.version, []).append(prefix)
    return {
        version: LocalAdvertisement(
            next_hop=next_hop_for(config.core_address, version),
            tunnel_encap=local_tunnel_encap(config, version),
            prefixes=frozenset(str(p) for p in prefixes),
        )
        for version, prefixes in by_version.items()
    }


def _chunks(prefixes: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(prefixes), size):
        yield prefixes[start : start + size]


def announce_commands(
    advert: LocalAdvertisement, prefixes: Iterable[str], chunk: int = COMMAND_CHUNK
) -> list[str]:
    attributes = advert.attribute_text()
    ordered = sorted(prefixes)
    return [
        f"announce attributes {attributes} nlri {' '.join(part)}"
        for part in _chunks(ordered, chunk)
    ]


def withdraw_commands(
    next_hop: str, prefixes: Iterable[str], chunk: int = COMMAND_CHUNK
) -> list[str]:
    ordered = sorted(prefixes)
    return [
        f"withdraw attributes next-hop {next_hop} nlri {' '.join(part)}"
        for part in _chunks(ordered, chunk)
    ]


def advertisement_commands(
    old: dict[int, LocalAdvertisement], new: dict[int, LocalAdvertisement]
) -> list[str]:
    """Commands that turn what was announced (`old`) into `new` (a pure diff).

    Prefixes that left the config are withdrawn; new ones announced; when the next hop or the
    attribute changed, every prefix is announced again (an implicit replace, RFC 4271 §3.1).
    """
    commands: list[str] = []
    for version in sorted(set(old) | set(new)):
        before = old.get(version)
        after = new.get(version)
        if before is not None:
            gone = before.prefixes - (after.prefixes if after is not None else frozenset())
            commands += withdraw_commands(before.next_hop, gone)
        if after is None:
            continue
        same_attributes = (
            before is not None
            and before.next_hop == after.next_hop
            and before.tunnel_encap == after.tunnel_encap
        )
        fresh = after.prefixes - before.prefixes if same_attributes and before else after.prefixes
        commands += announce_commands(after, fresh)
    return commands
