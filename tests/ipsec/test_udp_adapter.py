"""The asyncio UDP adapter with two afbr agents over a veth between namespaces (host kernel:
IKE only, no ESP; the XFRM side is tested in UML by test_strongswan_interop.py)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

import pytest

from afbr.ipsec import (
    ChildSaEstablished,
    Identity,
    IkeConfig,
    IkeDispatcher,
    IkeEvent,
    IkeSaDeleted,
    IkeSaEstablished,
    PeerTrust,
    PskCredential,
)
from afbr.ipsec.udp_adapter import IkeUdpAdapter
from afbr.lab.netns import Lab

pytestmark = pytest.mark.netns

PSK = PskCredential(os.urandom(32))


def configs(**changes: object) -> tuple[IkeConfig, IkeConfig]:
    a = IkeConfig(
        local_id=Identity.fqdn("a.example"),
        credential=PSK,
        peer_trust=PeerTrust(psk=PSK),
        remote_id=Identity.fqdn("b.example"),
        send_certificate=False,
    )
    b = replace(a, local_id=Identity.fqdn("b.example"), remote_id=Identity.fqdn("a.example"))
    return replace(a, **changes), replace(b, **changes)  # type: ignore[arg-type]


async def _wait(events: list[IkeEvent], kind: type, timeout: float = 10.0) -> IkeEvent:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        for event in events:
            if isinstance(event, kind):
                return event
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {kind.__name__}; saw {[type(e).__name__ for e in events]}")


@pytest.mark.parametrize("outer", ["ipv4", "ipv6"])
@pytest.mark.parametrize("nat_t", [False, True], ids=["port500", "forced-nat-t"])
def test_two_agents_establish_and_delete(lab: Lab, outer: str, nat_t: bool) -> None:
    a, b = lab.host("a"), lab.host("b")
    lab.link(a, "eth0", b, "eth0")
    ip_a, ip_b = ("192.0.2.1", "192.0.2.2") if outer == "ipv4" else ("2001:db8::1", "2001:db8::2")
    suffix = "/24" if outer == "ipv4" else "/64 nodad"
    a.ip_batch([f"addr add {ip_a}{suffix} dev eth0"])
    b.ip_batch([f"addr add {ip_b}{suffix} dev eth0"])
    config_a, config_b = configs(force_udp_encapsulation=nat_t)
    events_a: list[IkeEvent] = []
    events_b: list[IkeEvent] = []

    async def scenario() -> None:
        agent_a = IkeUdpAdapter(
            IkeDispatcher(lambda addr: config_a, os.urandom), [ip_a], [events_a.append], a.name
        )
        agent_b = IkeUdpAdapter(
            IkeDispatcher(lambda addr: config_b if addr[0] == ip_a else None, os.urandom),
            [ip_b],
            [events_b.append],
            b.name,
        )
        agent_a.start()
        agent_b.start()
        try:
            sa = agent_a.connect(config_a, (ip_a, 500), (ip_b, 500))
            established = await _wait(events_a, IkeSaEstablished)
            assert isinstance(established, IkeSaEstablished)
            assert established.nat_detected == nat_t
            child = await _wait(events_b, ChildSaEstablished)
            assert isinstance(child, ChildSaEstablished)
            assert child.child.udp_encapsulation == ((4500, 4500) if nat_t else None)
            await _wait(events_a, ChildSaEstablished)
            agent_a.drive(lambda s, now: s.delete(now), sa)
            await _wait(events_b, IkeSaDeleted)
            await _wait(events_a, IkeSaDeleted)
            assert agent_a.send_errors == agent_b.send_errors == 0
        finally:
            agent_a.close()
            agent_b.close()

    asyncio.run(scenario())


def test_the_kernel_changes_of_an_exchange_come_before_its_answer(lab: Lab) -> None:
    """Make-before-break: the responder hands ChildSaEstablished to the installer (its new
    inbound SA) before its IKE_AUTH answer leaves, or the initiator may send on the new SA
    before it exists."""
    a, b = lab.host("a"), lab.host("b")
    lab.link(a, "eth0", b, "eth0")
    a.ip_batch(["addr add 192.0.2.1/24 dev eth0"])
    b.ip_batch(["addr add 192.0.2.2/24 dev eth0"])
    config_a, config_b = configs()
    events_a: list[IkeEvent] = []
    order: list[str] = []  # what responder B did, in order

    async def scenario() -> None:
        agent_a = IkeUdpAdapter(
            IkeDispatcher(lambda addr: config_a, os.urandom),
            ["192.0.2.1"],
            [events_a.append],
            a.name,
        )
        agent_b = IkeUdpAdapter(
            IkeDispatcher(lambda addr: config_b, os.urandom),
            ["192.0.2.2"],
            [lambda event: order.append(type(event).__name__)],
            b.name,
        )
        send = agent_b._send
        agent_b._send = lambda datagram: (order.append("send"), send(datagram))[1]  # type: ignore[method-assign]
        agent_a.start()
        agent_b.start()
        try:
            agent_a.connect(config_a, ("192.0.2.1", 500), ("192.0.2.2", 500))
            await _wait(events_a, ChildSaEstablished)
        finally:
            agent_a.close()
            agent_b.close()

    asyncio.run(scenario())
    assert order[:4] == ["send", "IkeSaEstablished", "ChildSaEstablished", "send"], order
