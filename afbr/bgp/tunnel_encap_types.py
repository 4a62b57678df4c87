"""IANA code points of the BGP Tunnel Encapsulation attribute (RFC 9012 §12, RFC 5566 §5).

Tunnel types 3-6 come from RFC 5566 §2 and the IANA "BGP Tunnel Encapsulation Attribute Tunnel
Types" registry, where RFC 9012 marks them deprecated; they stay readable here because RFC 5565
softwire meshes and RFC 5619 signal IPsec with them.
"""

from __future__ import annotations

import enum
from typing import TypeVar

_Enum = TypeVar("_Enum", bound=enum.IntEnum)

# Path attribute type code of the Tunnel Encapsulation attribute (RFC 9012 §2).
TUNNEL_ENCAP_ATTRIBUTE_TYPE = 23


class TunnelType(enum.IntEnum):
    """BGP Tunnel Encapsulation Attribute Tunnel Types (IANA)."""

    L2TPV3_OVER_IP = 1  # RFC 9012 §3.2.3 (was RFC 5512 §4.1)
    GRE = 2  # RFC 9012 §3.2.4 (was RFC 5512 §4.1)
    TRANSMIT_TUNNEL_ENDPOINT = 3  # RFC 5566 (deprecated by RFC 9012)
    IPSEC_TUNNEL_MODE = 4  # RFC 5566 §2 (deprecated by RFC 9012)
    IP_IN_IP_IPSEC_TRANSPORT_MODE = 5  # RFC 5566 §2 (deprecated by RFC 9012)
    MPLS_IN_IP_IPSEC_TRANSPORT_MODE = 6  # RFC 5566 §2 (deprecated by RFC 9012)
    IP_IN_IP = 7  # RFC 9012 §3.2 (was RFC 5512 §4.1)


class SubTlvType(enum.IntEnum):
    """BGP Tunnel Encapsulation Attribute Sub-TLVs (IANA)."""

    ENCAPSULATION = 1  # RFC 9012 §3.2
    PROTOCOL_TYPE = 2  # RFC 9012 §3.4.1
    IPSEC_TUNNEL_AUTHENTICATOR = 3  # RFC 5566 §4 (deprecated by RFC 9012)
    COLOR = 4  # RFC 9012 §3.4.2
    LOAD_BALANCING_BLOCK = 5  # RFC 5640
    TUNNEL_EGRESS_ENDPOINT = 6  # RFC 9012 §3.1
    DS_FIELD = 7  # RFC 9012 §3.3.1
    UDP_DESTINATION_PORT = 8  # RFC 9012 §3.3.2
    EMBEDDED_LABEL_HANDLING = 9  # RFC 9012 §3.5
    MPLS_LABEL_STACK = 10  # RFC 9012 §3.6
    PREFIX_SID = 11  # RFC 9012 §3.7


# Sub-TLV types 128-255 carry a 2-octet length, 0-127 a 1-octet length (RFC 9012 §2).
FIRST_LONG_LENGTH_SUB_TLV_TYPE = 128

# Sub-TLVs that may occur once in a Tunnel TLV; of repeats, all but the first are
# disregarded (RFC 9012 §13).  The Tunnel Egress Endpoint has its own stricter rule.
SINGLE_INSTANCE_SUB_TLV_TYPES = frozenset(
    {
        SubTlvType.ENCAPSULATION,
        SubTlvType.TUNNEL_EGRESS_ENDPOINT,
        SubTlvType.DS_FIELD,
        SubTlvType.UDP_DESTINATION_PORT,
        SubTlvType.EMBEDDED_LABEL_HANDLING,
        SubTlvType.MPLS_LABEL_STACK,
        SubTlvType.PREFIX_SID,
    }
)


class AuthenticatorType(enum.IntEnum):
    """IPsec Tunnel Authenticator types (RFC 5566 §4)."""

    SHA1_PUBLIC_KEY = 1  # RFC 5566 §4: SHA-1 hash of the public key, 20 octets


class EndpointAddressFamily(enum.IntEnum):
    """Address Family subfield of the Tunnel Egress Endpoint sub-TLV (RFC 9012 §3.1)."""

    NEXT_HOP = 0  # RFC 9012 §3.1: no address; the egress endpoint is the BGP next hop
    IPV4 = 1  # IANA Address Family Numbers
    IPV6 = 2


class EtherType(enum.IntEnum):
    """Payload types a Protocol Type sub-TLV names here (RFC 9012 §3.4.1)."""

    IPV4 = 0x0800
    IPV6 = 0x86DD
    MPLS = 0x8847
    TRANSPARENT_ETHERNET = 0x6558
    RESERVED = 0xFFFF  # RFC 9012 §3.4.1: malformed if received


def known_or_int(enum_class: type[_Enum], value: int) -> _Enum | int:
    """`value` as a member of `enum_class` when it is one, else the plain int."""
    try:
        return enum_class(value)
    except ValueError:
        return value
