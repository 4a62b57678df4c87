"""Typed events decoded from ExaBGP 5.0's JSON API, and the shared path attributes they carry.

The events are what the softwire RIB consumes.  They are cheap on purpose: one announce event
carries every prefix of one UPDATE that shares a next hop, as a tuple of prefix strings exactly
as ExaBGP printed them (canonical `a.b.c.d/n`, `x::/n`), and a `PathAttributes` object that
the parser interns, so the routes of one AFBR, which share their attributes, share one object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from ipaddress import IPv4Address, IPv6Address

IPAddress = IPv4Address | IPv6Address


class Afi(IntEnum):
    """Address Family Identifiers (IANA "Address Family Numbers") used here."""

    IPV4 = 1
    IPV6 = 2


class Origin(IntEnum):
    """ORIGIN attribute values (RFC 4271 §5.1.1); lower is preferred (§9.1.2.2 c)."""

    IGP = 0
    EGP = 1
    INCOMPLETE = 2


class AsPathSegmentType(IntEnum):
    """AS_PATH segment types (RFC 4271 §4.3, RFC 5065 §3)."""

    AS_SET = 1
    AS_SEQUENCE = 2


@dataclass(frozen=True, slots=True)
class AsPathSegment:
    segment_type: AsPathSegmentType
    asns: tuple[int, ...]

    @property
    def path_length(self) -> int:
        # RFC 4271 §9.1.2.2 a: an AS_SET counts as 1 however many ASes it holds.
        if self.segment_type is AsPathSegmentType.AS_SET:
            return 1
        return len(self.asns)


DEFAULT_LOCAL_PREF = 100  # what an iBGP speaker assumes when LOCAL_PREF is absent


@dataclass(frozen=True, slots=True)
class PathAttributes:
    """The attributes of one UPDATE that the softwire RIB uses; interned by the parser.

    `tunnel_encap` is the raw value of the Tunnel Encapsulation attribute (type 23), decoded
    only when the RIB accepts the path (once per distinct value).
    """

    origin: Origin = Origin.IGP
    as_path: tuple[AsPathSegment, ...] = ()
    local_pref: int | None = None
    med: int | None = None
    originator_id: IPv4Address | None = None
    cluster_list: tuple[IPv4Address, ...] = ()
    tunnel_encap: bytes | None = None
    tunnel_encap_flags: int | None = None  # the attribute flags as ExaBGP reported them
    as_path_length: int = field(init=False, compare=False)
    _hash: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "as_path_length", sum(s.path_length for s in self.as_path))
        # Hashed once: the RIB looks paths up by their attributes on every UPDATE.
        fields = (self.origin, self.as_path, self.local_pref, self.med, self.originator_id)
        rest = (self.cluster_list, self.tunnel_encap, self.tunnel_encap_flags)
        object.__setattr__(self, "_hash", hash((fields, rest)))

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        encap = "none" if self.tunnel_encap is None else f"{len(self.tunnel_encap)} bytes"
        return (
            f"PathAttributes(origin={self.origin.name}, as_path_length={self.as_path_length}, "
            f"local_pref={self.local_pref}, med={self.med}, originator_id={self.originator_id}, "
            f"cluster_list={len(self.cluster_list)}, tunnel_encap={encap})"
        )


@dataclass(frozen=True, slots=True)
class RouteAnnounce:
    """Prefixes of one family announced by `neighbor` with one next hop and one attribute set."""

    neighbor: str
    afi: Afi
    next_hop: IPAddress
    attributes: PathAttributes
    prefixes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RouteWithdraw:
    neighbor: str
    afi: Afi
    prefixes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NeighborUp:
    neighbor: str
    local_address: str
    local_as: int
    peer_as: int


@dataclass(frozen=True, slots=True)
class PeerOpen:
    """The neighbor's OPEN: the unicast families it offers (RFC 4760 §8; without a
    Multiprotocol capability, IPv4 unicast only)."""

    neighbor: str
    families: frozenset[Afi]


@dataclass(frozen=True, slots=True)
class NeighborDown:
    neighbor: str
    reason: str


@dataclass(frozen=True, slots=True)
class EndOfRib:
    """The neighbor has sent its whole table for this family (RFC 4724 §2)."""

    neighbor: str
    afi: Afi


@dataclass(frozen=True, slots=True)
class RouteRefresh:
    """The neighbor asked for our routes again (RFC 2918; subtype per RFC 7313)."""

    neighbor: str
    afi: Afi
    subtype: str


@dataclass(frozen=True, slots=True)
class ExabgpShutdown:
    """ExaBGP is stopping; every session is going away."""


ApiEvent = (
    RouteAnnounce
    | RouteWithdraw
    | NeighborUp
    | PeerOpen
    | NeighborDown
    | EndOfRib
    | RouteRefresh
    | ExabgpShutdown
)


class ApiErrorReason(StrEnum):
    """Why a line from ExaBGP could not be turned into events (the counter's name)."""

    INVALID_JSON = "invalid-json"
    NOT_AN_OBJECT = "not-an-object"
    MISSING_FIELD = "missing-field"
    BAD_FIELD = "bad-field"
    UNSUPPORTED_FAMILY = "unsupported-family"
    BAD_NEXT_HOP = "bad-next-hop"
    BAD_ATTRIBUTE = "bad-attribute"


class ExabgpApiError(Exception):
    """A line from ExaBGP that has an unexpected shape; `reason` names the counter."""

    def __init__(self, reason: ApiErrorReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
