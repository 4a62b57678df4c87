"""ExaBGP JSON lines -> typed events.

exabgp_5_0_15_api.jsonl holds the lines a real ExaBGP 5.0.15 handed its API process in
tests/bgp/test_exabgp_interop.py::record_exabgp_api (two instances in namespaces, TCP-MD5);
the other lines here are edits of those, so each shape is one ExaBGP really writes.
"""

from __future__ import annotations

import contextlib
import json
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from afbr.bgp.exabgp_api import CommandAck, ExabgpApiParser
from afbr.bgp.exabgp_events import (
    Afi,
    ApiErrorReason,
    AsPathSegmentType,
    EndOfRib,
    ExabgpApiError,
    ExabgpShutdown,
    NeighborDown,
    NeighborUp,
    Origin,
    RouteAnnounce,
    RouteRefresh,
    RouteWithdraw,
)

RECORDED = (Path(__file__).parent / "exabgp_5_0_15_api.jsonl").read_text().splitlines()
PEER = "2001:db8::1"


def _recorded(predicate: str) -> dict[str, Any]:
    for line in RECORDED:
        if predicate in line:
            message: dict[str, Any] = json.loads(line)
            return message
    raise AssertionError(f"no recorded line with {predicate}")


def _line(message: dict[str, Any]) -> str:
    """As ExaBGP writes it: `"key": value` with a space after the colon."""
    return json.dumps(message)


def test_every_recorded_line_parses_without_error() -> None:
    parser = ExabgpApiParser()
    events = [event for line in RECORDED for event in parser.feed(line)]
    assert not parser.errors
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("RouteAnnounce") == 5
    assert kinds.count("RouteWithdraw") == 2
    assert kinds.count("EndOfRib") == 3
    assert kinds[0] == "NeighborUp" and kinds[-1] == "NeighborDown"
    assert parser.ignored == {"state-connected": 1}


def test_ipv4_nlri_with_ipv6_next_hop_and_raw_attribute_23() -> None:
    [event] = ExabgpApiParser().parse_line(_line(_recorded('"local-preference": 200')))
    assert isinstance(event, RouteAnnounce)
    assert event.neighbor == PEER
    assert event.afi is Afi.IPV4
    assert event.next_hop == ip_address("2001:db8::1")  # RFC 8950
    assert event.prefixes == ("198.51.100.0/24", "198.51.100.128/25", "203.0.113.0/26")
    attrs = event.attributes
    assert attrs.origin is Origin.IGP and attrs.local_pref == 200 and attrs.med is None
    assert attrs.tunnel_encap == bytes.fromhex("0002000a01040000000702020800")
    assert attrs.tunnel_encap_flags == 0xE0


def test_reflected_route_carries_path_attributes() -> None:
    [event] = ExabgpApiParser().parse_line(_line(_recorded('"originator-id"')))
    assert isinstance(event, RouteAnnounce)
    attrs = event.attributes
    assert attrs.origin is Origin.EGP and attrs.med == 50
    assert attrs.as_path[0].segment_type is AsPathSegmentType.AS_SEQUENCE
    assert attrs.as_path[0].asns == (65001, 65010) and attrs.as_path_length == 2
    assert attrs.originator_id == IPv4Address("192.0.2.9")
    assert attrs.cluster_list == (IPv4Address("192.0.2.7"), IPv4Address("192.0.2.8"))


def test_as_set_counts_as_one() -> None:
    message = _recorded('"originator-id"')
    attrs = message["neighbor"]["message"]["update"]["attribute"]
    attrs["as-path"] = {
        "0": {"element": "as-sequence", "value": [65001]},
        "1": {"element": "as-set", "value": [65005, 65006, 65007]},
    }
    [event] = ExabgpApiParser().parse_line(_line(message))
    assert isinstance(event, RouteAnnounce)
    assert event.attributes.as_path_length == 2  # RFC 4271 §9.1.2.2 a


def test_ipv6_nlri_with_ipv4_mapped_next_hop() -> None:
    [event] = ExabgpApiParser().parse_line(_line(_recorded("2001:db8:100::/48")))
    assert isinstance(event, RouteAnnounce)
    assert event.afi is Afi.IPV6
    assert event.next_hop == ip_address("::ffff:192.0.2.1")


@pytest.mark.parametrize("flags", ["0xC0", "0xE0", "0x40", "0x60", "0xD0"])
def test_attribute_23_is_matched_by_code_whatever_the_flags(flags: str) -> None:
    message = _recorded('"local-preference": 200')
    attrs = message["neighbor"]["message"]["update"]["attribute"]
    attrs[f"attribute-0x17-{flags}"] = attrs.pop("attribute-0x17-0xE0")
    attrs["attribute-0x18-0xC0"] = "0x0102"  # another unknown attribute is not it
    [event] = ExabgpApiParser().parse_line(_line(message))
    assert isinstance(event, RouteAnnounce)
    assert event.attributes.tunnel_encap == bytes.fromhex("0002000a01040000000702020800")
    assert event.attributes.tunnel_encap_flags == int(flags, 16)


