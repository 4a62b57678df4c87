"""Softwire MTU: the underlay MTU minus what the encapsulation adds (RFC 5565 §4.3).

Client packets then fit in one core packet and are never fragmented inside the core.  The
figures are the headers afbr's kernel tunnels emit: IPv6 tunnels are created without the
tunnel encapsulation limit option (RFC 2473 §4.1.1), L2TPv3 sessions without the default
L2-Specific Sublayer, so neither adds bytes.
"""

from __future__ import annotations

from afbr.encap.model import EncapKind, EncapOffer

OUTER_HEADER = {4: 20, 6: 40}  # IPv4 header without options; IPv6 fixed header
GRE_BASE = 4  # RFC 2784 §2: flags, version, protocol type
GRE_KEY = 4  # RFC 2890 §2.1
UDP_HEADER = 8
L2TPV3_UDP_HEADER = 4  # RFC 3931 §4.1.2.1: flags, version, reserved
L2TPV3_SESSION_ID = 4  # RFC 3931 §4.1.1.1 / §4.1.2.1
ETHERNET_HEADER = 14  # the pseudowire carries Ethernet frames (RFC 4719 §2)
# ESP tunnel mode, the worst case of the suites afbr offers (RFC 4303 §2): SPI + sequence (8),
# IV (16 for AES-CBC, 8 for GCM), padding to the 16-byte block + pad length + next header
# (up to 17), ICV (16)
ESP_OVERHEAD = 8 + 16 + 17 + 16


def encapsulation_overhead(kind: EncapKind, outer_family: int, offer: EncapOffer) -> int:
    """Bytes a client packet grows by when sent into this softwire."""
    outer = OUTER_HEADER[outer_family]
    if kind is EncapKind.GRE:
        return outer + GRE_BASE + (GRE_KEY if offer.gre_key is not None else 0)
    if kind is EncapKind.IP_IN_IP:
        return outer
    if kind is EncapKind.ESP_TUNNEL:
        return outer + ESP_OVERHEAD
    l2tp = L2TPV3_SESSION_ID + len(offer.l2tpv3_cookie) + ETHERNET_HEADER
    if kind is EncapKind.L2TPV3_UDP:
        return outer + UDP_HEADER + L2TPV3_UDP_HEADER + l2tp
    return outer + l2tp


def tunnel_mtu(
    kind: EncapKind, outer_family: int, offer: EncapOffer, underlay_mtu: int, extra: int = 0
) -> int:
    """The softwire's MTU (RFC 5565 §4.3): underlay MTU minus encapsulation and extra overhead."""
    return underlay_mtu - encapsulation_overhead(kind, outer_family, offer) - extra
