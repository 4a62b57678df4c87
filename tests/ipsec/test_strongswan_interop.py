"""afbr's IKEv2 agent against real strongSwan 5.9.8, in namespaces inside the UML kernel.

afbr (namespace A: dispatcher + UDP adapter + XFRM installer) and charon (namespace B,
kernel-netlink) are both route-based: an xfrm interface per peer, 0.0.0.0/0 and ::/0.
Each test checks the kernel on both sides: pings between the inner addresses pass and the
ESP SA counters move, or, when authentication must fail, no SA exists anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from test_strongswan_interop_lab import (
    A4,
    A6,
    A_IN4,
    A_IN6,
    B4,
    B6,
    B_IN4,
    B_IN6,
    PSK_HEX,
    AfbrNode,
    Charon,
    CharonSide,
    kernel_sas,
    ping,
    topology,
)

from afbr.dataplane.xfrm_events import SaExpired
from afbr.ipsec import (
    AuthenticationFailed,
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaRekeyed,
    Identity,
    IkeConfig,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaRekeyed,
    KeyCredential,
    PeerTrust,
    PskCredential,
    Timers,
    public_key_authenticator,
)
from afbr.ipsec.ike_auth import PrivateKey
from afbr.ipsec.ike_proposals import ESP_AES_GCM_128, ESP_NULL_SHA256, IKE_AES_GCM_128
from afbr.lab.netns import Host, Lab

pytestmark = [pytest.mark.kernel, pytest.mark.netns, pytest.mark.interop]

PSK = PskCredential(bytes.fromhex(PSK_HEX))
FAST_TIMERS = Timers(retransmit_timeout=0.5, retransmit_tries=3, dpd_delay=2.0)


def psk_config(**changes: object) -> IkeConfig:
    config = IkeConfig(
        local_id=Identity.fqdn("a.example"),
        credential=PSK,
        peer_trust=PeerTrust(psk=PSK),
        remote_id=Identity.fqdn("b.example"),
        ike_proposals=(IKE_AES_GCM_128,),
        timers=FAST_TIMERS,
        send_certificate=False,
    )
    return replace(config, **changes)  # type: ignore[arg-type]


@pytest.fixture
def hosts(lab: Lab) -> tuple[Host, Host]:
    return topology(lab)


@pytest.fixture
def nodes(hosts: tuple[Host, Host]) -> Iterator[list[AfbrNode]]:
    made: list[AfbrNode] = []
    yield made
    for node in made:
        node.close()


def start(
    hosts: tuple[Host, Host],
    nodes: list[AfbrNode],
    config: IkeConfig,
    side: CharonSide,
    pem: dict[str, bytes] | None = None,
    *,
    soft_packets: int | None = None,
) -> tuple[AfbrNode, Charon]:
    a, b = hosts
    node = AfbrNode(a, side.remote_ip, side.local_ip, config, soft_packets=soft_packets)
    nodes.append(node)
    return node, Charon(b, side, pem or {})


def assert_traffic(node: AfbrNode, charon: Charon) -> None:
    """Pings both ways and for both inner families; ESP counters move on both sides."""
    a = node.host
    assert ping(a, A_IN4, B_IN4) == (3, 3), charon.log()
    assert ping(a, A_IN6, B_IN6) == (3, 3), charon.log()
    ours = node.sas()
    assert len(ours) == 2 and all(s.packets >= 6 for s in ours), ours
    theirs = kernel_sas(charon.host)
    assert len(theirs) == 2 and all(s.packets >= 6 for s in theirs), theirs


@pytest.mark.parametrize(
    ("outer", "esp"),
    [("ipv4", "aes128gcm16"), ("ipv6", "null-sha256")],
)
def test_afbr_initiator_psk(
    hosts: tuple[Host, Host], nodes: list[AfbrNode], outer: str, esp: str
) -> None:
    local, remote = (A4, B4) if outer == "ipv4" else (A6, B6)
    side = CharonSide(local_ip=remote, remote_ip=local, esp_proposals=esp)
    config = psk_config(esp_proposals=(ESP_AES_GCM_128, ESP_NULL_SHA256))
    node, charon = start(hosts, nodes, config, side)
    node.connect()
    node.wait_for(IkeSaEstablished)
    child = node.wait_for(ChildSaEstablished)
    expected = 20 if esp.startswith("aes") else 11  # ENCR_AES_GCM_16 / ENCR_NULL
    assert int(child.child.algorithms.encryption) == expected
    assert_traffic(node, charon)


@pytest.mark.parametrize(
    ("outer", "esp"),
    [("ipv4", "null-sha256"), ("ipv6", "aes128gcm16")],
)
def test_afbr_responder_psk(
    hosts: tuple[Host, Host], nodes: list[AfbrNode], outer: str, esp: str
) -> None:
    local, remote = (A4, B4) if outer == "ipv4" else (A6, B6)
    side = CharonSide(local_ip=remote, remote_ip=local, esp_proposals=esp)
    node, charon = start(hosts, nodes, psk_config(), side)
    out = charon.initiate()
    assert "completed successfully" in out, out + charon.log()
    node.wait_for(ChildSaEstablished)
    assert_traffic(node, charon)


def test_rekey_under_ping_loses_nothing(hosts: tuple[Host, Host], nodes: list[AfbrNode]) -> None:
    """strongSwan rekeys the CHILD SA every 4 s and afbr does too, under a 10/s ping."""
    side = CharonSide(child_rekey_time="4s", child_life_time="20s")
    node, charon = start(hosts, nodes, psk_config(), side)
    sa = node.connect()
    child = node.wait_for(ChildSaEstablished)
    proc = node.host.popen("ping", "-n", "-c", "150", "-i", "0.1", "-I", A_IN4, B_IN4, stdout=-1)
    try:
        node.wait_for(ChildSaRekeyed, timeout=10)  # strongSwan's rekey
        node.wait_for(ChildSaDeleted, timeout=10)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{charon.log()}") from None
    installed = next(iter(node.installer.children))
    node.drive(lambda s, now: s.rekey_child(installed, now), sa)  # afbr's own rekey
    node.wait_for(ChildSaRekeyed, timeout=10)
    out, _ = proc.communicate(timeout=60)
    assert "150 packets transmitted, 150 received" in out.decode(), out.decode() + charon.log()
    assert child.child.inbound.spi not in node.installer.children
    assert len(node.sas()) == 2


def test_kernel_soft_expire_starts_a_rekey(hosts: tuple[Host, Host], nodes: list[AfbrNode]) -> None:
    """A soft packet limit on afbr's SAs: the kernel's EXPIRE makes afbr rekey, under ping."""
    node, charon = start(hosts, nodes, psk_config(), CharonSide(), soft_packets=40)
    node.connect()
    first = node.wait_for(ChildSaEstablished)
    out = node.host.run("ping", "-n", "-c", "80", "-i", "0.05", "-I", A_IN4, B_IN4)
    assert "80 packets transmitted, 80 received" in out, out + charon.log()
    rekeyed = node.wait_for(ChildSaRekeyed, timeout=10)
    assert rekeyed.old_inbound_spi == first.child.inbound.spi
    expired = [e for e in node.kernel_events if isinstance(e, SaExpired)]
    assert expired and not any(e.hard for e in expired)
    assert ping(node.host, A_IN4, B_IN4) == (3, 3)


def test_ike_rekey_under_ping_loses_nothing(
    hosts: tuple[Host, Host], nodes: list[AfbrNode]
) -> None:
    """strongSwan rekeys the IKE SA after 4 s, then afbr rekeys it; the CHILD SAs carry on."""
    node, charon = start(hosts, nodes, psk_config(), CharonSide(rekey_time="4s"))
    node.connect()
    node.wait_for(ChildSaEstablished)
    proc = node.host.popen("ping", "-n", "-c", "100", "-i", "0.1", "-I", A_IN4, B_IN4, stdout=-1)
    try:
        theirs = node.wait_for(IkeSaRekeyed, timeout=10)  # strongSwan's rekey
        new_sa = node.call(  # events name SAs by id: find the successor in the dispatcher
            lambda: next(s for s in node.dispatcher.all_sas() if s.id == theirs.new_ike_sa)
        )
        node.drive(lambda s, now: s.rekey(now), new_sa)  # afbr's own
        ours = node.wait_for(IkeSaRekeyed, timeout=10)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{charon.log()}") from None
    assert ours.ike_sa == theirs.new_ike_sa
    out, _ = proc.communicate(timeout=60)
    assert "100 packets transmitted, 100 received" in out.decode(), out.decode() + charon.log()
    # strongSwan goes on rekeying every 4 s: the CHILD SAs belong to whichever IKE SA is live
    owners, live = node.call(
        lambda: (
            {c.ike_sa for c in node.installer.children.values()},
            {sa.id for sa in node.dispatcher.sas.values()},
        )
    )
    assert owners and owners <= live
    assert len(node.sas()) == 2
    assert ping(node.host, A_IN6, B_IN6) == (3, 3)


def test_dpd_clears_sas_after_kill(hosts: tuple[Host, Host], nodes: list[AfbrNode]) -> None:
    node, charon = start(hosts, nodes, psk_config(), CharonSide())
    node.connect()
    node.wait_for(ChildSaEstablished)
    assert ping(node.host, A_IN4, B_IN4) == (3, 3)
    charon.kill()
    node.wait_for(IkeSaDeleted, timeout=30)
    assert node.sas() == []
    assert ping(node.host, A_IN4, B_IN4, count=2)[1] == 0  # dropped, never in clear


def test_wrong_psk_establishes_nothing(hosts: tuple[Host, Host], nodes: list[AfbrNode]) -> None:
    side = CharonSide(psk_hex="ff" * 16)
    node, charon = start(hosts, nodes, psk_config(), side)
    node.connect()
    failed = node.wait_for((AuthenticationFailed, IkeSaDeleted), timeout=20)
    assert failed is not None
    assert node.sas() == []
    assert kernel_sas(charon.host) == []
    assert all(not isinstance(e, ChildSaEstablished) for e in node.seen)


def _pem_private(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_public(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def pubkey_setup(
    afbr_key: PrivateKey, charon_key: PrivateKey, trusted: PrivateKey | None = None
) -> tuple[IkeConfig, CharonSide, dict[str, bytes]]:
    """afbr with `afbr_key`, charon with `charon_key`, both raw public keys (no PKI).

    afbr pins charon's key and checks it against the RFC 5566 authenticator of `trusted`
    (charon's own key unless a test wants a mismatch)."""
    peer_pub = charon_key.public_key()
    authenticator = public_key_authenticator((trusted or charon_key).public_key())
    config = psk_config(
        local_id=Identity.fqdn("a-pk.example"),
        credential=KeyCredential(afbr_key),
        peer_trust=PeerTrust(public_key=peer_pub, authenticator=authenticator),
        remote_id=Identity.fqdn("b-pk.example"),
    )
    side = CharonSide(
        local_auth="auth = pubkey\n            pubkeys = b.pub.pem\n            id = b-pk.example",
        remote_auth="auth = pubkey\n            pubkeys = a.pub.pem\n            id = a-pk.example",
    )
    pem = {
        "pubkey/a.pub.pem": _pem_public(afbr_key),
        "pubkey/b.pub.pem": _pem_public(charon_key),
        "private/b.pem": _pem_private(charon_key),
    }
    return config, side, pem


def _ecdsa() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _rsa() -> PrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(
    ("afbr_kind", "charon_kind", "afbr_initiates"),
    [("ecdsa", "rsa", True), ("rsa", "ecdsa", False)],
)
def test_raw_public_keys(
    hosts: tuple[Host, Host],
    nodes: list[AfbrNode],
    afbr_kind: str,
    charon_kind: str,
    afbr_initiates: bool,
) -> None:
    make = {"ecdsa": _ecdsa, "rsa": _rsa}
    config, side, pem = pubkey_setup(make[afbr_kind](), make[charon_kind]())
    node, charon = start(hosts, nodes, config, side, pem)
    if afbr_initiates:
        node.connect()
    else:
        out = charon.initiate()
        assert "completed successfully" in out, out + charon.log()
    established = node.wait_for(IkeSaEstablished)
    assert str(established.remote_id) == "b-pk.example"
    node.wait_for(ChildSaEstablished)
    assert_traffic(node, charon)


def test_mismatching_authenticator_establishes_nothing(
    hosts: tuple[Host, Host], nodes: list[AfbrNode]
) -> None:
    """charon's key is valid but is not the one its BGP authenticator names (RFC 5619 §4.4.2)."""
    config, side, pem = pubkey_setup(_ecdsa(), _ecdsa(), trusted=_ecdsa())
    node, charon = start(hosts, nodes, config, side, pem)
    out = charon.initiate()
    assert "completed successfully" not in out
    failed = node.wait_for(AuthenticationFailed, timeout=20)
    assert "authenticator" in failed.reason
    assert node.sas() == []
    assert kernel_sas(charon.host) == []
    assert ping(node.host, A_IN4, B_IN4, count=1)[1] == 0


def test_udp_encapsulation_when_charon_fakes_a_nat(
    hosts: tuple[Host, Host], nodes: list[AfbrNode]
) -> None:
    """strongSwan's `encap = yes` fakes a NAT: IKE floats to 4500 and ESP goes in UDP."""
    node, charon = start(hosts, nodes, psk_config(), CharonSide(encap="yes"))
    node.connect()
    established = node.wait_for(IkeSaEstablished)
    assert established.nat_detected
    child = node.wait_for(ChildSaEstablished)
    assert child.child.udp_encapsulation == (4500, 4500)
    assert_traffic(node, charon)
    assert all(s.encap == (4500, 4500) for s in node.sas())
    assert all(s.encap == (4500, 4500) for s in kernel_sas(charon.host))


def test_afbr_responder_when_charon_floats_to_4500(
    hosts: tuple[Host, Host], nodes: list[AfbrNode]
) -> None:
    node, charon = start(hosts, nodes, psk_config(), CharonSide(mobike="yes"))
    out = charon.initiate()
    assert "completed successfully" in out, out
    node.wait_for(ChildSaEstablished, timeout=5)
    assert_traffic(node, charon)
