"""From the BGP codec's Tunnel TLVs to the encap manager's own `EncapOffer`/`RemotePath`.

The only place afbr.encap knows the codec (afbr.bgp.tunnel_encap_model): the derivation itself
works on its own types.  Of the RFC 5566 IPsec forms, type 4 (IPsec in tunnel mode) is the
route-based ESP softwire; types 3, 5 and 6 and unknown types are not offers: they are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable

from afbr.bgp.tunnel_encap_model import Tunnel
from afbr.bgp.tunnel_encap_types import TunnelType
from afbr.encap.model import EncapKind, EncapOffer, IPAddress, IPNetwork, RemotePath


def offer_from_tunnel(tunnel: Tunnel) -> EncapOffer | None:
    """The softwire a Tunnel TLV offers, or None when it is not one afbr builds."""
    if tunnel.tunnel_type == TunnelType.GRE:  # RFC 9012 §3.2.4
        return EncapOffer(EncapKind.GRE, gre_key=tunnel.gre_key)
    if tunnel.tunnel_type == TunnelType.IP_IN_IP:  # RFC 9012 §3.2 (type 7)
        return EncapOffer(EncapKind.IP_IN_IP)
    if tunnel.tunnel_type == TunnelType.IPSEC_TUNNEL_MODE:  # RFC 5566 §2 (type 4)
        return EncapOffer(EncapKind.ESP_TUNNEL)
    if tunnel.tunnel_type == TunnelType.L2TPV3_OVER_IP:  # RFC 9012 §3.2.3
        port = tunnel.udp_port  # RFC 9012 §3.3.2: L2TPv3 over UDP to this port
        return EncapOffer(
            EncapKind.L2TPV3_UDP if port is not None else EncapKind.L2TPV3_IP,
            l2tpv3_session_id=tunnel.l2tpv3_session_id,
            l2tpv3_cookie=tunnel.l2tpv3_cookie or b"",
            udp_port=port,
        )
    return None


def remote_path(
    prefix: IPNetwork, next_hop: IPAddress, tunnels: Iterable[Tunnel], afbr_id: str = ""
) -> RemotePath:
    """A best path as the encap manager sees it.

    The endpoint is the first offered tunnel's Tunnel Egress Endpoint, or the BGP next hop
    when it names none (RFC 9012 §3.1; RFC 5565 §5: the SW-NHOP).
    """
    offers: list[EncapOffer] = []
    endpoint: IPAddress | None = None
    for tunnel in tunnels:
        offer = offer_from_tunnel(tunnel)
        if offer is None:
            continue
        offers.append(offer)
        if endpoint is None:
            endpoint = tunnel.egress_endpoint
    return RemotePath(prefix, endpoint or next_hop, tuple(offers), afbr_id)
