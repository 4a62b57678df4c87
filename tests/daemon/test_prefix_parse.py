"""afbr.daemon.softwire_sync.parse_prefix agrees with ipaddress.ip_network (the oracle)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from afbr.daemon.softwire_sync import parse_prefix

networks = st.one_of(
    st.builds(
        lambda v, n: ipaddress.IPv4Network((v >> (32 - n) << (32 - n), n)),
        st.integers(0, 2**32 - 1),
        st.integers(0, 32),
    ),
    st.builds(
        lambda v, n: ipaddress.IPv6Network((v >> (128 - n) << (128 - n), n)),
        st.integers(0, 2**128 - 1),
        st.integers(0, 128),
    ),
)


@given(networks)
def test_same_network_and_key_as_ip_network(network: ipaddress.IPv4Network) -> None:
    parsed, key = parse_prefix(str(network))
    assert parsed == network
    assert key == (network.version, int(network.network_address), network.prefixlen)


@pytest.mark.parametrize(
    "text",
    [
        "198.51.100.1/24",
        "198.51.100.0/33",
        "2001:db8::/129",
        "198.51.100.0/+24",
        "198.51.100/24",
        "x/24",
        "",
        "2001:db8::1/64",
        "::/",  # found by the property test below: an empty length is no length
        "198.51.100.0/",
    ],
)
def test_what_ip_network_refuses_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        ipaddress.ip_network(text)
    with pytest.raises(ValueError):
        parse_prefix(text)


@given(st.text(alphabet="0123456789abcdef.:/+ x", max_size=24))
def test_any_text_gives_what_ip_network_gives(text: str) -> None:
    try:
        expected = ipaddress.ip_network(text)
    except ValueError:
        with pytest.raises(ValueError):
            parse_prefix(text)
        return
    assert parse_prefix(text)[0] == expected