def test_route_without_attribute_23() -> None:
    message = _recorded('"local-preference": 200')
    del message["neighbor"]["message"]["update"]["attribute"]["attribute-0x17-0xE0"]
    [event] = ExabgpApiParser().parse_line(_line(message))
    assert isinstance(event, RouteAnnounce)
    assert event.attributes.tunnel_encap is None


def test_withdrawals_state_eor_refresh_shutdown() -> None:
    parser = ExabgpApiParser()
    [withdraw] = parser.parse_line(_line(_recorded('"withdraw": { "ipv4 unicast"')))
    assert withdraw == RouteWithdraw(PEER, Afi.IPV4, ("198.51.100.128/25", "203.0.113.0/26"))
    [up] = parser.parse_line(_line(_recorded('"state": "up"')))
    assert up == NeighborUp(PEER, "2001:db8::2", 65001, 65001)
    [down] = parser.parse_line(_line(_recorded('"state": "down"')))
    assert isinstance(down, NeighborDown) and down.neighbor == PEER and down.reason
    [eor] = parser.parse_line(_line(_recorded('"afi" : "ipv6"')))
    assert eor == EndOfRib(PEER, Afi.IPV6)
    [refresh] = parser.parse_line(_line(_recorded('"type": "refresh"')))
    assert refresh == RouteRefresh(PEER, Afi.IPV4, "query")
    shutdown = '{ "exabgp": "5.0.0", "type": "notification", "notification": "shutdown" }'
    assert parser.parse_line(shutdown) == [ExabgpShutdown()]
    assert parser.parse_line("done\n") == [CommandAck(ok=True)]
    assert parser.parse_line(b"error\n") == [CommandAck(ok=False)]


def test_update_with_announce_and_withdraw_gives_withdraw_first() -> None:
    message = _recorded('"local-preference": 200')
    update = message["neighbor"]["message"]["update"]
    update["withdraw"] = {"ipv4 unicast": [{"nlri": "192.0.2.0/26"}]}
    events = ExabgpApiParser().parse_line(_line(message))
    assert [type(e) for e in events] == [RouteWithdraw, RouteAnnounce]


def test_equal_attributes_are_one_object_and_different_ones_are_not() -> None:
    parser = ExabgpApiParser()
    line = _line(_recorded('"local-preference": 200'))
    [first] = parser.parse_line(line)
    [second] = parser.parse_line(line.replace("198.51.100.0/24", "192.0.2.0/24"))
    [other] = parser.parse_line(line.replace('"local-preference": 200', '"local-preference": 7'))
    assert isinstance(first, RouteAnnounce) and isinstance(second, RouteAnnounce)
    assert isinstance(other, RouteAnnounce)
    assert first.attributes is second.attributes
    assert other.attributes.local_pref == 7


def _mutate(path: list[str], value: object) -> str:
    message = _recorded('"local-preference": 200')
    target: Any = message
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return _line(message)


