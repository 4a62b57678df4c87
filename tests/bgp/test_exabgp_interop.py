"""Real ExaBGP 5.0.15, two instances in namespaces joined by veth, TCP-MD5 on every session.

1. Shapes: instance A announces (raw attribute 23, RFC 8950 IPv6 next hops for IPv4 NLRI,
   IPv4-mapped next hops for IPv6 NLRI, reflector attributes, withdrawals, route refresh,
   End-of-RIB) through an API process that writes the commands afbr's plugin writes; instance B
   hands what it receives to a recorder.  afbr's parser must turn exactly those lines into the
   expected events, with no error.  (tests/bgp/exabgp_5_0_15_api.jsonl was recorded this way.)
2. End to end: two afbr control planes (ExaBGP with afbr's rendered config and plugin) in a
   full mesh exchange their client prefixes and SW-Encap sets, for IPv4-over-IPv6 and
   IPv6-over-IPv4; a wrong MD5 key gives no session.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Any

import pytest

from afbr.bgp.exabgp_api import CommandAck, ExabgpApiParser
from afbr.bgp.exabgp_events import (
    Afi,
    EndOfRib,
    NeighborDown,
    NeighborUp,
    RouteAnnounce,
    RouteRefresh,
    RouteWithdraw,
)
from afbr.bgp.tunnel_encap import TunnelType, decode_tunnel_encap
from afbr.lab.afbr_control_plane import AfbrControlPlane
from afbr.lab.daemon_base import PeerError, wait_until
from afbr.lab.exabgp_peer import ExaBgp
from afbr.lab.netns import Host, Lab

pytestmark = [pytest.mark.interop, pytest.mark.netns]

KEY = "s0ftw1re-md5"
GRE_KEY_7 = "0002000a01040000000702020800"  # tunnel-encap.txt vector 2: GRE key 7, IPv4
IPIP_V6 = "0007000402020800"  # IP-in-IP, protocol type IPv4 (GoBGP-style, hand-built)
A6, B6, A4, B4 = "2001:db8::1", "2001:db8::2", "192.0.2.1", "192.0.2.2"

# What A's API process writes, one per `done` (the grammar afbr's plugin uses).
ANNOUNCER_COMMANDS = [
    f"announce attributes next-hop {A6} origin igp local-preference 200 "
    f"attribute [ 0x17 0xc0 0x{GRE_KEY_7} ] nlri 198.51.100.0/24 198.51.100.128/25 203.0.113.0/26",
    f"announce attributes next-hop {A6} origin egp med 50 as-path [ 65001 65010 ] "
    "originator-id 192.0.2.9 cluster-list [ 192.0.2.7 192.0.2.8 ] "
    f"attribute [ 0x17 0xc0 0x{IPIP_V6} ] nlri 203.0.113.64/26",
    f"announce attributes next-hop ::ffff:{A4} origin igp attribute [ 0x17 0xc0 0x{GRE_KEY_7} ]"
    " nlri 2001:db8:100::/48 2001:db8:200::/48",
    f"withdraw attributes next-hop {A6} nlri 198.51.100.128/25 203.0.113.0/26",
    f"withdraw attributes next-hop ::ffff:{A4} nlri 2001:db8:200::/48",
    "announce route-refresh ipv4 unicast",
    "announce eor ipv6 unicast",
    f"announce attributes next-hop {A4} origin incomplete attribute [ 0x17 0x40 0x0002 ] "
    "nlri 192.0.2.128/25",
]

ANNOUNCER = """\
import sys
commands = [line.rstrip("\\n") for line in open(sys.argv[1])]
for line in sys.stdin:
    if '"state": "up"' in line:
        break
for command in commands:
    sys.stdout.write(command + "\\n")
    sys.stdout.flush()
    for answer in sys.stdin:
        if answer.strip() in ("done", "error"):
            print(answer.strip(), command, file=sys.stderr, flush=True)
            break
for line in sys.stdin:
    pass
