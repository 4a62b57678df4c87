"""IKE SA + first CHILD SA establishments per second, and CPU time per establishment:
afbr with afbr against strongSwan with strongSwan, same machine, same algorithms, same run.

    .venv/bin/python bench/ike_setup.py [-n 1000] [--json] [--only afbr|strongswan]

Proposal sets (PSK authentication, no PFS for the first CHILD SA, as in IKE_AUTH):
- gcm: IKE AES-GCM-16-128 / PRF-HMAC-SHA2-256 / ECP-256, ESP AES-GCM-16-128;
- cbc: IKE AES-CBC-256 / HMAC-SHA2-256-128 / PRF-HMAC-SHA2-256 / MODP-2048, ESP AES-CBC-256 +
  HMAC-SHA2-256-128.

afbr: an initiator and a responder dispatcher in one Python process (one core), datagrams
handed over in memory, `concurrency` exchanges in flight; CPU = process time (both ends).
No kernel SA install (the strongSwan initiator below installs none either).

strongSwan 5.9.8: two charon-systemd in two namespaces on a veth, with `reuse_ikesa = no`,
`dos_protection = no`; the initiator is driven over VICI (a minimal client here) with
`initiate` requests that do not wait, `concurrency` in flight; the responder installs its SAs
through kernel-libipsec (userspace ESP: the host kernel has no ESP), the initiator as well.
CPU = utime + stime of both charons (from /proc).  Needs root.  The load-tester plugin that
the reference figures used is in no Debian package, hence VICI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, replace

from afbr.ipsec import (
    ChildSaEstablished,
    Identity,
    IkeConfig,
    IkeDispatcher,
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
        "afbr", ps.name, established, time.perf_counter() - wall0, time.process_time() - cpu0
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="establishments per measurement")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--only", choices=("afbr", "strongswan"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results: list[Result] = []
    for ps in SETS:
        if args.only in (None, "afbr"):
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
