"""Test support: two afbr IKEv2 endpoints wired back to back in memory."""

from __future__ import annotations

import random as random_module
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from afbr.ipsec import (
    Datagram,
    Identity,
    IkeConfig,
    IkeDispatcher,
    IkeEvent,
    IkeSa,
    PeerTrust,
    PskCredential,
)

PSK = PskCredential(b"pairwise key between a and b, 32B")
ADDR_A = ("192.0.2.1", 500)
ADDR_B = ("192.0.2.2", 500)


def seeded(seed: int) -> Callable[[int], bytes]:
    return random_module.Random(seed).randbytes


def psk_configs(**changes: object) -> tuple[IkeConfig, IkeConfig]:
    a = IkeConfig(
        local_id=Identity.fqdn("a.example"),
        credential=PSK,
        peer_trust=PeerTrust(psk=PSK),
        remote_id=Identity.fqdn("b.example"),
    )
    b = replace(a, local_id=Identity.fqdn("b.example"), remote_id=Identity.fqdn("a.example"))
    return replace(a, **changes), replace(b, **changes)  # type: ignore[arg-type]


@dataclass
class Endpoint:
    dispatcher: IkeDispatcher
    address: tuple[str, int]
    events: list[IkeEvent] = field(default_factory=list)

    def of_type(self, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events if isinstance(e, kind)]


class Pair:
    """A (initiator, at ADDR_A) and B (responder, at ADDR_B); `pump` moves datagrams."""

    def __init__(
        self,
        config_a: IkeConfig,
        config_b: IkeConfig,
        seed: int = 1,
        addresses: tuple[tuple[str, int], tuple[str, int]] = (ADDR_A, ADDR_B),
        **dispatcher_args: int,
    ) -> None:
        self.now = 1000.0
        self.a = Endpoint(
            IkeDispatcher(lambda addr: config_a, seeded(seed), **dispatcher_args), addresses[0]
        )
        self.b = Endpoint(
            IkeDispatcher(lambda addr: config_b, seeded(seed + 1000), **dispatcher_args),
            addresses[1],
        )
        self.config_a = config_a
        self.wire: list[tuple[str, Datagram]] = []  # every datagram sent, in order
        self.drop: Callable[[str, Datagram], bool] = lambda side, d: False
        self.nat_b_sees_a: tuple[str, int] | None = None  # rewrite A's source as B sees it

    def connect(self) -> IkeSa:
        sa = self.a.dispatcher.connect(self.config_a, self.a.address, self.b.address, self.now)
        self.pump()
        return sa

    def _collect(self) -> None:
        for ep in (self.a, self.b):
            while (event := ep.dispatcher.next_event()) is not None:
                ep.events.append(event)

    def pump(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            moved = False
            for side, src, dst in (("a", self.a, self.b), ("b", self.b, self.a)):
                for d in src.dispatcher.datagrams_to_send(self.now):
                    self.wire.append((side, d))
                    if self.drop(side, d):
                        continue
                    moved = True
                    source = d.source
                    if side == "a" and self.nat_b_sees_a is not None:
                        source = (self.nat_b_sees_a[0], self.nat_b_sees_a[1] + (d.source[1] != 500))
                    local = (dst.address[0], d.destination[1])
                    dst.dispatcher.receive_datagram(d.data, source, self.now, local)
            self._collect()
            if not moved:
                return

    def advance(self, seconds: float, step: float = 0.5) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            for ep in (self.a, self.b):
                ep.dispatcher.handle_timer(self.now)
            self.pump()

    def sa_of(self, ep: Endpoint) -> list[IkeSa]:
        return list(ep.dispatcher.sas.values())
