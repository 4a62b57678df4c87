"""Two afbr IKEv2 endpoints back to back in memory: establishment with every algorithm set."""

from __future__ import annotations

import pytest
from ike_pair import Pair, psk_configs

from afbr.ipsec import (
    ESP_AES_CBC_SHA256,
    ESP_AES_GCM_128,
    ESP_AES_GCM_256,
    ESP_NULL_SHA256,
    IKE_AES_CBC_SHA256,
    IKE_AES_GCM_128,
    IKE_AES_GCM_256,
    AlgorithmSuite,
    ChildSaEstablished,
    ChildSaFailed,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeState,
    IpsecMode,
    TrafficSelector,
)
from afbr.ipsec.ike_constants import NotifyType
from afbr.ipsec.ike_message import decode_header


def _established(pair: Pair) -> tuple[ChildSaEstablished, ChildSaEstablished]:
    assert len(pair.a.of_type(IkeSaEstablished)) == 1
    assert len(pair.b.of_type(IkeSaEstablished)) == 1
    (child_a,) = pair.a.of_type(ChildSaEstablished)
    (child_b,) = pair.b.of_type(ChildSaEstablished)
    return child_a, child_b


def _mirrored(child_a: ChildSaEstablished, child_b: ChildSaEstablished) -> None:
    """A's outbound SA is B's inbound one and the other way round, keys included."""
    assert child_a.child.outbound == child_b.child.inbound
    assert child_a.child.inbound == child_b.child.outbound
    assert child_a.child.outbound.spi != child_a.child.inbound.spi


@pytest.mark.parametrize("ike", [IKE_AES_GCM_128, IKE_AES_GCM_256, IKE_AES_CBC_SHA256])
@pytest.mark.parametrize(
    "esp", [ESP_AES_GCM_128, ESP_AES_GCM_256, ESP_AES_CBC_SHA256, ESP_NULL_SHA256]
)
def test_psk_establishes_with_each_algorithm_set(ike: AlgorithmSuite, esp: AlgorithmSuite) -> None:
    a, b = psk_configs(ike_proposals=(ike,), esp_proposals=(esp,))
    pair = Pair(a, b)
    pair.connect()
    child_a, child_b = _established(pair)
    _mirrored(child_a, child_b)
    assert pair.a.of_type(IkeSaEstablished)[0].suite == ike
    assert child_a.child.algorithms == esp
    assert len(child_a.child.outbound.encryption_key) == esp.encryption_key_bytes
    assert len(child_a.child.outbound.integrity_key) == esp.integrity_key_bytes
    assert child_a.child.udp_encapsulation is None
    assert child_a.child.outbound.source == "192.0.2.1"


def test_responder_picks_its_acceptable_proposal_from_several() -> None:
    a, _ = psk_configs()
    _, b = psk_configs(esp_proposals=(ESP_NULL_SHA256,), ike_proposals=(IKE_AES_GCM_128,))
    pair = Pair(a, b)
    pair.connect()
    child_a, _ = _established(pair)
    assert child_a.child.algorithms == ESP_NULL_SHA256


def test_invalid_ke_payload_makes_the_initiator_retry_with_the_asked_group() -> None:
    a, _ = psk_configs(ike_proposals=(IKE_AES_GCM_128, IKE_AES_GCM_256))
    _, b = psk_configs(ike_proposals=(IKE_AES_GCM_256,))
    pair = Pair(a, b)
    pair.connect()
    _established(pair)
    assert pair.a.of_type(IkeSaEstablished)[0].suite == IKE_AES_GCM_256
    init_requests = [
        d for side, d in pair.wire if side == "a" and decode_header(d.data).exchange == 34
    ]
    assert len(init_requests) == 2


def test_no_proposal_chosen_establishes_nothing() -> None:
    a, _ = psk_configs(ike_proposals=(IKE_AES_GCM_128,))
    _, b = psk_configs(ike_proposals=(IKE_AES_CBC_SHA256,))
    pair = Pair(a, b)
    sa = pair.connect()
    assert sa.state == IkeState.CLOSED
    assert not pair.a.of_type(IkeSaEstablished) and not pair.b.of_type(IkeSaEstablished)
    assert pair.b.dispatcher.sas == {}


def test_child_proposal_mismatch_keeps_the_ike_sa() -> None:
    a, _ = psk_configs(esp_proposals=(ESP_AES_GCM_128,))
    _, b = psk_configs(esp_proposals=(ESP_NULL_SHA256,))
    pair = Pair(a, b)
    pair.connect()
    assert len(pair.a.of_type(IkeSaEstablished)) == 1
    assert not pair.a.of_type(ChildSaEstablished)
    (failed,) = pair.a.of_type(ChildSaFailed)
    assert failed.notify == NotifyType.NO_PROPOSAL_CHOSEN
    assert pair.b.of_type(ChildSaFailed)


def test_traffic_selectors_are_narrowed_by_the_responder() -> None:
    a, _ = psk_configs()
    _, b = psk_configs(
        local_ts=(TrafficSelector.from_network("198.51.100.0/24"),),
        remote_ts=(TrafficSelector.from_network("203.0.113.0/25"),),
    )
    pair = Pair(a, b)
    pair.connect()
    child_a, child_b = _established(pair)
    assert child_a.child.remote_ts == (TrafficSelector.from_network("198.51.100.0/24"),)
    assert child_a.child.local_ts == (TrafficSelector.from_network("203.0.113.0/25"),)
    assert child_b.child.local_ts == child_a.child.remote_ts