"""

RECORDER = """\
import sys
with open(sys.argv[1], "a") as out:
    for line in sys.stdin:
        out.write(line)
        out.flush()
"""


def _exabgp_config(*, me: str, peer: str, router_id: str, process: str, receive: bool) -> str:
    name, arguments = process.split(" ", 1)
    receive_block = "receive { parsed; update; refresh; notification; }" if receive else ""
    return f"""process {name} {{
    run {sys.executable} {arguments};
    encoder json;
}}
neighbor {peer} {{
    router-id {router_id};
    local-address {me};
    local-as 65001;
    peer-as 65001;
    hold-time 30;
    md5-password {KEY};
    capability {{ route-refresh; nexthop true; }}
    family {{ ipv4 unicast; ipv6 unicast; }}
    nexthop {{ ipv4 unicast ipv6; }}
    api {{ processes [ {name} ]; {receive_block} neighbor-changes; }}
}}
"""


def _pair(lab: Lab) -> tuple[Host, Host]:
    a, b = lab.host("a"), lab.host("b")
    lab.link(a, "eth0", b, "eth0")
    a.ip_batch([f"addr add {A6}/64 dev eth0 nodad", f"addr add {A4}/24 dev eth0"])
    b.ip_batch([f"addr add {B6}/64 dev eth0 nodad", f"addr add {B4}/24 dev eth0"])
    return a, b


def record_exabgp_api(lab: Lab, workdir: Path) -> list[str]:
    """Run the two-ExaBGP exchange and return the JSON lines B's API process received."""
    a, b = _pair(lab)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "announcer.py").write_text(ANNOUNCER)
    (workdir / "recorder.py").write_text(RECORDER)
    (workdir / "commands.txt").write_text("\n".join(ANNOUNCER_COMMANDS) + "\n")
    record = workdir / "received.jsonl"
    record.touch()
    receiver = ExaBgp(
        b,
        workdir / "b",
        config=_exabgp_config(
            me=B6,
            peer=A6,
            router_id=B4,
            process=f"recorder {workdir / 'recorder.py'} {record}",
            receive=True,
        ),
        env={"exabgp_tcp_bind": B6},
        cli=False,
    ).start()
    announcer = ExaBgp(
        a,
        workdir / "a",
        config=_exabgp_config(
            me=A6,
            peer=B6,
            router_id=A4,
            process=f"announcer {workdir / 'announcer.py'} {workdir / 'commands.txt'}",
            receive=False,
        ),
        cli=False,
    ).start()

    def all_received() -> bool:  # the last route, and the withdraws (they may come after it)
        withdraws = [line for line in record.read_text().splitlines() if '"withdraw"' in line]
        return "192.0.2.128/25" in record.read_text() and all(
            any(prefix in line for line in withdraws)
            for prefix in ("198.51.100.128/25", "2001:db8:200::/48")
        )

    wait_until(
        all_received,
        timeout=40,
        what=f"the last route at B\n{announcer.log_tail()}\n{receiver.log_tail()}",
    )
    announcer.stop()
    wait_until(lambda: '"state": "down"' in record.read_text(), timeout=20, what="state down")
    return record.read_text().splitlines()


