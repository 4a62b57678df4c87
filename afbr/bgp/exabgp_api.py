"""ExaBGP 5.0 API: JSON lines in, typed events out.

ExaBGP runs afbr's bridge as its API process (`encoder json`) and writes one JSON object per
line on the bridge's stdin; the shapes below were recorded from ExaBGP 5.0.15 itself
(tests/bgp/test_exabgp_interop.py keeps that check in the suite):

    {"type": "state", "neighbor": {"address": {"local": L, "peer": P},
        "asn": {"local": 65001, "peer": 65001}, "state": "up" | "down" | "connected",
        "reason": "..."}}
    {"type": "update", "neighbor": {..., "message": {"update": {
        "attribute": {"origin": "igp", "as-path": {"0": {"element": "as-sequence",
            "value": [65001]}}, "local-preference": 200, "med": 50, "originator-id": "192.0.2.9",
            "cluster-list": ["192.0.2.7"], "attribute-0x17-0xE0": "0x0002..."},
        "announce": {"ipv4 unicast": {"2001:db8::1": [{"nlri": "198.51.100.0/24"}, ...]}},
        "withdraw": {"ipv6 unicast": [{"nlri": "2001:db8:200::/48"}]}}}}}
    {"type": "update", "neighbor": {..., "message": {"eor": {"afi": "ipv4", "safi": "unicast"}}}}
    {"type": "refresh", "neighbor": {..., "route-refresh": {"afi": "ipv4", "safi": "unicast",
        "subtype": "query"}}}
    {"type": "notification", "notification": "shutdown"}
    {"type": "open", "neighbor": {..., "direction": "receive", "open": {"version": 4, ...,
        "capabilities": {"1": {"name": "multiprotocol", "families": ["ipv4/unicast"]}}}}}

and the plain lines `done` / `error` acknowledging each command the bridge wrote.

ExaBGP does not decode the Tunnel Encapsulation attribute (type 23): it arrives as
`attribute-0x17-0xNN` with the flags ExaBGP saw (it adds the Partial bit to unknown transitive
attributes), so the code is matched, never the flags.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address
from typing import Any

from afbr.bgp.exabgp_events import (
    Afi,
    ApiErrorReason,
    ApiEvent,
    AsPathSegment,
    AsPathSegmentType,
    EndOfRib,
    ExabgpApiError,
    ExabgpShutdown,
    IPAddress,
    NeighborDown,
    NeighborUp,
    Origin,
    PathAttributes,
    PeerOpen,
    RouteAnnounce,
    RouteRefresh,
    RouteWithdraw,
)

_log = logging.getLogger(__name__)

TUNNEL_ENCAP_KEY_PREFIX = "attribute-0x17-"  # type code 23 (RFC 9012 §2), any flags
_FAMILIES = {"ipv4 unicast": Afi.IPV4, "ipv6 unicast": Afi.IPV6}
_AFI_NAMES = {"ipv4": Afi.IPV4, "ipv6": Afi.IPV6}
_OPEN_FAMILIES = {"ipv4/unicast": Afi.IPV4, "ipv6/unicast": Afi.IPV6}
_ORIGINS = {"igp": Origin.IGP, "egp": Origin.EGP, "incomplete": Origin.INCOMPLETE}
_SEGMENTS = {"as-sequence": AsPathSegmentType.AS_SEQUENCE, "as-set": AsPathSegmentType.AS_SET}
_CACHE_LIMIT = 65536  # interning tables are cleared past this (dedup is an optimisation only)
_MAX_U32 = 0xFFFFFFFF
# The shape of a prefix as ExaBGP prints it; the address itself is ExaBGP's to check.
_PREFIX_TEXT = r"[0-9A-Fa-f.:]{2,45}/[0-9]{1,3}"
_PREFIX = re.compile(_PREFIX_TEXT)
_PREFIX_LIST = re.compile(rf"{_PREFIX_TEXT}(?: {_PREFIX_TEXT})*")


@dataclass(frozen=True, slots=True)
class CommandAck:
    """ExaBGP's answer to one command the bridge wrote (`done` or `error`)."""

    ok: bool


ParsedLine = list[ApiEvent | CommandAck]


_MISSING = object()
_DECODER = json.JSONDecoder()


