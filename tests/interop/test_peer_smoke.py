"""Smoke tests of the real peers: each starts in a namespace and answers on its own CLI.

BGP: every daemon (GoBGP, BIRD, ExaBGP) reaches Established in at least one TCP-MD5 session,
as its own CLI reports it, and a route crosses it; a wrong MD5 key gives no session and the
kernel counts the rejected segments.  IKE: two charons set up an IKE SA with a PSK over their
vici sockets, and the CHILD SA carries a ping: user-space ESP over TUN (kernel-libipsec) on this
host kernel, real kernel ESP (kernel-netlink) in the tunnel kernel (the `kernel` test, in UML).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from afbr.lab.netns import Host, Lab
from afbr.lab.peers import BgpNeighbor, Bird, Charon, ExaBgp, GoBgp, tcp_md5_rejections

pytestmark = [pytest.mark.interop, pytest.mark.netns]

KEY = "s0ftw1re-md5"
RR6, CLIENT6 = "2001:db8:ffff::1", "2001:db8:ffff::2"
RR4, CLIENT4 = "192.0.2.1", "192.0.2.2"


def _pair(lab: Lab) -> tuple[Host, Host]:
    """A reflector host and a client host on one veth, with IPv4 and IPv6 addresses."""
    rr, client = lab.host("rr"), lab.host("c")
    lab.link(rr, "eth0", client, "eth0")
    rr.ip_batch([f"addr add {RR6}/64 dev eth0 nodad", f"addr add {RR4}/24 dev eth0"])
    client.ip_batch([f"addr add {CLIENT6}/64 dev eth0 nodad", f"addr add {CLIENT4}/24 dev eth0"])
    return rr, client


def _exabgp_conf(*, peer: str, local: str, key: str, routes: list[str]) -> str:
    static = "".join(f"        route {r};\n" for r in routes)
    return f"""neighbor {peer} {{
    router-id 192.0.2.2;
    local-address {local};
    local-as 65000;
    peer-as 65000;
    md5-password {key};
    capability {{ route-refresh; nexthop true; }}
    family {{ ipv4 unicast; ipv6 unicast; }}
    nexthop {{ ipv4 unicast ipv6; }}
    static {{
{static}    }}
}}
"""


def test_gobgp_and_bird_establish_with_md5(lab: Lab, tmp_path: Path) -> None:
    rr, client = _pair(lab)
    gobgp = GoBgp(
        rr,
        tmp_path / "gobgp",
        asn=65000,
        router_id=RR4,
        local_address=RR6,
        neighbors=[BgpNeighbor(CLIENT6, 65000, KEY, rr_client=True, passive=True)],
    ).start()
    to_rr = BgpNeighbor(RR6, 65000, KEY, name="rr")
    bird = Bird(
        client,
        tmp_path / "bird",
        asn=65000,
        router_id=CLIENT4,
        local_address=CLIENT6,
        neighbors=[to_rr],
        extra_config='protocol static { ipv6; route 2001:db8:a::/48 via "eth0"; }',
    ).start()
    bird.wait_established(RR6)
    gobgp.wait_established(CLIENT6)
    assert "md5" not in bird.log_tail().lower()  # no MD5 complaint on the way
    # A route crosses the session: BIRD's static route is in GoBGP's RIB.
    rr_rib: dict[str, object] = {}
    deadline = time.monotonic() + 10
    while "2001:db8:a::/48" not in rr_rib and time.monotonic() < deadline:
        time.sleep(0.2)
        rr_rib = gobgp.rib("ipv6")
    assert "2001:db8:a::/48" in rr_rib


def test_exabgp_and_gobgp_establish_with_md5(lab: Lab, tmp_path: Path) -> None:
    rr, client = _pair(lab)
    gobgp = GoBgp(
        rr,
        tmp_path / "gobgp",
        asn=65000,
        router_id=RR4,
        local_address=RR4,
        neighbors=[BgpNeighbor(CLIENT4, 65000, KEY, rr_client=True, passive=True)],
    ).start()
    conf = _exabgp_conf(
        peer=RR4, local=CLIENT4, key=KEY, routes=["198.51.100.0/24 next-hop 192.0.2.2"]
    )
    exabgp = ExaBgp(client, tmp_path / "exabgp", config=conf).start()
    exabgp.wait_established(RR4)
    gobgp.wait_established(CLIENT4)
    deadline = time.monotonic() + 10
    rib = gobgp.rib("ipv4")
    while "198.51.100.0/24" not in rib and time.monotonic() < deadline:
        time.sleep(0.2)
        rib = gobgp.rib("ipv4")
    (path,) = rib["198.51.100.0/24"]
    assert path["neighbor-ip"] == CLIENT4


def test_wrong_md5_key_gives_no_session(lab: Lab, tmp_path: Path) -> None:
    rr, client = _pair(lab)
    to_client = BgpNeighbor(CLIENT6, 65000, KEY, rr_client=True, passive=True, name="c")
    bird = Bird(
        rr,
        tmp_path / "bird",
        asn=65000,
        router_id=RR4,
        local_address=RR6,
        neighbors=[to_client],
    ).start()
    conf = _exabgp_conf(peer=RR6, local=CLIENT6, key="not-" + KEY, routes=[])
    exabgp = ExaBgp(client, tmp_path / "exabgp", config=conf).start()
    deadline = time.monotonic() + 10
    while tcp_md5_rejections(rr) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert tcp_md5_rejections(rr) > 0  # the SYNs arrived and the kernel dropped them for the key
    assert bird.session_state(CLIENT6) != "established"
    assert exabgp.session_state(RR6) != "established"


def _swanctl_conf(me: str, peer: str, local_ts: str, remote_ts: str) -> str:
    ids = {"192.0.2.1": "a.example", "192.0.2.2": "b.example"}
    return f"""connections {{
    psk {{
        version = 2
        local_addrs = {me}
        remote_addrs = {peer}
        proposals = aes128gcm16-prfsha256-ecp256
        local {{
            auth = psk
            id = {ids[me]}
        }}
        remote {{
            auth = psk
            id = {ids[peer]}
        }}
        children {{
            net {{
                mode = tunnel
                local_ts = {local_ts}
                remote_ts = {remote_ts}
                esp_proposals = aes128gcm16-ecp256
            }}
        }}
    }}
}}
secrets {{
    ike-ab {{
        id-a = a.example
        id-b = b.example
        secret = "0x0123456789abcdef0123456789abcdef"
    }}
}}
"""


def _two_charons_ping(lab: Lab, tmp_path: Path, *, userspace_esp: bool) -> tuple[Charon, Host]:
    """Two charons, A initiates an IKE SA with PSK and its CHILD SA; a ping crosses it."""
    a, b = lab.host("a"), lab.host("b")
    lab.link(a, "eth0", b, "eth0")
    a.ip_batch(["addr add 192.0.2.1/24 dev eth0", "addr add 198.51.100.1/32 dev lo"])
    b.ip_batch(["addr add 192.0.2.2/24 dev eth0", "addr add 203.0.113.1/32 dev lo"])
    charon_a = Charon(
        a,
        tmp_path / "a",
        swanctl_conf=_swanctl_conf(RR4, CLIENT4, "198.51.100.1/32", "203.0.113.1/32"),
        userspace_esp=userspace_esp,
    ).start()
    charon_b = Charon(
        b,
        tmp_path / "b",
        swanctl_conf=_swanctl_conf(CLIENT4, RR4, "203.0.113.1/32", "198.51.100.1/32"),
        userspace_esp=userspace_esp,
    ).start()
    stats = charon_a.stats()  # swanctl --stats over A's own vici socket
    assert stats["IKE_SAs"].startswith("0 total")
    assert "vici" in stats["loaded plugins"]

    charon_a.initiate("psk", "net")
    assert charon_a.ike_sa_state("psk") == "ESTABLISHED"
    assert charon_b.ike_sa_state("psk") == "ESTABLISHED"
    assert charon_b.child_sa_states("psk") == {"net": "INSTALLED"}
    a.run("ping", "-c", "1", "-W", "2", "-I", "198.51.100.1", "203.0.113.1")
    sas = charon_b.swanctl("--list-sas", "--ike", "psk")
    assert re.search(r"^\s+in\s+\w+,\s+\d+ bytes,\s+1 packets", sas, re.MULTILINE), sas
    return charon_b, b


def test_two_charons_set_up_an_ike_sa_with_psk(lab: Lab, tmp_path: Path) -> None:
    """On this host kernel (no ESP): kernel-libipsec, ESP in UDP over TUN."""
    _two_charons_ping(lab, tmp_path, userspace_esp=True)


@pytest.mark.kernel
def test_two_charons_with_kernel_esp(lab: Lab, tmp_path: Path) -> None:
    """In the tunnel kernel (UML): kernel-netlink installs real ESP SAs; the kernel counts."""
    _, b = _two_charons_ping(lab, tmp_path, userspace_esp=False)
    states = b.run("ip", "-s", "xfrm", "state")
    assert "proto esp" in states
    assert re.search(r"lifetime current:\s+\d+\(bytes\), [1-9]\d*\(packets\)", states), states