def test_real_exabgp_json_becomes_the_expected_events(lab: Lab, tmp_path: Path) -> None:
    # ExaBGP 5.0.15 now and then stops passing received UPDATEs to its API process (its own
    # counters show them received; the process gets nothing more, seen in about one exchange
    # in six on this machine, before this test changed too).  That is ExaBGP's, not what this
    # test is about: up to two more exchanges, in fresh namespaces.
    try:
        lines = record_exabgp_api(lab, tmp_path / "try1")
    except PeerError as exc:
        print(f"ExaBGP exchange incomplete, trying again: {str(exc).splitlines()[0]}")
        for attempt in (2, 3):
            with Lab(f"x{attempt}") as again:
                try:
                    lines = record_exabgp_api(again, tmp_path / f"try{attempt}")
                    break
                except PeerError:
                    if attempt == 3:
                        raise
    parser = ExabgpApiParser()
    events = [e for line in lines for e in parser.feed(line) if not isinstance(e, CommandAck)]
    assert not parser.errors, parser.errors
    announces = [e for e in events if isinstance(e, RouteAnnounce)]
    withdraws = [e for e in events if isinstance(e, RouteWithdraw)]
    by_prefix = {p: e for e in announces for p in e.prefixes}

    assert any(isinstance(e, NeighborUp) and e.neighbor == A6 for e in events)
    first = by_prefix["198.51.100.0/24"]
    assert (first.afi, first.next_hop, first.attributes.local_pref) == (
        Afi.IPV4,
        ip_address(A6),  # RFC 8950: IPv4 NLRI, IPv6 next hop
        200,
    )
    assert first.prefixes == ("198.51.100.0/24", "198.51.100.128/25", "203.0.113.0/26")
    assert first.attributes.tunnel_encap == bytes.fromhex(GRE_KEY_7)
    assert first.attributes.tunnel_encap_flags == 0xE0  # ExaBGP sets Partial on relay
    assert decode_tunnel_encap(first.attributes.tunnel_encap).tunnels[0].gre_key == 7

    reflected = by_prefix["203.0.113.64/26"].attributes
    assert reflected.med == 50 and reflected.as_path_length == 2
    assert reflected.originator_id == IPv4Address("192.0.2.9")
    assert reflected.cluster_list == (IPv4Address("192.0.2.7"), IPv4Address("192.0.2.8"))
    assert reflected.tunnel_encap == bytes.fromhex(IPIP_V6)

    mapped = by_prefix["2001:db8:100::/48"]
    assert mapped.afi == Afi.IPV6 and mapped.next_hop == ip_address(f"::ffff:{A4}")
    assert mapped.attributes is by_prefix["2001:db8:200::/48"].attributes  # interned

    assert by_prefix["192.0.2.128/25"].attributes.tunnel_encap_flags == 0x60  # flags as sent
    withdrawn = {(e.afi, p) for e in withdraws for p in e.prefixes}
    assert withdrawn == {
        (Afi.IPV4, "198.51.100.128/25"),
        (Afi.IPV4, "203.0.113.0/26"),
        (Afi.IPV6, "2001:db8:200::/48"),
    }
    assert RouteRefresh(A6, Afi.IPV4, "query") in events
    assert {e.afi for e in events if isinstance(e, EndOfRib)} == {Afi.IPV4, Afi.IPV6}
    assert isinstance(events[-1], NeighborDown) or any(isinstance(e, NeighborDown) for e in events)


def _afbr_config(*, router_id: str, core: str, peer: str, prefixes: list[str]) -> dict[str, Any]:
    family = ip_address(core).version
    return {
        "router_id": router_id,
        "asn": 65001,
        "core": {"family": f"ipv{family}", "address": core},
        "clients": {"prefixes": prefixes},
        "bgp": {"neighbors": [{"address": peer, "asn": 65001, "role": "peer", "md5_key": "mesh"}]},
        "encap": {"preference": ["gre", "ip-in-ip"], "gre_key": 100},
        "ipsec": {"enabled": False},
    }