def test_disjoint_traffic_selectors_give_ts_unacceptable() -> None:
    a, _ = psk_configs(local_ts=(TrafficSelector.from_network("192.0.2.0/24"),))
    _, b = psk_configs(remote_ts=(TrafficSelector.from_network("203.0.113.0/24"),))
    pair = Pair(a, b)
    pair.connect()
    (failed,) = pair.a.of_type(ChildSaFailed)
    assert failed.notify == NotifyType.TS_UNACCEPTABLE


def test_transport_mode_is_negotiated_and_a_mismatch_refused() -> None:
    a, b = psk_configs(mode=IpsecMode.TRANSPORT)
    pair = Pair(a, b)
    pair.connect()
    child_a, _ = _established(pair)
    assert child_a.child.mode == IpsecMode.TRANSPORT
    _, b_tunnel = psk_configs()
    pair = Pair(a, b_tunnel)
    pair.connect()
    assert pair.a.of_type(ChildSaFailed)


def test_create_another_child_sa() -> None:
    pair = Pair(*psk_configs())
    sa = pair.connect()
    sa.create_child(pair.now)
    pair.a.dispatcher.after_command(sa, pair.now)
    pair.pump()
    assert len(pair.a.of_type(ChildSaEstablished)) == 2
    assert len(pair.b.of_type(ChildSaEstablished)) == 2
    assert len(sa.children) == 2


def test_delete_child_then_ike_sa() -> None:
    pair = Pair(*psk_configs())
    sa = pair.connect()
    (child,) = sa.children
    sa.delete_child(child, pair.now)
    pair.a.dispatcher.after_command(sa, pair.now)
    pair.pump()
    from afbr.ipsec import ChildSaDeleted

    assert [e.inbound_spi for e in pair.a.of_type(ChildSaDeleted)] == [child]
    assert len(pair.b.of_type(ChildSaDeleted)) == 1
    sa.delete(pair.now)
    pair.a.dispatcher.after_command(sa, pair.now)
    pair.pump()
    assert pair.a.of_type(IkeSaDeleted) and pair.b.of_type(IkeSaDeleted)
    assert pair.a.dispatcher.sas == {} and pair.b.dispatcher.sas == {}


def test_initial_contact_from_a_restarted_peer_drops_its_stale_sas() -> None:
    from ike_pair import ADDR_A, ADDR_B, seeded

    from afbr.ipsec import ChildSaDeleted, ChildSaEstablished, IkeDispatcher

    pair = Pair(*psk_configs())
    pair.connect()
    old = next(iter(pair.b.dispatcher.sas.values()))
    # A restarts (kill -9): a fresh dispatcher with no memory connects again
    pair.now += 1.0
    pair.a.dispatcher = IkeDispatcher(lambda addr: pair.config_a, seeded(99))
    pair.a.dispatcher.connect(pair.config_a, ADDR_A, ADDR_B, pair.now)
    pair.pump()
    assert old.state == IkeState.CLOSED
    assert [e.reason for e in pair.b.of_type(IkeSaDeleted)] == ["peer restarted (INITIAL_CONTACT)"]
    assert len(pair.b.of_type(ChildSaDeleted)) == 1
    assert len(pair.b.dispatcher.sas) == 1
    # make-before-break: B hears of the new pair (as its responder) before the stale one goes
    kinds = [type(e) for e in pair.b.events if isinstance(e, (ChildSaEstablished, ChildSaDeleted))]
    assert kinds[-2:] == [ChildSaEstablished, ChildSaDeleted]
    assert pair.b.of_type(ChildSaEstablished)[-1].responder
    assert not pair.a.of_type(ChildSaEstablished)[-1].responder


def test_a_simultaneous_start_keeps_both_ike_sas_on_both_ends() -> None:
    """Both AFBRs lost their SAs and initiate at once, each with INITIAL_CONTACT.  Neither
    may take the other's IKE SA for a leftover (RFC 7296 §2.4 speaks of SAs from before a
    restart): dropping it would leave each end with the one SA the other end dropped."""
    from ike_pair import ADDR_A, ADDR_B

    from afbr.ipsec import ChildSaDeleted, ChildSaEstablished

    config_a, config_b = psk_configs()
    pair = Pair(config_a, config_b)
    pair.a.dispatcher.connect(config_a, ADDR_A, ADDR_B, pair.now)
    pair.pump(rounds=1)  # A's IKE_SA_INIT reached B; B starts its own before it hears more
    pair.now += 0.01
    pair.b.dispatcher.connect(config_b, ADDR_B, ADDR_A, pair.now)
    pair.pump()  # A's IKE SA is up at A just before B's IKE_AUTH (INITIAL_CONTACT) arrives
    for end in (pair.a, pair.b):
        states = [sa.state for sa in end.dispatcher.all_sas()]
        assert states == [IkeState.ESTABLISHED, IkeState.ESTABLISHED]
        assert len(end.of_type(ChildSaEstablished)) == 2
        assert end.of_type(ChildSaDeleted) == []
