"""afbr's XFRM module against the real kernel (run inside the UML kernel: ESP, xfrm interfaces).

Two namespaces joined by a veth; afbr.dataplane.xfrm installs SAs and policies on both sides
with keys from os.urandom; pings between the inner addresses prove the data path, the SA
counters prove ESP carried it, nftables counters on the veth prove nothing went in clear.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from afbr.dataplane.xfrm import (
    IF_ID_MIN,
    REQID_MIN,
    EspCipher,
    EspIntegrity,
    SaRef,
    SaSpec,
    UdpEncap,
    add_sa,
    allocate_spi,
    delete_sa,
    flush_afbr_sas,
    get_sa,
    list_sas,
    update_sa,
)
from afbr.dataplane.xfrm_events import SaAcquire, SaExpired, XfrmEventListener
from afbr.dataplane.xfrm_iface import create_xfrm_interface, interface_name
from afbr.dataplane.xfrm_policy import (
    PolicySpec,
    add_policy,
    esp_template,
    flush_afbr_policies,
    install_route_based_peer,
    list_policies,
)
from afbr.dataplane.xfrm_socket import XfrmSocket, netns_scope
from afbr.dataplane.xfrm_wire import AF_INET, AF_INET6, Lifetime, PolicyDir, Selector, XfrmMode
from afbr.lab.netns import Host, Lab

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

IP = ipaddress.ip_address
A4, B4 = IP("192.0.2.1"), IP("192.0.2.2")
A6, B6 = IP("2001:db8::1"), IP("2001:db8::2")
A_IN4, B_IN4 = "198.51.100.1", "203.0.113.1"
A_IN6, B_IN6 = "fd00:a::1", "fd00:b::1"
NFT_CLEAR_COUNTERS = """table inet afbrtest {
  chain pre {
    type filter hook prerouting priority -300; policy accept;
    iifname "eth0" ip daddr 203.0.113.1 meta secpath missing counter comment "clear4"
    iifname "eth0" ip6 daddr fd00:b::1 meta secpath missing counter comment "clear6"
    iifname "eth0" udp dport 4500 counter comment "natt"
    iifname "eth0" meta l4proto 50 counter comment "espc"
  }
}
"""


@dataclass
class Pair:
    a: Host
    b: Host
    xa: XfrmSocket
    xb: XfrmSocket


@pytest.fixture
def pair(lab: Lab) -> Iterator[Pair]:
    a, b = lab.host("a", forwarding=True), lab.host("b", forwarding=True)
    lab.link(a, "eth0", b, "eth0")
    for host, v4, v6, in4, in6 in ((a, A4, A6, A_IN4, A_IN6), (b, B4, B6, B_IN4, B_IN6)):
        host.ip_batch(
            [
                f"addr add {v4}/24 dev eth0",
                f"addr add {v6}/64 dev eth0 nodad",
                f"addr add {in4}/32 dev lo",
                f"addr add {in6}/128 dev lo",
            ]
        )
    _nft(b, NFT_CLEAR_COUNTERS)
    with XfrmSocket(a.name) as xa, XfrmSocket(b.name) as xb:
        yield Pair(a, b, xa, xb)


def _nft(host: Host, ruleset: str) -> None:
    path = f"{os.environ.get('TMPDIR', '/tmp')}/{host.name}.nft"
    with open(path, "w") as f:
        f.write(ruleset)
    host.run("nft", "-f", path)


def nft_counter(host: Host, name: str) -> int:
    """Packets counted by the rule commented `name` (anonymous counters: no nft_objref)."""
    out = json.loads(host.run("nft", "-j", "list", "chain", "inet", "afbrtest", "pre"))
    for item in out["nftables"]:
        rule = item.get("rule")
        if rule is not None and rule.get("comment") == name:
            for expr in rule["expr"]:
                if "counter" in expr:
                    return int(expr["counter"]["packets"])
    raise AssertionError(f"no counter {name}")


def ping(host: Host, src: str, dst: str, count: int = 3) -> int:
    """Number of echo replies received."""
    out = host.run(
        "ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", "-I", src, dst, check=False
    )
    match = re.search(r"(\d+) received", out)
    return int(match.group(1)) if match else 0


def keys(cipher: EspCipher) -> dict[str, object]:
    if cipher == EspCipher.AES_GCM_16:
        return {"cipher": cipher, "encryption_key": os.urandom(36)}  # AES-256 + salt
    return {
        "cipher": cipher,
        "encryption_key": os.urandom(16) if cipher == EspCipher.AES_CBC else b"",
        "integrity": EspIntegrity.HMAC_SHA2_256_128,
        "integrity_key": os.urandom(32),
    }


def install_pair(
    p: Pair,
    local: ipaddress.IPv4Address | ipaddress.IPv6Address,
    remote: ipaddress.IPv4Address | ipaddress.IPv6Address,
    *,
    spi_ab: int,
    spi_ba: int,
    reqid: int,
    **fields: object,
) -> tuple[SaSpec, SaSpec]:
    """The same two SAs (a->b, b->a) on both sides, each with its own keys; returns them."""
    cipher = fields.pop("cipher", EspCipher.AES_GCM_16)
    ab = SaSpec(local, remote, spi_ab, reqid, **keys(cipher), **fields)  # type: ignore[arg-type]
    ba = SaSpec(remote, local, spi_ba, reqid, **keys(cipher), **fields)  # type: ignore[arg-type]
    for sock in (p.xa, p.xb):
        add_sa(sock, ab)
        add_sa(sock, ba)
    return ab, ba


def policy_based(p: Pair, reqid: int, mode: XfrmMode, local: object, remote: object) -> None:
    """Host-to-host policies (the policy-based layout; route-based is tested below)."""
    a_sel = Selector(AF_INET, IP(B_IN4), IP(A_IN4), 32, 32)
    b_sel = Selector(AF_INET, IP(A_IN4), IP(B_IN4), 32, 32)
    if mode == XfrmMode.TRANSPORT:
        a_sel = Selector(AF_INET6, B6, A6, 128, 128)
        b_sel = Selector(AF_INET6, A6, B6, 128, 128)
    for sock, out_sel, in_sel, me, peer in (
        (p.xa, a_sel, b_sel, local, remote),
        (p.xb, b_sel, a_sel, remote, local),
    ):
        out_t = esp_template(me, peer, reqid, mode)  # type: ignore[arg-type]
        in_t = esp_template(peer, me, reqid, mode)  # type: ignore[arg-type]
        add_policy(sock, PolicySpec(out_sel, PolicyDir.OUT, (out_t,)))
        add_policy(sock, PolicySpec(in_sel, PolicyDir.IN, (in_t,)))
    if mode == XfrmMode.TUNNEL:  # the inner destination must be routable before the policy
        p.a.ip_batch([f"route add {B_IN4}/32 via {B4}"])
        p.b.ip_batch([f"route add {A_IN4}/32 via {A4}"])


@pytest.mark.parametrize(
    "cipher", [EspCipher.AES_GCM_16, EspCipher.AES_CBC, EspCipher.NULL], ids=lambda c: c.name
)
def test_tunnel_mode_policy_based(pair: Pair, cipher: EspCipher) -> None:
    ab, ba = install_pair(
        pair, A4, B4, spi_ab=0x1001, spi_ba=0x1002, reqid=REQID_MIN + 1, cipher=cipher
    )
    policy_based(pair, REQID_MIN + 1, XfrmMode.TUNNEL, A4, B4)
    assert ping(pair.a, A_IN4, B_IN4) == 3
    for sock in (pair.xa, pair.xb):
        for spec in (ab, ba):
            state = get_sa(sock, SaRef(spec.dst, spec.spi))
            assert state is not None
            assert state.packets >= 3
    assert nft_counter(pair.b, "clear4") == 0
    assert nft_counter(pair.b, "espc") >= 3
    # control: without the policies the same ping goes in clear, and the counter sees it
    assert flush_afbr_policies(pair.xa) == 2
    assert ping(pair.a, A_IN4, B_IN4, count=1) == 0  # B still demands ESP inbound
    assert nft_counter(pair.b, "clear4") == 1


def test_transport_mode_ipv6(pair: Pair) -> None:
    ab, _ = install_pair(
        pair,
        A6,
        B6,
        spi_ab=0x2001,
        spi_ba=0x2002,
        reqid=REQID_MIN + 2,
        mode=XfrmMode.TRANSPORT,
        replay_window=128,
    )
    policy_based(pair, REQID_MIN + 2, XfrmMode.TRANSPORT, A6, B6)
    assert ping(pair.a, str(A6), str(B6)) == 3
    state = get_sa(pair.xb, SaRef(B6, ab.spi))
    assert state is not None and state.packets >= 3 and state.mode == XfrmMode.TRANSPORT
    assert nft_counter(pair.b, "espc") >= 3


def test_allocate_spi_and_ownership(pair: Pair) -> None:
    spi = allocate_spi(pair.xb, A4, B4, REQID_MIN + 3)
    assert spi >= 0x100
    spec = SaSpec(A4, B4, spi, REQID_MIN + 3, **keys(EspCipher.AES_CBC))  # type: ignore[arg-type]
    update_sa(pair.xb, spec)
    state = get_sa(pair.xb, SaRef(B4, spi))
    assert state is not None and state.algorithms == ("cbc(aes)", "hmac(sha256)")
    # an SA and a policy that are not afbr's: listed only on request, never flushed
    pair.b.ip_batch(
        [
            "xfrm state add src 192.0.2.9 dst 192.0.2.2 proto esp spi 0x77 reqid 5 mode tunnel "
            "aead 'rfc4106(gcm(aes))' 0x" + "11" * 20 + " 128",
            "xfrm policy add src 10.0.0.0/8 dst 10.0.0.0/8 dir out tmpl src 192.0.2.2 "
            "dst 192.0.2.9 proto esp reqid 5 mode tunnel",
        ]
    )
    add_policy(
        pair.xb,
        PolicySpec(
            Selector(AF_INET, IP(A_IN4), IP(B_IN4), 32, 32),
            PolicyDir.IN,
            (esp_template(A4, B4, REQID_MIN + 3),),
        ),
    )
    assert [s.spi for s in list_sas(pair.xb)] == [spi]
    assert {s.spi for s in list_sas(pair.xb, only_afbr=False)} == {spi, 0x77}
    assert len(list_policies(pair.xb)) == 1
    assert flush_afbr_sas(pair.xb) == 1
    assert flush_afbr_policies(pair.xb) == 1
    assert [s.spi for s in list_sas(pair.xb, only_afbr=False)] == [0x77]
    assert len(list_policies(pair.xb, only_afbr=False)) == 1
    assert delete_sa(pair.xb, SaRef(B4, spi)) is False


def route_based(p: Pair, outer_a: object, outer_b: object, if_id: int, reqid: int) -> None:
    """Interfaces, wildcard policies and routes of the inner prefixes on both sides."""
    for host, sock, me, peer, routes in (
        (p.a, p.xa, outer_a, outer_b, (B_IN4, B_IN6)),
        (p.b, p.xb, outer_b, outer_a, (A_IN4, A_IN6)),
    ):
        iface = create_xfrm_interface(if_id, underlying="eth0", netns=host.name)
        install_route_based_peer(sock, me, peer, if_id, reqid)  # type: ignore[arg-type]
        host.ip_batch([f"route replace {r} dev {iface.name}" for r in routes])


def xfrmi_tx_errors(host: Host, if_id: int) -> int:
    out = json.loads(host.run("ip", "-j", "-s", "link", "show", "dev", interface_name(if_id)))
    stats = out[0]["stats64"]["tx"]
    return int(stats["errors"]) + int(stats["dropped"]) + int(stats.get("carrier_errors", 0))


@pytest.mark.parametrize("outer", ["ipv6", "ipv4"])
def test_route_based_cross_family(pair: Pair, outer: str) -> None:
    """IPv4 in IPv6 and IPv6 in IPv4 through one xfrm interface per peer; no SA: dropped."""
    oa, ob = (A6, B6) if outer == "ipv6" else (A4, B4)
    inner_src, inner_dst, clear = (
        (A_IN4, B_IN4, "clear4") if outer == "ipv6" else (A_IN6, B_IN6, "clear6")
    )
    if_id, reqid = IF_ID_MIN + 1, REQID_MIN + 10
    route_based(pair, oa, ob, if_id, reqid)
    with XfrmEventListener(pair.a.name) as events:
        # no SA yet: the packets must die in the interface, not leave in clear
        assert ping(pair.a, inner_src, inner_dst, count=2) == 0
        assert xfrmi_tx_errors(pair.a, if_id) >= 1
        assert nft_counter(pair.b, clear) == 0
        acquired = _wait_event(events, SaAcquire, 5.0)
        assert acquired.reqid == reqid and acquired.dst == ob
    ab, ba = install_pair(pair, oa, ob, spi_ab=0x3001, spi_ba=0x3002, reqid=reqid, if_id=if_id)
    assert ping(pair.a, inner_src, inner_dst) == 3
    for spec in (ab, ba):
        state = get_sa(pair.xb, SaRef(spec.dst, spec.spi))
        assert state is not None and state.packets >= 3 and state.if_id == if_id
    assert nft_counter(pair.b, clear) == 0
    delete_sa(pair.xa, SaRef(ob, ab.spi))  # the outbound SA goes: traffic stops, no clear text
    assert ping(pair.a, inner_src, inner_dst, count=2) == 0
    assert nft_counter(pair.b, clear) == 0


def _wait_event(listener: XfrmEventListener, kind: type, timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in listener.receive(deadline - time.monotonic()):
            if isinstance(event, kind):
                return event
    raise AssertionError(f"no {kind.__name__} within {timeout}s")


def test_lifetimes_expire_events(pair: Pair) -> None:
    with XfrmEventListener(pair.a.name) as events:
        spec = SaSpec(
            B4,
            A4,
            0x4001,
            REQID_MIN + 4,
            **keys(EspCipher.AES_GCM_16),  # type: ignore[arg-type]
            lifetime=Lifetime(soft_add_seconds=1, hard_add_seconds=3),
        )
        add_sa(pair.xa, spec)
        soft = _wait_event(events, SaExpired, 10.0)
        assert isinstance(soft, SaExpired)
        assert (soft.spi, soft.reqid, soft.hard) == (0x4001, REQID_MIN + 4, False)
        hard = _wait_event(events, SaExpired, 10.0)
        assert isinstance(hard, SaExpired) and hard.hard and hard.spi == 0x4001
    assert get_sa(pair.xa, SaRef(A4, 0x4001)) is None


def test_rekey_under_ping_loses_nothing(pair: Pair) -> None:
    if_id, reqid = IF_ID_MIN + 2, REQID_MIN + 20
    route_based(pair, A4, B4, if_id, reqid)
    ab, ba = install_pair(pair, A4, B4, spi_ab=0x5000, spi_ba=0x5001, reqid=reqid, if_id=if_id)
    proc = pair.a.popen("ping", "-n", "-c", "120", "-i", "0.05", "-I", A_IN4, B_IN4, stdout=-1)
    time.sleep(1.0)
    for n in range(1, 5):
        new_ab = replace(ab, spi=0x5000 + 2 * n, encryption_key=os.urandom(36))
        new_ba = replace(ba, spi=0x5001 + 2 * n, encryption_key=os.urandom(36))
        # make-before-break across the two peers: both inbound SAs first, then outbound
        add_sa(pair.xb, new_ab)
        add_sa(pair.xa, new_ba)
        add_sa(pair.xa, new_ab)
        add_sa(pair.xb, new_ba)
        delete_sa(pair.xa, SaRef(B4, ab.spi))
        delete_sa(pair.xb, SaRef(A4, ba.spi))
        time.sleep(0.3)  # packets in flight on the old SAs are still accepted
        delete_sa(pair.xb, SaRef(B4, ab.spi))
        delete_sa(pair.xa, SaRef(A4, ba.spi))
        state = get_sa(pair.xa, SaRef(A4, new_ba.spi))
        ab, ba = new_ab, new_ba
        time.sleep(0.7)
        assert state is not None
    out, _ = proc.communicate(timeout=60)
    text = out.decode()
    assert "120 packets transmitted, 120 received" in text, text
    state = get_sa(pair.xa, SaRef(A4, ba.spi))
    assert state is not None and state.packets > 0
    assert len(list_sas(pair.xa)) == 2


def test_udp_encapsulated_esp(pair: Pair) -> None:
    with contextlib.ExitStack() as stack:
        for host in (pair.a, pair.b):
            with netns_scope(host.name):
                sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            sock.setsockopt(socket.IPPROTO_UDP, 100, 2)  # UDP_ENCAP = UDP_ENCAP_ESPINUDP
            sock.bind(("0.0.0.0", 4500))
        ab, _ = install_pair(
            pair, A4, B4, spi_ab=0x6001, spi_ba=0x6002, reqid=REQID_MIN + 6, encap=UdpEncap()
        )
        policy_based(pair, REQID_MIN + 6, XfrmMode.TUNNEL, A4, B4)
        assert ping(pair.a, A_IN4, B_IN4) == 3
        state = get_sa(pair.xb, SaRef(B4, ab.spi))
        assert state is not None and state.packets >= 3 and state.encap == (4500, 4500)
        assert nft_counter(pair.b, "natt") >= 3
        assert nft_counter(pair.b, "espc") == 0
        assert nft_counter(pair.b, "clear4") == 0