@pytest.mark.parametrize(
    ("core", "clients_a", "clients_b"),
    [
        (6, ["198.51.100.0/25", "198.51.100.128/25"], ["203.0.113.0/24"]),
        (4, ["2001:db8:a::/48", "2001:db8:aa::/48"], ["2001:db8:b::/48"]),
    ],
    ids=["ipv4-over-ipv6", "ipv6-over-ipv4"],
)
def test_two_afbr_control_planes_learn_each_others_softwires(
    lab: Lab, tmp_path: Path, core: int, clients_a: list[str], clients_b: list[str]
) -> None:
    a, b = _pair(lab)
    addr_a, addr_b = (A6, B6) if core == 6 else (A4, B4)
    cp_a = AfbrControlPlane(
        a,
        tmp_path / "a",
        config=_afbr_config(router_id=A4, core=addr_a, peer=addr_b, prefixes=clients_a),
        md5_keys={"mesh": KEY},
    ).start()
    cp_b = AfbrControlPlane(
        b,
        tmp_path / "b",
        config=_afbr_config(router_id=B4, core=addr_b, peer=addr_a, prefixes=clients_b),
        md5_keys={"mesh": KEY},
    ).start()
    dump_b = cp_b.wait_dump(
        lambda d: set(clients_a) <= set(d.get("prefixes", {})), timeout=40, what="A's routes at B"
    )
    dump_a = cp_a.wait_dump(
        lambda d: set(clients_b) <= set(d.get("prefixes", {})), timeout=20, what="B's routes at A"
    )
    for dump, clients, endpoint in ((dump_b, clients_a, addr_a), (dump_a, clients_b, addr_b)):
        for prefix in clients:
            best = dump["prefixes"][prefix]
            assert best["endpoint"] == endpoint  # RFC 5565 §9: the next hop
            assert best["tunnel_types"] == [TunnelType.GRE, TunnelType.IP_IN_IP]
            attribute = decode_tunnel_encap(bytes.fromhex(best["tunnel_encap"]))
            assert attribute.tunnels[0].gre_key == 100
            assert best["problems"] == []
        assert dump["counters"] == {} and dump["api_errors"] == {}
    assert set(dump_b["prefixes"]) == set(clients_a)  # nothing of its own, nothing else


def test_wrong_md5_key_gives_no_session(lab: Lab, tmp_path: Path) -> None:
    a, b = _pair(lab)
    cp_a = AfbrControlPlane(
        a,
        tmp_path / "a",
        config=_afbr_config(router_id=A4, core=A6, peer=B6, prefixes=["198.51.100.0/24"]),
        md5_keys={"mesh": KEY},
    ).start()
    cp_b = AfbrControlPlane(
        b,
        tmp_path / "b",
        config=_afbr_config(router_id=B4, core=B6, peer=A6, prefixes=["203.0.113.0/24"]),
        md5_keys={"mesh": KEY + "-wrong"},
    ).start()
    cp_b.wait_dump(lambda d: "neighbors_up" in d, timeout=20, what="B's first dump")
    time.sleep(8)  # several connection attempts
    for cp in (cp_a, cp_b):
        dump = cp.rib_dump()
        assert dump["neighbors_up"] == [] and dump["prefixes"] == {}, json.dumps(dump)[:500]
        assert cp.running()


def test_a_respawned_plugin_gets_the_routes_again(lab: Lab, tmp_path: Path) -> None:
    """ExaBGP respawns a dead API process but does not replay what it received: the new
    plugin asks for a route refresh (RFC 2918) and rebuilds its RIB from the answer."""
    a, b = _pair(lab)
    AfbrControlPlane(
        a,
        tmp_path / "a",
        config=_afbr_config(router_id=A4, core=A6, peer=B6, prefixes=["198.51.100.0/24"]),
        md5_keys={"mesh": KEY},
    ).start()
    cp_b = AfbrControlPlane(
        b,
        tmp_path / "b",
        config=_afbr_config(router_id=B4, core=B6, peer=A6, prefixes=["203.0.113.0/24"]),
        md5_keys={"mesh": KEY},
    ).start()
    cp_b.wait_dump(lambda d: "198.51.100.0/24" in d.get("prefixes", {}), timeout=40, what="A")
    first = cp_b.plugin_pid()
    cp_b.rib_dump_file.unlink()
    os.kill(first, signal.SIGKILL)  # no last dump: the next one is the new process's
    wait_until(lambda: cp_b.plugin_pid() != first, timeout=30, what="a respawned plugin")
    dump = cp_b.wait_dump(
        lambda d: "198.51.100.0/24" in d.get("prefixes", {}), timeout=40, what="A's route again"
    )
    assert dump["command_acks"].get("done", 0) >= 1  # the refresh went to an established peer
    assert dump["prefixes"]["198.51.100.0/24"]["endpoint"] == A6