def _field(obj: Mapping[str, Any], key: str, kind: type) -> Any:
    """obj[key], checked to be of `kind`; a specific error when it is missing or not."""
    value = obj.get(key, _MISSING)
    if type(value) is kind:  # the common case, first (json gives exact types)
        return value
    if value is _MISSING:
        raise ExabgpApiError(ApiErrorReason.MISSING_FIELD, f"no {key!r}")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ExabgpApiError(ApiErrorReason.BAD_FIELD, f"{key!r} is not a {kind.__name__}")
    return value


def _u32(obj: Mapping[str, Any], key: str) -> int | None:
    if key not in obj:
        return None
    value: int = _field(obj, key, int)
    if not 0 <= value <= _MAX_U32:
        raise ExabgpApiError(ApiErrorReason.BAD_FIELD, f"{key!r} out of range")
    return value


class ExabgpApiParser:
    """Turns ExaBGP JSON lines into events; interns attributes and next hops.

    `feed()` never raises: a bad line is logged and counted in `errors` by reason, and lines
    of types afbr does not use are counted in `ignored` by type.
    """

    def __init__(self) -> None:
        self.errors: Counter[str] = Counter()
        self.ignored: Counter[str] = Counter()
        self._attributes: dict[PathAttributes, PathAttributes] = {}
        self._addresses: dict[str, IPAddress] = {}
        # The attribute object's JSON text -> its PathAttributes: the routes of one AFBR share
        # their attributes, so most UPDATEs skip attribute decoding altogether.
        self._attributes_by_text: dict[str, PathAttributes] = {}

    def feed(self, line: str | bytes) -> ParsedLine:
        try:
            return self.parse_line(line)
        except ExabgpApiError as exc:
            self.errors[exc.reason.value] += 1
            _log.warning("ExaBGP API line rejected: %s", exc)
            return []

    def parse_line(self, line: str | bytes) -> ParsedLine:
        """Events of one line; raises ExabgpApiError when the line has an unexpected shape."""
        try:
            text = (line.decode() if isinstance(line, bytes) else line).strip()
        except UnicodeDecodeError:
            raise ExabgpApiError(ApiErrorReason.INVALID_JSON, "not UTF-8") from None
        if text == "done":
            return [CommandAck(ok=True)]
        if text == "error":
            return [CommandAck(ok=False)]
        if not text:
            return []
        try:
            message = _DECODER.decode(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError
            raise ExabgpApiError(ApiErrorReason.INVALID_JSON, str(exc)[:120]) from None
        if not isinstance(message, dict):
            raise ExabgpApiError(ApiErrorReason.NOT_AN_OBJECT, type(message).__name__)
        kind = _field(message, "type", str)
        if kind == "update":
            return self._update(message, _attribute_text(text))
        if kind == "state":
            return self._state(message)
        if kind == "refresh":
            return self._refresh(message)
        if kind == "open":
            return self._open(message)
        if kind == "notification" and message.get("notification") == "shutdown":
            return [ExabgpShutdown()]
        self.ignored[kind] += 1
        return []

    # -- message types --------------------------------------------------------------------

    def _neighbor(self, message: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        neighbor: dict[str, Any] = _field(message, "neighbor", dict)
        address = _field(neighbor, "address", dict)
        peer: str = _field(address, "peer", str)
        return neighbor, peer

    def _state(self, message: Mapping[str, Any]) -> ParsedLine:
        neighbor, peer = self._neighbor(message)
        state = _field(neighbor, "state", str)
        if state == "up":
            address = _field(neighbor, "address", dict)
            asn = _field(neighbor, "asn", dict)
            local_as = _u32(asn, "local")
            peer_as = _u32(asn, "peer")
            return [
                NeighborUp(
                    neighbor=peer,
                    local_address=_field(address, "local", str),
                    local_as=local_as if local_as is not None else 0,
                    peer_as=peer_as if peer_as is not None else 0,
                )
            ]
        if state == "down":
            reason = neighbor.get("reason", "")
            return [NeighborDown(neighbor=peer, reason=reason if isinstance(reason, str) else "")]
        self.ignored[f"state-{state}"] += 1
        return []

    def _open(self, message: Mapping[str, Any]) -> ParsedLine:
        """The families a neighbor's OPEN offers (only the received one matters)."""
        neighbor, peer = self._neighbor(message)
        if neighbor.get("direction") != "receive":
            self.ignored["open-sent"] += 1
            return []
        capabilities = _field(_field(neighbor, "open", dict), "capabilities", dict)
        families = {Afi.IPV4}  # RFC 4760 §8: no Multiprotocol capability, IPv4 unicast
        for capability in capabilities.values():
            if isinstance(capability, dict) and capability.get("name") == "multiprotocol":
                offered = _field(capability, "families", list)
                names = [f for f in offered if isinstance(f, str)]  # others: not a family
                families = {_OPEN_FAMILIES[f] for f in names if f in _OPEN_FAMILIES}
        return [PeerOpen(peer, frozenset(families))]

    def _refresh(self, message: Mapping[str, Any]) -> ParsedLine:
        neighbor, peer = self._neighbor(message)
        refresh = _field(neighbor, "route-refresh", dict)
        afi = self._afi_safi(refresh)
        if afi is None:
            return []
        subtype = refresh.get("subtype", "query")
        return [RouteRefresh(peer, afi, subtype if isinstance(subtype, str) else "query")]

    def _afi_safi(self, obj: Mapping[str, Any]) -> Afi | None:
        afi = _AFI_NAMES.get(_field(obj, "afi", str))
        if afi is None or _field(obj, "safi", str) != "unicast":
            self.errors[ApiErrorReason.UNSUPPORTED_FAMILY.value] += 1
            return None
        return afi

    def _update(self, message: Mapping[str, Any], attribute_text: str | None) -> ParsedLine:
        neighbor, peer = self._neighbor(message)
        body = _field(neighbor, "message", dict)
        if "eor" in body:
            afi = self._afi_safi(_field(body, "eor", dict))
            return [] if afi is None else [EndOfRib(peer, afi)]
        update = _field(body, "update", dict)
        events: ParsedLine = []
        # The UPDATE's Withdrawn Routes come before its NLRI (RFC 4271 §4.3).
        if "withdraw" in update:
            for family, nlris in _field(update, "withdraw", dict).items():
                afi = self._family(family)
                if afi is not None:
                    events.append(RouteWithdraw(peer, afi, _prefixes(nlris)))
        if "announce" in update:
            attributes = self._attributes_by_text.get(attribute_text) if attribute_text else None
            if attributes is None:
                attributes = self._attributes_of(_field(update, "attribute", dict))
                if attribute_text:
                    if len(self._attributes_by_text) >= _CACHE_LIMIT:
                        self._attributes_by_text.clear()
                    self._attributes_by_text[attribute_text] = attributes
            for family, by_next_hop in _field(update, "announce", dict).items():
                afi = self._family(family)
                if afi is None:
                    continue
                if not isinstance(by_next_hop, dict):
                    raise ExabgpApiError(ApiErrorReason.BAD_FIELD, f"announce {family!r}")
                for next_hop, nlris in by_next_hop.items():
                    events.append(
                        RouteAnnounce(
                            peer, afi, self._address(next_hop), attributes, _prefixes(nlris)
                        )
                    )
        return events

    def _family(self, family: str) -> Afi | None:
        afi = _FAMILIES.get(family)
        if afi is None:
            self.errors[ApiErrorReason.UNSUPPORTED_FAMILY.value] += 1
        return afi

    # -- attributes -----------------------------------------------------------------------

    def _address(self, text: str) -> IPAddress:
        found = self._addresses.get(text)
        if found is not None:
            return found
        try:
            address = ip_address(text)
        except ValueError:
            raise ExabgpApiError(ApiErrorReason.BAD_NEXT_HOP, f"{text[:60]!r}") from None
        if len(self._addresses) >= _CACHE_LIMIT:
            self._addresses.clear()
        self._addresses[text] = address
        return address

    def _router_id(self, text: object) -> IPv4Address:
        address = self._address(text) if isinstance(text, str) else None
        if not isinstance(address, IPv4Address):
            raise ExabgpApiError(ApiErrorReason.BAD_ATTRIBUTE, f"not a router id: {text!r}")
        return address

    def _attributes_of(self, attrs: Mapping[str, Any]) -> PathAttributes:
        origin_name = attrs.get("origin", "igp")
        origin = _ORIGINS.get(origin_name) if isinstance(origin_name, str) else None
        if origin is None:
            raise ExabgpApiError(ApiErrorReason.BAD_ATTRIBUTE, "origin")
        originator = attrs.get("originator-id")
        clusters = attrs.get("cluster-list", ())
        if not isinstance(clusters, list | tuple):
            raise ExabgpApiError(ApiErrorReason.BAD_ATTRIBUTE, "cluster-list")
        value = PathAttributes(
            origin=origin,
            as_path=_as_path(attrs.get("as-path", {})),
            local_pref=_u32(attrs, "local-preference"),
            med=_u32(attrs, "med"),
            originator_id=None if originator is None else self._router_id(originator),
            cluster_list=tuple(self._router_id(c) for c in clusters),
            **_tunnel_encap(attrs),
        )
        interned = self._attributes.get(value)
        if interned is not None:
            return interned
        if len(self._attributes) >= _CACHE_LIMIT:
            self._attributes.clear()
        self._attributes[value] = value
        return value


def _attribute_text(text: str) -> str | None:
    """The text of an update's `"attribute": {...}` object, as a cache key, or None.

    ExaBGP writes the attribute object right before `"announce"`; header fields before it hold
    no quotes of their own, so the first `"attribute": {` is the update's.  The slice holds
    the whole object, so equal slices mean equal attributes.
    """
    start = text.find('"attribute": {')
    end = text.find('"announce": {', start)
    if start < 0 or end < 0:
        return None
    return text[start:end]


def _prefixes(nlris: object) -> tuple[str, ...]:
    if not isinstance(nlris, list):
        raise ExabgpApiError(ApiErrorReason.BAD_FIELD, "nlri list")
    try:
        prefixes = tuple([n["nlri"] for n in nlris])
    except (TypeError, KeyError):
        raise ExabgpApiError(ApiErrorReason.BAD_FIELD, "nlri entry") from None
    if not prefixes:
        return prefixes
    try:
        joined = " ".join(prefixes)  # one regex pass over all of them: cheap per prefix
    except TypeError:
        raise ExabgpApiError(ApiErrorReason.BAD_FIELD, "nlri is not a string") from None
    if _PREFIX_LIST.fullmatch(joined) is None:
        bad = next(p for p in prefixes if _PREFIX.fullmatch(p) is None)
        raise ExabgpApiError(ApiErrorReason.BAD_FIELD, f"nlri {bad[:60]!r}")
    return prefixes


def _as_path(value: object) -> tuple[AsPathSegment, ...]:
    # ExaBGP: {"0": {"element": "as-sequence", "value": [65001, 65010]}, "1": {...}}
    if not isinstance(value, dict):
        raise ExabgpApiError(ApiErrorReason.BAD_ATTRIBUTE, "as-path")
    segments = []
    try:
        for key in sorted(value, key=int):
            segment = value[key]
            kind = _SEGMENTS[segment["element"]]
            asns = tuple(segment["value"])
            if not all(type(a) is int and 0 <= a <= _MAX_U32 for a in asns):
                raise ExabgpApiError(ApiErrorReason.BAD_ATTRIBUTE, "as-path number")
            segments.append(AsPathSegment(kind, asns))
    except (KeyError, TypeError, ValueError):
        raise ExabgpApiError(ApiErrorReason.BAD_ATTRIBUTE, "as-path segment") from None
    return tuple(segments)


def _tunnel_encap(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """`tunnel_encap` and `tunnel_encap_flags` from an `attribute-0x17-0xFF` key, if any."""
    for key, value in attrs.items():
        if key.startswith(TUNNEL_ENCAP_KEY_PREFIX):  # match the code, not the flags
            if not isinstance(value, str) or not value.startswith("0x"):
                raise ExabgpApiError(ApiErrorReason.BAD_ATTRIBUTE, f"{key} is not hex")
            try:
                flags = int(key[len(TUNNEL_ENCAP_KEY_PREFIX) :], 16)
                data = bytes.fromhex(value[2:])
            except ValueError:
                raise ExabgpApiError(ApiErrorReason.BAD_ATTRIBUTE, f"{key} is not hex") from None
            if not 0 <= flags <= 0xFF:
                raise ExabgpApiError(ApiErrorReason.BAD_ATTRIBUTE, f"{key}: flags")
            return {"tunnel_encap": data, "tunnel_encap_flags": flags}
    return {}
