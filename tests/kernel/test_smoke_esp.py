"""Kernel smoke tests: a real ping protected by ESP in tunnel mode (RFC 4303) with static SAs,
for the algorithms afbr negotiates (RFC 8221: AES-GCM, AES-CBC + HMAC-SHA-256) over both outer
families, once steered by per-address policies and once by an xfrm interface (if_id), the
route-based form afbr uses.  The SA packet counters on both ends must match what ping sent and
received, so the packets really went through ESP.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from smoke_topology import INNER, OUTER, Pair, Undo, ping, sa_packets, veth_pair

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

SPI_A_TO_B = 0x1001
SPI_B_TO_A = 0x1002
IF_ID = 42
XFRMI_ADDRESSES = ("203.0.113.1", "203.0.113.2", 24)


def gcm() -> str:
    return f"aead rfc4106(gcm(aes)) 0x{secrets.token_hex(16 + 4)} 128"  # key + 4-byte salt


def cbc_hmac() -> str:
    return (
        f"enc cbc(aes) 0x{secrets.token_hex(16)} "
        f"auth-trunc hmac(sha256) 0x{secrets.token_hex(32)} 128"
    )


@dataclass(frozen=True)
class EspCase:
    algorithm: str  # "gcm" or "cbc-hmac"
    outer: int
    xfrm_interface: bool = False


CASES = {
    "gcm-v4": EspCase("gcm", 4),
    "gcm-v6": EspCase("gcm", 6),
    "cbc-hmac-v4": EspCase("cbc-hmac", 4),
    "cbc-hmac-v6": EspCase("cbc-hmac", 6),
    "xfrmi-gcm-v4": EspCase("gcm", 4, xfrm_interface=True),
}
ALGORITHMS = {"gcm": gcm, "cbc-hmac": cbc_hmac}


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with veth_pair("esp") as built:
        yield built


@pytest.fixture
def undo(pair: Pair) -> Iterator[Undo]:
    cleanup = Undo()
    yield cleanup
    cleanup.run()


def state_lines(case: EspCase) -> list[str]:
    """Both SAs, a->b and b->a, with fresh keys: the same lines go to both ends."""
    outer = OUTER[case.outer]
    if_id = f" if_id {IF_ID}" if case.xfrm_interface else ""
    return [
        f"xfrm state add src {outer[src]} dst {outer[dst]} proto esp spi {spi:#x} "
        f"reqid {spi} mode tunnel {ALGORITHMS[case.algorithm]()}{if_id}"
        for spi, src, dst in ((SPI_A_TO_B, 0, 1), (SPI_B_TO_A, 1, 0))
    ]


def policy_lines(case: EspCase, me: int) -> list[str]:
    """The out and in policies of one end: per-address selectors, or wildcards bound to the
    xfrm interface by if_id (route-based)."""
    outer, inner = OUTER[case.outer], INNER[case.outer]
    peer = 1 - me
    spi_out, spi_in = (SPI_A_TO_B, SPI_B_TO_A) if me == 0 else (SPI_B_TO_A, SPI_A_TO_B)
    any_net = "0.0.0.0/0" if case.outer == 4 else "::/0"
    lines = []
    for direction, spi, src, dst in (("out", spi_out, me, peer), ("in", spi_in, peer, me)):
        if case.xfrm_interface:
            selector, if_id = f"src {any_net} dst {any_net}", f" if_id {IF_ID}"
        else:
            selector, if_id = f"src {inner[src]} dst {inner[dst]}", ""
        lines.append(
            f"xfrm policy add {selector} dir {direction}{if_id} "
            f"tmpl src {outer[src]} dst {outer[dst]} proto esp reqid {spi} mode tunnel"
        )
    return lines


def inner_lines(case: EspCase, me: int) -> list[str]:
    """The pinged addresses: on an xfrm interface, or on a dummy with a route to the peer's."""
    if case.xfrm_interface:
        address = XFRMI_ADDRESSES
        return [
            f"link add smoke0 type xfrm dev eth0 if_id {IF_ID}",
            "link set smoke0 up",
            f"addr add {address[me]}/{address[2]} dev smoke0",
        ]
    inner = INNER[case.outer]
    host_len = 32 if case.outer == 4 else 128
    return [
        "link add smoke0 type dummy",
        "link set smoke0 up",
        f"addr add {inner[me]}/{host_len} dev smoke0" + (" nodad" if case.outer == 6 else ""),
        f"route add {inner[1 - me]}/{host_len} dev smoke0 src {inner[me]}",
    ]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_ping_through_esp_tunnel(pair: Pair, undo: Undo, case: EspCase) -> None:
    states = state_lines(case)
    for me, host in ((0, pair.a), (1, pair.b)):
        undo.add(host, "xfrm policy flush", "xfrm state flush", "link del smoke0")
        host.ip_batch(states + policy_lines(case, me) + inner_lines(case, me))
    target = XFRMI_ADDRESSES[1] if case.xfrm_interface else INNER[case.outer][1]
    result = ping(pair.a, target)
    a_counts, b_counts = sa_packets(pair.a), sa_packets(pair.b)
    assert a_counts[SPI_A_TO_B] == result.transmitted, a_counts
    assert b_counts[SPI_A_TO_B] == result.transmitted, b_counts
    assert b_counts[SPI_B_TO_A] == result.received, b_counts
    assert a_counts[SPI_B_TO_A] == result.received, a_counts
