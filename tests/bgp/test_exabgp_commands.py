"""Commands for the local AFBR's routes: next hop, attribute 23, batching, pure diffs.

The command grammar (`announce attributes ... nlri ...`, `withdraw attributes next-hop X nlri
...`) is exercised against ExaBGP 5.0.15 in tests/bgp/test_exabgp_interop.py.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, ip_address, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from afbr.bgp.exabgp_commands import (
    LocalAdvertisement,
    advertisement_commands,
    announce_commands,
    local_advertisements,
    local_tunnel_encap,
    next_hop_for,
    withdraw_commands,
)
from afbr.bgp.session_config import BgpSessionConfig, NeighborConfig, SwEncap, SwEncapKind
from afbr.bgp.tunnel_encap import EtherType, TunnelType, decode_tunnel_encap

AUTH = bytes.fromhex("aa" * 20)


def _config(
    core: str = "2001:db8::a",
    prefixes: tuple[str, ...] = ("198.51.100.0/24",),
    sw_encap: tuple[SwEncap, ...] = (SwEncap(SwEncapKind.GRE, gre_key=7),),
    authenticator: bytes | None = None,
) -> BgpSessionConfig:
    return BgpSessionConfig(
        local_as=65000,
        router_id=IPv4Address("192.0.2.1"),
        core_address=ip_address(core),
        neighbors=(NeighborConfig(ip_address("2001:db8::1"), 65000, md5_key="rr1"),),
        client_prefixes=tuple(ip_network(p) for p in prefixes),
        sw_encap=sw_encap,
        ipsec_authenticator=authenticator,
    )


@pytest.mark.parametrize(
    ("core", "version", "expected"),
    [
        ("2001:db8::a", 4, "2001:db8::a"),  # RFC 8950
        ("2001:db8::a", 6, "2001:db8::a"),
        ("192.0.2.10", 6, "::ffff:192.0.2.10"),  # RFC 4798 §2
        ("192.0.2.10", 4, "192.0.2.10"),
    ],
)
def test_next_hop_is_the_core_address(core: str, version: int, expected: str) -> None:
    assert next_hop_for(ip_address(core), version) == expected


def test_sw_encap_set_in_local_preference_order_with_authenticator() -> None:
    sw_encap = (
        SwEncap(SwEncapKind.IPSEC_TUNNEL),
        SwEncap(SwEncapKind.L2TPV3, l2tpv3_session_id=66, l2tpv3_cookie=bytes.fromhex("deadbeef")),
        SwEncap(SwEncapKind.GRE, gre_key=7),
        SwEncap(SwEncapKind.IP_IN_IP),
        SwEncap(SwEncapKind.IP_IN_IP_IPSEC_TRANSPORT),
    )
    value = local_tunnel_encap(_config(sw_encap=sw_encap, authenticator=AUTH), 4)
    assert value is not None
    tunnels = decode_tunnel_encap(value).tunnels
    assert [t.tunnel_type for t in tunnels] == [
        TunnelType.IPSEC_TUNNEL_MODE,
        TunnelType.L2TPV3_OVER_IP,
        TunnelType.GRE,
        TunnelType.IP_IN_IP,
        TunnelType.IP_IN_IP_IPSEC_TRANSPORT_MODE,
    ]
    assert tunnels[1].l2tpv3_session_id == 66 and tunnels[1].l2tpv3_cookie == b"\xde\xad\xbe\xef"
    assert tunnels[2].gre_key == 7
    for tunnel in tunnels:
        assert tunnel.protocol_type == EtherType.IPV4  # RFC 9012 §3.4.1: the client payload
        assert tunnel.authenticator is not None and tunnel.authenticator.value == AUTH


def test_ipv6_clients_name_ipv6_payload_and_no_authenticator_without_ipsec() -> None:
    value = local_tunnel_encap(_config(), 6)
    assert value is not None
    [tunnel] = decode_tunnel_encap(value).tunnels
    assert tunnel.protocol_type == EtherType.IPV6 and tunnel.authenticator is None


def test_empty_sw_encap_set_sends_no_attribute() -> None:
    [advert] = local_advertisements(_config(sw_encap=())).values()
    assert advert.tunnel_encap is None
    [command] = announce_commands(advert, advert.prefixes)
    assert command == "announce attributes next-hop 2001:db8::a origin igp nlri 198.51.100.0/24"


def test_announce_command_grammar() -> None:
    adverts = local_advertisements(_config(prefixes=("198.51.100.0/24", "203.0.113.0/24")))
    [command] = advertisement_commands({}, adverts)
    value = local_tunnel_encap(_config(), 4)
    assert value is not None
    assert command == (
        "announce attributes next-hop 2001:db8::a origin igp "
        f"attribute [ 0x17 0xc0 0x{value.hex()} ] nlri 198.51.100.0/24 203.0.113.0/24"
    )


def test_ipv6_clients_over_ipv4_core() -> None:
    adverts = local_advertisements(_config("192.0.2.10", prefixes=("2001:db8:1::/48",)))
    [command] = advertisement_commands({}, adverts)
    assert command.startswith("announce attributes next-hop ::ffff:192.0.2.10 origin igp ")
    assert command.endswith(" nlri 2001:db8:1::/48")


def test_large_sets_are_batched() -> None:
    prefixes = [f"10.{i >> 8}.{i & 255}.0/24" for i in range(1000)]
    advert = LocalAdvertisement("2001:db8::a", None, frozenset(prefixes))
    commands = announce_commands(advert, prefixes, chunk=300)
    assert [len(c.split(" nlri ")[1].split()) for c in commands] == [300, 300, 300, 100]
    sent = [p for c in commands for p in c.split(" nlri ")[1].split()]
    assert sorted(sent) == sorted(prefixes)
    withdrawals = withdraw_commands("2001:db8::a", prefixes[:301], chunk=300)
    assert len(withdrawals) == 2
    assert withdrawals[0].startswith("withdraw attributes next-hop 2001:db8::a nlri ")


def _prefix_sets(commands: list[str], verb: str) -> set[str]:
    found: set[str] = set()
    for command in commands:
        if command.startswith(verb):
            found.update(command.split(" nlri ")[1].split())
    return found


def test_diff_withdraws_what_left_and_announces_what_came() -> None:
    old = local_advertisements(_config(prefixes=("198.51.100.0/24", "203.0.113.0/24")))
    new = local_advertisements(_config(prefixes=("203.0.113.0/24", "192.0.2.0/25")))
    commands = advertisement_commands(old, new)
    assert _prefix_sets(commands, "withdraw") == {"198.51.100.0/24"}
    assert _prefix_sets(commands, "announce") == {"192.0.2.0/25"}
    assert advertisement_commands(new, new) == []


def test_changed_attribute_announces_everything_again() -> None:
    prefixes = ("198.51.100.0/24", "203.0.113.0/24")
    old = local_advertisements(_config(prefixes=prefixes))
    new = local_advertisements(_config(prefixes=prefixes, sw_encap=(SwEncap(SwEncapKind.GRE),)))
    commands = advertisement_commands(old, new)
    assert _prefix_sets(commands, "announce") == set(prefixes)
    assert _prefix_sets(commands, "withdraw") == set()


def test_family_that_disappears_is_withdrawn() -> None:
    old = local_advertisements(_config(prefixes=("198.51.100.0/24", "2001:db8:1::/48")))
    new = local_advertisements(_config(prefixes=("198.51.100.0/24",)))
    [command] = advertisement_commands(old, new)
    assert command == "withdraw attributes next-hop 2001:db8::a nlri 2001:db8:1::/48"


POOL = [f"198.51.100.{i * 16}/28" for i in range(16)]


@given(st.sets(st.sampled_from(POOL)), st.sets(st.sampled_from(POOL)))
def test_diff_is_exact(before: set[str], after: set[str]) -> None:
    old = local_advertisements(_config(prefixes=tuple(sorted(before))))
    new = local_advertisements(_config(prefixes=tuple(sorted(after))))
    commands = advertisement_commands(old, new)
    assert _prefix_sets(commands, "withdraw") == before - after
    assert _prefix_sets(commands, "announce") == after - before
    assert all(re.fullmatch(r"(announce|withdraw) attributes next-hop \S+ .*", c) for c in commands)