UPDATE = ["neighbor", "message", "update"]
ATTRS = [*UPDATE, "attribute"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", ApiErrorReason.INVALID_JSON),
        (b"\xff\xfe{}", ApiErrorReason.INVALID_JSON),
        ("[1, 2]", ApiErrorReason.NOT_AN_OBJECT),
        ('{"type": 3}', ApiErrorReason.BAD_FIELD),
        ('{"exabgp": "5.0.0"}', ApiErrorReason.MISSING_FIELD),
        ('{"type": "update"}', ApiErrorReason.MISSING_FIELD),
        ('{"type": "state", "neighbor": []}', ApiErrorReason.BAD_FIELD),
        (_mutate(["neighbor", "address", "peer"], 7), ApiErrorReason.BAD_FIELD),
        (_mutate([*UPDATE, "announce"], []), ApiErrorReason.BAD_FIELD),
        (_mutate([*UPDATE, "announce", "ipv4 unicast"], ["x"]), ApiErrorReason.BAD_FIELD),
        (
            _mutate([*UPDATE, "announce", "ipv4 unicast", "2001:db8::1"], [{"x": 1}]),
            ApiErrorReason.BAD_FIELD,
        ),
        (
            _mutate([*UPDATE, "announce", "ipv4 unicast", "2001:db8::1"], [{"nlri": "x"}]),
            ApiErrorReason.BAD_FIELD,
        ),
        (
            _mutate([*UPDATE, "announce", "ipv4 unicast", "2001:db8::1"], [{"nlri": 5}]),
            ApiErrorReason.BAD_FIELD,
        ),
        (
            _mutate(
                [*UPDATE, "announce", "ipv4 unicast", "2001:db8::1"],
                [{"nlri": "10.0.0.0/8"}, {"nlri": '10.0.0.0/8", "x'}],
            ),
            ApiErrorReason.BAD_FIELD,
        ),
        (
            _mutate([*UPDATE, "announce", "ipv4 unicast"], {"null": [{"nlri": "1.0.0.0/8"}]}),
            ApiErrorReason.BAD_NEXT_HOP,
        ),
        (_mutate([*ATTRS, "attribute-0x17-0xE0"], "0xabc"), ApiErrorReason.BAD_ATTRIBUTE),
        (_mutate([*ATTRS, "attribute-0x17-0xE0"], 12), ApiErrorReason.BAD_ATTRIBUTE),
        (_mutate([*ATTRS, "origin"], "bgp"), ApiErrorReason.BAD_ATTRIBUTE),
        (_mutate([*ATTRS, "origin"], []), ApiErrorReason.BAD_ATTRIBUTE),
        (_mutate([*ATTRS, "local-preference"], "high"), ApiErrorReason.BAD_FIELD),
        (_mutate([*ATTRS, "local-preference"], 2**32), ApiErrorReason.BAD_FIELD),
        (_mutate([*ATTRS, "as-path"], {"0": {"value": [1]}}), ApiErrorReason.BAD_ATTRIBUTE),
        (_mutate([*ATTRS, "as-path"], {"x": {}}), ApiErrorReason.BAD_ATTRIBUTE),
        (
            _mutate([*ATTRS, "as-path"], {"0": {"element": "as-set", "value": [-1]}}),
            ApiErrorReason.BAD_ATTRIBUTE,
        ),
        (_mutate([*ATTRS, "originator-id"], "2001:db8::9"), ApiErrorReason.BAD_ATTRIBUTE),
        (_mutate([*ATTRS, "cluster-list"], "192.0.2.7"), ApiErrorReason.BAD_ATTRIBUTE),
        (_mutate(ATTRS, KeyError), ApiErrorReason.MISSING_FIELD),
    ],
)
def test_unexpected_shapes_give_a_specific_counted_error(
    line: str | bytes, reason: ApiErrorReason
) -> None:
    parser = ExabgpApiParser()
    with pytest.raises(ExabgpApiError) as caught:
        parser.parse_line(line)
    assert caught.value.reason is reason
    assert parser.feed(line) == []
    assert parser.errors == {reason.value: 1}


def test_other_families_are_counted_not_fatal() -> None:
    message = _recorded('"local-preference": 200')
    announce = message["neighbor"]["message"]["update"]["announce"]
    announce["ipv4 flow"] = {"no-nexthop": [{"nlri": "x"}]}
    parser = ExabgpApiParser()
    events = parser.feed(_line(message))
    assert len(events) == 1 and isinstance(events[0], RouteAnnounce)
    assert parser.errors == {"unsupported-family": 1}


def test_empty_nlri_lists_are_no_routes() -> None:
    line = _mutate([*UPDATE, "announce", "ipv4 unicast", "2001:db8::1"], [])
    [event] = ExabgpApiParser().parse_line(line)
    assert isinstance(event, RouteAnnounce) and event.prefixes == ()


def test_types_afbr_does_not_use_are_counted_as_ignored() -> None:
    parser = ExabgpApiParser()
    assert parser.feed('{"type": "keepalive", "neighbor": {}}') == []
    assert parser.feed("") == []
    assert parser.ignored == {"keepalive": 1}


JSON_KEYS = [
    *("type", "neighbor", "message", "update", "announce", "withdraw", "attribute", "address"),
    *("peer", "state", "eor", "afi", "safi", "nlri", "ipv4 unicast", "as-path", "origin"),
    *("attribute-0x17-0xC0", "2001:db8::1", "route-refresh"),
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(JSON_KEYS),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@given(json_values)
def test_arbitrary_json_never_raises_anything_but_our_error(value: object) -> None:
    parser = ExabgpApiParser()
    with contextlib.suppress(ExabgpApiError):
        parser.parse_line(json.dumps(value))
    parser.feed(json.dumps(value))  # and feed() never raises at all


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    ExabgpApiParser().feed(data)


@given(st.sampled_from(RECORDED), st.integers(min_value=0, max_value=600), st.text(max_size=3))
def test_corrupted_recorded_lines_never_crash(line: str, at: int, junk: str) -> None:
    ExabgpApiParser().feed(line[:at] + junk + line[at + len(junk) :])


def _paths(value: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    return found


@settings(max_examples=400)
@given(st.data())
def test_recorded_messages_with_any_part_replaced_never_crash(data: st.DataObject) -> None:
    message = json.loads(data.draw(st.sampled_from(RECORDED)))
    path = data.draw(st.sampled_from(_paths(message)[1:]))
    target = message
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(json_values)
    parser = ExabgpApiParser()
    with contextlib.suppress(ExabgpApiError):
        parser.parse_line(json.dumps(message))
