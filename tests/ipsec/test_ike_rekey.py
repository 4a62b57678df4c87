"""Back to back: CHILD and IKE SA rekeys, with and without the RFC 7296 §2.8 collisions."""

from __future__ import annotations

import pytest
from ike_pair import Endpoint, Pair, psk_configs

from afbr.ipsec import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaRekeyed,
    IkeSa,
    IkeSaDeleted,
    IkeSaRekeyed,
    IkeState,
)


def _only_sa(ep: Endpoint) -> IkeSa:
    live = [sa for sa in ep.dispatcher.sas.values() if sa.state == IkeState.ESTABLISHED]
    assert len(live) == 1, live
    return live[0]


def _pairs_agree(pair: Pair) -> None:
    """Both sides hold the same IKE SA and mirrored CHILD SAs."""
    sa_a, sa_b = _only_sa(pair.a), _only_sa(pair.b)
    assert sa_a.id == sa_b.id
    assert sa_a.keys == sa_b.keys
    pairs_a = sorted((c.inbound_spi, c.outbound_spi) for c in sa_a.children.values())
    pairs_b = sorted((c.outbound_spi, c.inbound_spi) for c in sa_b.children.values())
    assert pairs_a == pairs_b


def test_child_rekey_installs_new_then_deletes_old() -> None:
    pair = Pair(*psk_configs())
    sa = pair.connect()
    (old,) = sa.children
    sa.rekey_child(old, pair.now)
    pair.a.dispatcher.after_command(sa, pair.now)
    pair.pump()
    for ep in (pair.a, pair.b):
        (rekeyed,) = ep.of_type(ChildSaRekeyed)
        (deleted,) = ep.of_type(ChildSaDeleted)
        assert ep.events.index(rekeyed) < ep.events.index(deleted)  # make-before-break
    assert pair.a.of_type(ChildSaRekeyed)[0].old_inbound_spi == old
    assert pair.a.of_type(ChildSaDeleted)[0].inbound_spi == old
    assert len(sa.children) == 1 and old not in sa.children
    _pairs_agree(pair)


def test_child_rekey_on_soft_lifetime_timer() -> None:
    pair = Pair(*psk_configs())
    pair.connect()
    pair.advance(pair.config_a.timers.child_rekey + 5, step=60)
    assert pair.a.of_type(ChildSaRekeyed) or pair.b.of_type(ChildSaRekeyed)
    _pairs_agree(pair)


def test_child_rekey_collision_leaves_one_sa() -> None:
    pair = Pair(*psk_configs())
    sa_a = pair.connect()
    sa_b = _only_sa(pair.b)
    (spi_a,) = sa_a.children
    (spi_b,) = sa_b.children
    sa_a.rekey_child(spi_a, pair.now)
    sa_b.rekey_child(spi_b, pair.now)
    pair.a.dispatcher.after_command(sa_a, pair.now)
    pair.b.dispatcher.after_command(sa_b, pair.now)
    pair.pump()
    assert len(sa_a.children) == 1 and len(sa_b.children) == 1
    _pairs_agree(pair)
    # each side saw two new SAs; the redundant one and the old one were deleted on both
    for ep in (pair.a, pair.b):
        assert len(ep.of_type(ChildSaRekeyed)) == 2
        assert len(ep.of_type(ChildSaDeleted)) == 2


def test_ike_rekey_moves_children_and_deletes_old() -> None:
    pair = Pair(*psk_configs())
    sa = pair.connect()
    old_id = sa.id
    children = set(sa.children)
    sa.rekey(pair.now)
    pair.a.dispatcher.after_command(sa, pair.now)
    pair.pump()
    for ep in (pair.a, pair.b):
        (rekeyed,) = ep.of_type(IkeSaRekeyed)
        assert rekeyed.ike_sa == old_id
        (deleted,) = ep.of_type(IkeSaDeleted)
        assert deleted.ike_sa == old_id
        assert not ep.of_type(ChildSaDeleted)  # children moved, not deleted
    _pairs_agree(pair)
    new = _only_sa(pair.a)
    assert set(new.children) == children and new.id != old_id
    assert new.keys != sa.keys
    # the new IKE SA works: rekey a CHILD SA through it
    new.rekey_child(next(iter(children)), pair.now)
    pair.a.dispatcher.after_command(new, pair.now)
    pair.pump()
    assert len(pair.b.of_type(ChildSaRekeyed)) == 1
    _pairs_agree(pair)


def test_ike_rekey_by_responder_and_on_timer() -> None:
    pair = Pair(*psk_configs())
    pair.connect()
    sa_b = _only_sa(pair.b)
    sa_b.rekey(pair.now)
    pair.b.dispatcher.after_command(sa_b, pair.now)
    pair.pump()
    _pairs_agree(pair)
    assert _only_sa(pair.b).is_initiator  # the rekey's initiator is the new SA's initiator
    pair.advance(pair.config_a.timers.ike_rekey + 10, step=300)
    assert len(pair.a.of_type(IkeSaRekeyed)) >= 2
    _pairs_agree(pair)


