"""IKE SA + first CHILD SA establishments per second, and CPU time per establishment:
afbr with afbr against strongSwan with strongSwan, same machine, same algorithms, same run.

    .venv/bin/python bench/ike_setup.py [-n 1000] [--json] [--only afbr|strongswan] [--in-memory]

Rates are wall-clock and so depend on what else runs on the machine; CPU per establishment is
the steadier figure on a shared machine.

Proposal sets (PSK authentication, no PFS for the first CHILD SA, as in IKE_AUTH):
- gcm: IKE AES-GCM-16-128 / PRF-HMAC-SHA2-256 / ECP-256, ESP AES-GCM-16-128;
- cbc: IKE AES-CBC-256 / HMAC-SHA2-256-128 / PRF-HMAC-SHA2-256 / MODP-2048, ESP AES-CBC-256 +
  HMAC-SHA2-256-128.

afbr: an initiator and a responder agent (IkeDispatcher + the UDP adapter, no XFRM install) in
two processes, in two namespaces on a veth, `concurrency` exchanges in flight; CPU = process
time of both.  `--in-memory` adds "afbr-mem": both ends in one process, datagrams handed over
in memory (the protocol cost alone, one core).  Needs root (namespaces).

strongSwan 5.9.8: two charon-systemd in two namespaces on a veth, with `reuse_ikesa = no`,
`dos_protection = no`; the initiator is driven over VICI (a minimal client here) with
`initiate` requests that do not wait, `concurrency` in flight; the responder installs its SAs
through kernel-libipsec (userspace ESP: the host kernel has no ESP), the initiator as well.
CPU = utime + stime of both charons (from /proc).  Needs root.  The load-tester plugin that
the reference figures used is in no Debian package, hence VICI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType

from afbr.ipsec import (
    ChildSaEstablished,
    Identity,
    IkeConfig,
    IkeDispatcher,
    IkeEvent,
    PeerTrust,
    PskCredential,
)
from afbr.ipsec.ike_proposals import (
    ESP_AES_CBC_SHA256,
    ESP_AES_GCM_128,
    IKE_AES_CBC_SHA256,
    IKE_AES_GCM_128,
    AlgorithmSuite,
)
from afbr.ipsec.udp_adapter import IkeUdpAdapter
from afbr.lab.netns import Lab

PSK = bytes.fromhex("0123456789abcdef0123456789abcdef")


@dataclass(frozen=True)
class ProposalSet:
    name: str
    ike: AlgorithmSuite
    esp: AlgorithmSuite
    swan_ike: str
    swan_esp: str


SETS = (
    ProposalSet(
        "gcm", IKE_AES_GCM_128, ESP_AES_GCM_128, "aes128gcm16-prfsha256-ecp256", "aes128gcm16"
    ),
    ProposalSet(
        "cbc", IKE_AES_CBC_SHA256, ESP_AES_CBC_SHA256, "aes256-sha256-modp2048", "aes256-sha256"
    ),
)


@dataclass
class Result:
    who: str
    proposal: str
    established: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.established / self.wall if self.wall else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu / self.established if self.established else float("nan")


def afbr_configs(ps: ProposalSet) -> tuple[IkeConfig, IkeConfig]:
    cred = PskCredential(PSK)
    a = IkeConfig(
        local_id=Identity.fqdn("a.example"),
        credential=cred,
        peer_trust=PeerTrust(psk=cred),
        remote_id=Identity.fqdn("b.example"),
        ike_proposals=(ps.ike,),
        esp_proposals=(ps.esp,),
        send_certificate=False,
    )
    b = replace(a, local_id=Identity.fqdn("b.example"), remote_id=Identity.fqdn("a.example"))
    return a, b


def run_afbr(ps: ProposalSet, n: int, concurrency: int) -> Result:
    config_a, config_b = afbr_configs(ps)
    addr_a, addr_b = ("192.0.2.1", 500), ("192.0.2.2", 500)
    a = IkeDispatcher(lambda _addr: config_a, os.urandom)
    b = IkeDispatcher(
        lambda _addr: config_b, os.urandom, cookie_threshold=10**9, half_open_limit=10**9
    )
    started = established = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while established < n:
        now = time.monotonic()
        while started < n and started - established < concurrency:
            a.connect(config_a, addr_a, addr_b, now)
            started += 1
        moved = False
        for src, dst, dst_addr in ((a, b, addr_b), (b, a, addr_a)):
            for d in src.datagrams_to_send(now):
                dst.receive_datagram(d.data, d.source, now, dst_addr)
                moved = True
        while (event := a.next_event()) is not None:
            established += isinstance(event, ChildSaEstablished)
        while b.next_event() is not None:
            pass
        for sa_id in [k for k, sa in a.sas.items() if sa.children]:
            del a.sas[sa_id]  # keep the tables small: the SA is done, as with load-tester
        for sa_id in [k for k, sa in b.sas.items() if sa.children]:
            del b.sas[sa_id]
        if not moved and started == established:
            break
    return Result(
        "afbr-mem", ps.name, established, time.perf_counter() - wall0, time.process_time() - cpu0
    )


def _udp_side(
    netns: str,
    *,
    me: str,
    peer: str,
    config: IkeConfig,
    n: int,
    concurrency: int,
    conn: Connection,
    stop: EventType,
) -> None:
    """One afbr agent process: the initiator when n > 0, else the responder until `stop`."""
    dispatcher = IkeDispatcher(
        lambda _addr: config, os.urandom, cookie_threshold=10**9, half_open_limit=10**9
    )
    state = {"started": 0, "established": 0}
    done = asyncio.Event()

    def on_event(event: IkeEvent) -> None:
        if isinstance(event, ChildSaEstablished):
            state["established"] += 1  # the SA is done: drop it, tables stay small
            dispatcher.sas.pop(event.ike_sa.spi_i if n else event.ike_sa.spi_r, None)
            if n:
                asyncio.get_running_loop().call_soon(fill)  # not re-entrant: connect drains

    adapter = IkeUdpAdapter(dispatcher, [me], on_event=[on_event], netns=netns, ports=(500,))

    def fill() -> None:
        while state["started"] < n and state["started"] - state["established"] < concurrency:
            state["started"] += 1
            adapter.connect(config, (me, 500), (peer, 500))
        if n and state["established"] >= n:
            done.set()

    async def run() -> None:
        adapter.start()
        conn.send("ready")
        conn.recv()  # go
        wall0, cpu0 = time.perf_counter(), time.process_time()
        if n:
            fill()
            await asyncio.wait_for(done.wait(), 60 + n / 10)
        else:
            while not stop.is_set():
                await asyncio.sleep(0.05)
        conn.send((state["established"], time.perf_counter() - wall0, time.process_time() - cpu0))
        adapter.close()

    asyncio.run(run())


def run_afbr_udp(ps: ProposalSet, n: int, concurrency: int) -> Result:
    """Initiator and responder in two processes (two cores), over UDP between namespaces."""
    config_a, config_b = afbr_configs(ps)
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    with Lab("bench") as lab:
        a, b = lab.host("a"), lab.host("b")
        lab.link(a, "eth0", b, "eth0")
        a.ip_batch(["addr add 192.0.2.1/24 dev eth0"])
        b.ip_batch(["addr add 192.0.2.2/24 dev eth0"])
        pipes = [ctx.Pipe() for _ in range(2)]
        common = {"stop": stop}
        sides = [
            ctx.Process(
                target=_udp_side,
                args=(b.name,),
                kwargs={
                    **common,
                    "me": "192.0.2.2",
                    "peer": "192.0.2.1",
                    "config": config_b,
                    "n": 0,
                    "concurrency": 0,
                    "conn": pipes[0][1],
                },
            ),
            ctx.Process(
                target=_udp_side,
                args=(a.name,),
                kwargs={
                    **common,
                    "me": "192.0.2.1",
                    "peer": "192.0.2.2",
                    "config": config_a,
                    "n": n,
                    "concurrency": concurrency,
                    "conn": pipes[1][1],
                },
            ),
        ]
        for proc, (ours, _theirs) in zip(sides, pipes, strict=True):
            proc.start()
            ours.recv()
        for ours, _theirs in pipes:
            ours.send("go")
        established, wall, cpu_i = pipes[1][0].recv()
        stop.set()
        _, _, cpu_r = pipes[0][0].recv()
        for proc in sides:
            proc.join(10)
    return Result("afbr", ps.name, established, wall, cpu_i + cpu_r)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="establishments per measurement")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--only", choices=("afbr", "strongswan"))
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--in-memory", action="store_true", help="also afbr with both ends in one process"
    )
    args = parser.parse_args(argv)
    results: list[Result] = []
    for ps in SETS:
        if args.only in (None, "afbr"):
            results.append(run_afbr_udp(ps, args.n, args.concurrency))
        if args.in_memory:
            results.append(run_afbr(ps, args.n, args.concurrency))
        if args.only in (None, "strongswan"):
            from ike_setup_strongswan import run_strongswan

            results.append(run_strongswan(ps, args.n, args.concurrency))
    report(results, as_json=args.json)
    return 0


def report(results: list[Result], *, as_json: bool) -> None:
    if as_json:
        rows = [{**r.__dict__, "rate": r.rate, "cpu_ms": r.cpu_ms} for r in results]
        print(json.dumps(rows, indent=2))
        return
    print(f"{'who':<11}{'set':<5}{'n':>6}{'per s':>10}{'CPU ms/SA':>11}")
    for r in results:
        print(f"{r.who:<11}{r.proposal:<5}{r.established:>6}{r.rate:>10.0f}{r.cpu_ms:>11.2f}")
    by = {(r.who, r.proposal): r for r in results}
    for ps in SETS:
        ours, theirs = by.get(("afbr", ps.name)), by.get(("strongswan", ps.name))
        if ours and theirs and theirs.rate:
            print(
                f"{ps.name}: afbr/strongSwan rate {ours.rate / theirs.rate:.2f}x, "
                f"CPU per SA {ours.cpu_ms / theirs.cpu_ms:.2f}x"
            )


if __name__ == "__main__":
    sys.exit(main())