def test_ike_rekey_collision_leaves_one_sa_with_the_children() -> None:
    pair = Pair(*psk_configs())
    sa_a = pair.connect()
    sa_b = _only_sa(pair.b)
    children = set(sa_a.children)
    sa_a.rekey(pair.now)
    sa_b.rekey(pair.now)
    pair.a.dispatcher.after_command(sa_a, pair.now)
    pair.b.dispatcher.after_command(sa_b, pair.now)
    pair.pump()
    _pairs_agree(pair)
    assert set(_only_sa(pair.a).children) == children
    for ep in (pair.a, pair.b):
        assert not ep.of_type(ChildSaDeleted)
        assert len(ep.of_type(IkeSaDeleted)) == 2  # the old SA and the redundant new one
        assert len(ep.dispatcher.sas) == 1
    assert len(pair.a.of_type(ChildSaEstablished)) == 1


def test_child_rekey_retries_with_pfs_when_the_peer_asks_for_a_group() -> None:
    from dataclasses import replace

    from afbr.ipsec import DhGroup
    from afbr.ipsec.ike_proposals import ESP_AES_GCM_128

    a, b = psk_configs(esp_proposals=(ESP_AES_GCM_128,))
    # B (like strongSwan with esp_proposals = aes128gcm16-ecp256) wants PFS on rekeys
    b = replace(b, child_pfs_group=DhGroup.ECP_256)
    pair = Pair(a, b)
    sa = pair.connect()
    (old,) = sa.children
    sa.rekey_child(old, pair.now)
    pair.a.dispatcher.after_command(sa, pair.now)
    pair.pump()
    (rekeyed,) = pair.a.of_type(ChildSaRekeyed)
    assert rekeyed.child.algorithms.dh_group == DhGroup.ECP_256
    _pairs_agree(pair)


def test_pfs_rekey_suite_names_the_group_on_both_sides() -> None:
    from afbr.ipsec import DhGroup

    pair = Pair(*psk_configs())
    sa = pair.connect()
    sa.rekey_child(next(iter(sa.children)), pair.now)
    pair.a.dispatcher.after_command(sa, pair.now)
    pair.pump()
    for ep in (pair.a, pair.b):
        (rekeyed,) = ep.of_type(ChildSaRekeyed)
        assert rekeyed.child.algorithms.dh_group is DhGroup.ECP_256  # the enum, not an int
        assert rekeyed.child.algorithms.describe().endswith("ECP_256")


def test_frequent_rekeys_on_both_sides_stay_consistent() -> None:
    """CHILD rekeys every ~5 s and IKE rekeys every ~7 s, timers on both ends (so rekeys
    collide now and then): the two ends always agree, never more than a rekey's overlap."""
    from afbr.ipsec import Timers

    timers = Timers(child_rekey=5.0, child_lifetime=9.0, ike_rekey=7.0, rekey_jitter=0.3)
    pair = Pair(*psk_configs(timers=timers))
    pair.connect()
    for _ in range(12):
        pair.advance(5.0, step=0.25)
        assert 1 <= len(_only_sa(pair.a).children) <= 2
        assert 1 <= len(_only_sa(pair.b).children) <= 2
    pair.advance(3.0, step=0.25)  # let the last deletes complete
    _pairs_agree(pair)
    for ep in (pair.a, pair.b):
        assert len(ep.of_type(IkeSaRekeyed)) >= 6
        assert len(ep.of_type(ChildSaRekeyed)) >= 8
        assert not [e for e in ep.of_type(ChildSaDeleted) if e.reason == "expired"]
        assert not [e for e in ep.of_type(IkeSaDeleted) if "unreachable" in e.reason]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_frequent_rekeys_with_packet_loss_converge(seed: int) -> None:
    """10 % of datagrams lost while CHILD SAs rekey every ~10 s and the IKE SA every ~15 s,
    on timers at both ends: collisions, retransmissions and lost answers.  During the run
    each end keeps one live IKE SA with a CHILD SA; once the loss stops, the ends converge
    to the same single IKE SA and CHILD SA (redundant SAs deleted, lost ones re-created)."""
    import random

    from afbr.ipsec import Timers

    timers = Timers(
        child_rekey=10.0, child_lifetime=30.0, ike_rekey=15.0, rekey_jitter=0.2,
        retransmit_timeout=0.5,
    )  # fmt: skip
    pair = Pair(*psk_configs(timers=timers), seed=seed)
    rng = random.Random(seed)
    pair.connect()
    pair.drop = lambda side, d: rng.random() < 0.1
    for _ in range(20):
        pair.advance(10.0, step=0.25)
        for ep in (pair.a, pair.b):
            live = [
                sa
                for sa in ep.dispatcher.sas.values()
                if sa.state == IkeState.ESTABLISHED and sa.superseded_at is None
            ]
            assert len(live) == 1
            assert 1 <= len(live[0].children) <= 3
    pair.drop = lambda side, d: False
    pair.advance(60.0, step=0.5)
    _pairs_agree(pair)
    for ep in (pair.a, pair.b):
        assert len(ep.dispatcher.sas) == 1
        assert len(_only_sa(ep).children) == 1
