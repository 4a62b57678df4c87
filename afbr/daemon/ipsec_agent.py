"""The daemon's IKEv2 agent: keys the ESP softwires (route-based XFRM) of the remote AFBRs.

For each `IpsecNeed` of the desired state (an ESP softwire to a remote AFBR, RFC 5566 tunnel
type 4) the agent installs that peer's wildcard policies on the softwire's if_id at once — so
before any SA exists the kernel drops the peer's traffic, it never leaves in clear (RFC 5566
§3) — and keeps the peer keyed for as long as it is wanted (afbr.daemon.ipsec_keeper decides):
whoever has no SA initiates, whatever the address order, with bounded backoff; a CHILD SA the
kernel lost (flushed, deleted by hand, an install that failed) is rekeyed on its IKE SA, and the
IKE SA started over when that does not bring it back.  The kernel is the truth: the agent listens
to XFRM deletions and re-reads its SAs and policies on every tick that needs it (at least every
`KERNEL_CHECK_INTERVAL`), restores missing policies, and reports only what the kernel holds.

The CHILD SAs go into the kernel through `XfrmChildInstaller`, make-before-break on rekeys.
After a restart of afbr the kernel still holds the previous run's SAs (forwarding went on): the
agent adopts them as orphans and negotiates a new IKE SA at once; the peer sees INITIAL_CONTACT
and the old pairs give way to the new ones without a packet lost.

Authentication is pairwise PSK (keys file: peer core address -> key; `group_psk` uses the key
named `mesh` for all, RFC 5619 §3.5.2) or public keys, checked against the IPsec Tunnel
Authenticator the peer advertised in BGP (RFC 5566 §4; RFC 5619 §4.4.2).  `reconfigure` takes
new credentials (a reload): new IKE SAs use them, and the existing ones are started over so the
key in use always matches the authenticator advertised.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from afbr.config import AfbrConfig
from afbr.daemon.ipsec_activity import log_ike_event
from afbr.daemon.ipsec_credentials import ike_config, load_psks, local_private_key, public_key_bytes
from afbr.daemon.ipsec_keeper import (
    Action,
    IkeSaView,
    IkeStatus,
    Initiate,
    PeerKeeper,
    PeerView,
    RepairChild,
    redundant,
)
from afbr.dataplane.kernel_plan import xfrm_if_id
from afbr.dataplane.xfrm import REQID_MIN, SaState, delete_sa, flush_afbr_sas, list_sas
from afbr.dataplane.xfrm_events import KernelStateChanged, SaExpired, XfrmEvent
from afbr.dataplane.xfrm_policy import (
    flush_afbr_policies,
    install_route_based_peer,
    list_policies,
    remove_route_based_peer,
)
from afbr.dataplane.xfrm_socket import XfrmKernelError, XfrmSocket
from afbr.encap.model import IpsecNeed
from afbr.ipsec import (
    AuthenticationFailed,
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaRekeyed,
    IkeConfig,
    IkeDispatcher,
    IkeEvent,
    IkeSa,
    IkeSaDeleted,
    IkeState,
)
from afbr.ipsec.udp_adapter import IKE_PORT, IkeUdpAdapter
from afbr.ipsec.xfrm_adapter import InstalledChild, PeerBinding, XfrmChildInstaller

log = logging.getLogger("afbr.ipsec")

TICK = 1.0  # seconds between the keeper's looks at every peer
KERNEL_CHECK_INTERVAL = 30.0  # the kernel is re-read at least this often, events or not
KERNEL_EVENT_DELAY = 0.1  # after an XFRM deletion: a flush comes as a burst, read once after it
AUTH_CHANGE_GRACE = 5.0  # seconds the peer has to start over itself after a key rotation
POLICIES_PER_PEER = 6  # route-based: in, out, fwd for IPv4 and IPv6 (xfrm_policy)


@dataclass(frozen=True)
class _Index:
    children: dict[str, list[tuple[int, InstalledChild]]]
    ike_sas: dict[str, list[IkeSa]]
    kernel_peers: set[str]  # destinations of afbr's SAs in the kernel


@dataclass
class Peer:
    need: IpsecNeed
    binding: PeerBinding


class IpsecAgent:
    def __init__(self, config: AfbrConfig, netns: str | None = None) -> None:
        self.config = config
        self.sock = XfrmSocket(netns)
        self.peers: dict[str, Peer] = {}
        self.authenticators: dict[str, bytes] = {}
        self.installer = XfrmChildInstaller(self.sock, self._binding, schedule=self._later)
        self.keeper = PeerKeeper()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._leftover: dict[int, list[SaState]] = {}  # reqid -> SAs of our previous run
        self.dispatcher = IkeDispatcher(self._config_for, os.urandom)
        self.adapter = IkeUdpAdapter(
            self.dispatcher,
            [str(config.core.address)],
            [self.installer.apply, self._on_event],
            netns=netns,
            on_xfrm_event=self._on_xfrm_event,
            watch_deletions=True,
        )
        self.counters: dict[str, int] = {
            "ike_auth_failures": 0,
            "sa_up": 0,
            "sa_rekeyed": 0,
            "peer_errors": 0,  # a peer whose policies could not be installed (retried)
            "kernel_repairs": 0,  # SAs or policies found missing in the kernel
            "kernel_check_errors": 0,
            "duplicates_removed": 0,
        }
        self._psks = load_psks(config)
        self._private_key = local_private_key(config)
        self._kernel: set[tuple[str, int]] = set()  # (destination, SPI) of afbr's SAs, as read
        self._kernel_stale = True  # something changed: read the kernel on the next tick
        self._tick_handle: asyncio.TimerHandle | None = None
        self._kernel_read_at: float | None = None  # when the kernel was last read
        self._failed: dict[str, IpsecNeed] = {}  # peers whose set-up failed: retried per tick
        self._auth_changed: dict[str, float] = {}  # peer -> when it advertised a new key

    def start(self) -> None:
        """Open the IKE sockets (inside the running loop); note the SAs a previous run left."""
        self._loop = asyncio.get_running_loop()
        for state in list_sas(self.sock):
            if state.dst is not None:
                self._leftover.setdefault(state.reqid, []).append(state)
        self.adapter.start()
        self._arm(TICK)

    def _later(self, delay: float, action: Callable[[], None]) -> object:
        if self._loop is None:
            action()
            return None
        return self._loop.call_later(delay, action)

    def close(self) -> None:
        """Stop IKE; the SAs stay in the kernel until they expire (forwarding stays)."""
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        self._loop = None
        self.adapter.close()

    # -- desired state ---------------------------------------------------------------------

    def sync(self, needs: tuple[IpsecNeed, ...], authenticators: dict[str, bytes]) -> None:
        """The peers the softwires need now; each is set up on its own (one peer's kernel
        error does not stop the others; it is retried on every tick)."""
        changed = {
            remote
            for remote, auth in authenticators.items()
            if remote in self.authenticators and self.authenticators[remote] != auth
        }
        self.authenticators = authenticators
        wanted = {str(need.remote): need for need in needs}
        for remote in [r for r in self.peers if r not in wanted]:
            self._forget(remote)
        self._failed = {r: n for r, n in self._failed.items() if r in wanted}
        for remote, need in wanted.items():
            if remote not in self.peers:
                self._add(remote, need)
        self._drop_leftovers()
        now = self.adapter.clock()
        for remote in changed & set(self.peers):  # RFC 5566 §4: the peer's key changed
            self._auth_changed[remote] = now
        self._kernel_stale = True
        self._arm(0.0)

    def _drop_leftovers(self) -> None:
        """SAs and policies of our previous run towards AFBRs no longer wanted: the first sync
        (the RIB has converged) adopted the rest, these go."""
        for states in self._leftover.values():
            outbound_first = sorted(states, key=lambda state: state.dst == self.config.core.address)
            try:
                for state in outbound_first:
                    delete_sa(self.sock, state.ref)
                remove_route_based_peer(self.sock, states[0].if_id)
            except XfrmKernelError as exc:
                log.error("removing SAs left by a previous run failed: %s", exc)
                continue
            log.info(
                "%d SAs of a peer no longer wanted, left by a previous run, removed", len(states)
            )
        self._leftover.clear()

    def _add(self, remote: str, need: IpsecNeed) -> None:
        if_id = xfrm_if_id(need.tunnel)
        binding = PeerBinding(if_id=if_id, reqid=REQID_MIN + (if_id & 0xFFFF))
        try:  # policies first: with no SA yet, the peer's traffic is dropped (never in clear)
            install_route_based_peer(self.sock, need.local, need.remote, if_id, binding.reqid)
        except (XfrmKernelError, OSError) as exc:
            self.counters["peer_errors"] += 1
            self._failed[remote] = need
            log.error(
                "IPsec peer %s: installing its policies failed (%s); retrying",
                remote,
                exc,
                extra={"event": "ipsec-peer-failed"},
            )
            return
        self._failed.pop(remote, None)
        self.peers[remote] = Peer(need, binding)
        orphans = [state.ref for state in self._leftover.pop(binding.reqid, [])]
        self.installer.adopt_orphans(remote, orphans)
        log.info(
            "IPsec peer %s added (if_id %#x, %d SAs from before a restart)",
            remote,
            if_id,
            len(orphans),
            extra={"event": "ipsec-peer"},
        )

    def _forget(self, remote: str) -> None:
        peer = self.peers.pop(remote)
        self.keeper.forget(remote)
        for sa in self._ike_sas(remote):
            if sa.state == IkeState.ESTABLISHED:
                self.adapter.drive(lambda sa, now: sa.delete(now), sa)
            else:
                self._close(sa, "peer no longer wanted")
        try:
            remove_route_based_peer(self.sock, peer.binding.if_id)
        except XfrmKernelError as exc:
            log.error("removing the policies of %s failed: %s", remote, exc)
        log.info("IPsec peer %s removed", remote, extra={"event": "ipsec-peer-gone"})

    def _binding(self, remote: str) -> PeerBinding | None:
        peer = self.peers.get(remote)
        return peer.binding if peer is not None else None

    # -- keeping every peer keyed ----------------------------------------------------------

    def _arm(self, delay: float) -> None:
        if self._loop is None:
            return
        if self._tick_handle is not None:
            if self._tick_handle.when() <= self._loop.time() + delay:
                return
            self._tick_handle.cancel()
        self._tick_handle = self._loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        """Check the kernel when it may have changed, then let the keeper decide per peer."""
        self._tick_handle = None
        now = self.adapter.clock()
        try:
            for remote, need in list(self._failed.items()):
                self._add(remote, need)
            if self._kernel_due(now):
                self._check_kernel(now)
            self._recheck_changed_authenticators(now)
            index = self._index()
            for remote in list(self.peers):
                view = self._view(remote, index)
                if view.keyed and view.initiating:
                    self._drop_attempts(remote, "the peer is keyed by another IKE SA")
                for action in self.keeper.decide(view, now):
                    self._act(action)
                self._resolve_duplicates(remote, index.ike_sas.get(remote, []))
        except Exception:  # a bug must not stop the keeping of every other peer for good
            log.exception("IPsec agent tick failed")
        deadline = self.keeper.next_deadline()
        delay = TICK if deadline is None else min(TICK, max(deadline - now, 0.05))
        self._arm(delay)

    def _recheck_changed_authenticators(self, now: float) -> None:
        """A peer that advertised a new authenticator (its key rotated) starts a new IKE SA
        itself; if within AUTH_CHANGE_GRACE the IKE SA with it is still one authenticated
        before the change, we start over (RFC 5619 §4.4.2: the key in use is the one
        advertised)."""
        for remote, changed_at in list(self._auth_changed.items()):
            if now - changed_at < AUTH_CHANGE_GRACE:
                continue
            del self._auth_changed[remote]
            if any(
                sa.state == IkeState.ESTABLISHED
                and sa.established_at is not None
                and sa.established_at < changed_at
                for sa in self._ike_sas(remote)
            ):
                self._start_over(remote, "the peer advertised a new authenticator")

    def _kernel_due(self, now: float) -> bool:
        """Something changed (or a read failed), or the last read is KERNEL_CHECK_INTERVAL old."""
        read_at = self._kernel_read_at
        return self._kernel_stale or read_at is None or now >= read_at + KERNEL_CHECK_INTERVAL

    def _check_kernel(self, now: float) -> None:
        """Read afbr's SAs and policies; restore missing policies (they are ours to keep)."""
        try:
            self._kernel = {(str(s.dst), s.spi) for s in list_sas(self.sock)}
            policies: dict[int, int] = {}
            for policy in list_policies(self.sock):
                policies[policy.if_id] = policies.get(policy.if_id, 0) + 1
        except (XfrmKernelError, OSError) as exc:
            self.counters["kernel_check_errors"] += 1
            log.error("reading the kernel's SAs and policies failed: %s", exc)
            return
        self._kernel_stale = False
        self._kernel_read_at = now
        for remote, peer in self.peers.items():
            if policies.get(peer.binding.if_id, 0) >= POLICIES_PER_PEER:
                continue
            self.counters["kernel_repairs"] += 1
            log.warning(
                "IPsec policies of peer %s missing from the kernel; restoring them",
                remote,
                extra={"event": "kernel-repair"},
            )
            try:
                need = peer.need
                install_route_based_peer(
                    self.sock, need.local, need.remote, peer.binding.if_id, peer.binding.reqid
                )
            except (XfrmKernelError, OSError) as exc:
                log.error("restoring the policies of %s failed: %s", remote, exc)
                self._kernel_stale = True

    def _index(self) -> _Index:
        """Per peer, its CHILD SAs and live IKE SAs; the peers the kernel has SAs to."""
        children: dict[str, list[tuple[int, InstalledChild]]] = {}
        for spi, child in self.installer.children.items():
            children.setdefault(str(child.outbound.dst), []).append((spi, child))
        ike_sas: dict[str, list[IkeSa]] = {}
        for sa in self.dispatcher.all_sas():
            if sa.state != IkeState.CLOSED:
                ike_sas.setdefault(sa.remote_addr[0], []).append(sa)
        return _Index(children, ike_sas, {dst for dst, _spi in self._kernel})

    def _view(self, remote: str, index: _Index) -> PeerView:
        peer = self.peers[remote]
        sas = index.ike_sas.get(remote, [])
        if any(sa.state == IkeState.ESTABLISHED for sa in sas):
            ike = IkeStatus.ESTABLISHED
        elif sas:
            ike = IkeStatus.CONNECTING
        else:
            ike = IkeStatus.NONE
        children = index.children.get(remote, [])
        inbound_ok = {spi for spi, child in children if self._in_kernel(spi, child)}
        outbound_ok = remote in self.installer.switching or remote in index.kernel_peers
        broken = tuple(spi for spi, _child in children if spi not in inbound_ok)
        if inbound_ok and not outbound_ok:
            broken = tuple(spi for spi, _child in children)
        return PeerView(
            remote=remote,
            lower=int(peer.need.local) < int(peer.need.remote),
            ike=ike,
            keyed=bool(inbound_ok) and outbound_ok,
            broken=broken,
            initiating=any(
                sa.is_initiator and sa.state in (IkeState.INIT_SENT, IkeState.AUTH_SENT)
                for sa in sas
            ),
        )

    def _in_kernel(self, spi: int, child: InstalledChild) -> bool:
        return (str(child.inbound.dst), spi) in self._kernel

    def _act(self, action: Action) -> None:
        if isinstance(action, Initiate):
            self._initiate(action.remote, action.reason)
        elif isinstance(action, RepairChild):
            self._repair(action.remote, action.inbound_spi)
        else:
            self._start_over(action.remote, action.reason)

    def _initiate(self, remote: str, reason: str) -> None:
        peer = self.peers.get(remote)
        ike_config = self._config_for((remote, IKE_PORT))
        if peer is None or ike_config is None:
            return
        self._drop_attempts(remote, "superseded by a new attempt")
        log.info("starting IKE with %s (%s)", remote, reason, extra={"event": "ike-initiate"})
        local = (str(peer.need.local), IKE_PORT)
        self.adapter.connect(ike_config, local, (remote, IKE_PORT))

    def _drop_attempts(self, remote: str, reason: str) -> None:
        """Forget our IKE_SA_INIT/IKE_AUTH attempts with `remote`: a late answer to one would
        bring up a second IKE SA whose INITIAL_CONTACT makes the peer drop the one in use."""
        for sa in self._ike_sas(remote):
            if sa.is_initiator and sa.state in (IkeState.INIT_SENT, IkeState.AUTH_SENT):
                self._close(sa, reason)

    def _repair(self, remote: str, inbound_spi: int) -> None:
        self.counters["kernel_repairs"] += 1
        if inbound_spi:
            child = self.installer.children.get(inbound_spi)
            log.warning(
                "CHILD SA %08x with %s missing from the kernel; rekeying it",
                inbound_spi,
                remote,
                extra={"event": "kernel-repair"},
            )
            if child is not None and self.adapter.rekey_child_of(child.ike_sa, inbound_spi):
                return
        established = [sa for sa in self._ike_sas(remote) if sa.state == IkeState.ESTABLISHED]
        if established:
            log.warning(
                "no CHILD SA with %s in the kernel; negotiating one",
                remote,
                extra={"event": "kernel-repair"},
            )
            self.adapter.drive(lambda sa, now: sa.create_child(now), established[-1])

    def _start_over(self, remote: str, reason: str) -> None:
        """Forget the IKE SAs with `remote` and initiate a new one.  Their CHILD SAs stay in
        the kernel as orphans (forwarding) until the new pair is up, then go (make-before-
        break, as after a restart); INITIAL_CONTACT tells the peer to drop its side."""
        log.warning(
            "IKE with %s started over: %s",
            remote,
            reason,
            extra={"event": "ike-start-over", "peer": remote, "reason": reason},
        )
        for sa in self._ike_sas(remote):
            self.installer.orphan_children(remote, sa.id)
            self._close(sa, reason)
        self._initiate(remote, reason)

    def _close(self, sa: IkeSa, reason: str) -> None:
        self.adapter.drive(lambda sa, now: sa.close(reason, now), sa)

    def _resolve_duplicates(self, remote: str, live: list[IkeSa]) -> None:
        """Two IKE SAs from a simultaneous start: the higher address drops its own one."""
        peer = self.peers[remote]
        sas = {sa.local_spi: sa for sa in live}
        views = [
            IkeSaView(sa.local_spi, sa.is_initiator, sa.established_at, sa.last_received)
            for sa in sas.values()
            if sa.state == IkeState.ESTABLISHED
            and sa.established_at is not None
            and sa.superseded_at is None
        ]
        drop, probe = redundant(views, lower=int(peer.need.local) < int(peer.need.remote))
        for key in drop:
            self.counters["duplicates_removed"] += 1
            log.info("duplicate IKE SA with %s deleted (simultaneous start)", remote)
            self.adapter.drive(lambda sa, now: sa.delete(now), sas[key])
        for key in probe:
            sa = sas[key]
            if sa.outstanding is None and not sa.queue:
                self.adapter.drive(lambda sa, now: sa.check_liveness(now), sa)

    def _ike_sas(self, remote: str) -> list[IkeSa]:
        """The live IKE SAs with `remote`, ours and the peer's, half-open ones included."""
        return [
            sa
            for sa in self.dispatcher.all_sas()
            if sa.remote_addr[0] == remote and sa.state != IkeState.CLOSED
        ]

    def _on_xfrm_event(self, event: XfrmEvent) -> None:
        if isinstance(event, KernelStateChanged) or (isinstance(event, SaExpired) and event.hard):
            if not self._kernel_stale:
                self._kernel_stale = True
                self._arm(KERNEL_EVENT_DELAY)  # a flush comes as a burst: read once after it
            return
        due = self.installer.rekey_due(event)
        if due is not None:  # a soft volume limit (RFC 7296 §2.8)
            self.adapter.rekey_child_of(*due)

    # -- IKE configuration ----------------------------------------------------------------

    def _config_for(self, address: tuple[str, int]) -> IkeConfig | None:
        remote = address[0]
        if remote not in self.peers:
            return None  # RFC 5619 §4.4.2: only AFBRs we have a softwire to
        return ike_config(
            self.config, remote, self._psks, self._private_key, self.authenticators.get(remote)
        )

    # -- reload ----------------------------------------------------------------------------

    def remove_everything(self) -> None:
        """IPsec turned off: delete the IKE SAs (telling the peers) and remove afbr's SAs and
        policies from the kernel."""
        self.sync((), {})
        try:
            flush_afbr_sas(self.sock)
            flush_afbr_policies(self.sock)
        except XfrmKernelError as exc:
            log.error("removing afbr's SAs and policies failed: %s", exc)

    def reconfigure(self, config: AfbrConfig) -> None:
        """A reload: new IKE SAs use the new credentials and proposals; the IKE SAs whose
        credentials changed start over, make-before-break (their SAs keep forwarding until
        the new ones are up), so the key in use always matches the one advertised."""
        psks = load_psks(config)
        key = local_private_key(config)
        every_peer = config.ipsec != self.config.ipsec or public_key_bytes(key) != public_key_bytes(
            self._private_key
        )
        changed = [
            remote
            for remote in self.peers
            if every_peer or self._psk_of(remote, psks) != self._psk_of(remote, self._psks)
        ]
        self.config, self._psks, self._private_key = config, psks, key
        for remote in changed:
            self._start_over(remote, "IPsec credentials or settings changed by a reload")
        self._arm(0.0)

    def _psk_of(self, remote: str, psks: dict[str, bytes]) -> bytes | None:
        return psks.get("mesh" if self.config.ipsec.group_psk else remote)

    # -- events --------------------------------------------------------------------------

    def _on_event(self, event: IkeEvent) -> None:
        log_ike_event(event)  # RFC 5619 §3.4.1
        if isinstance(event, ChildSaEstablished):
            self.counters["sa_up"] += 1
        elif isinstance(event, ChildSaRekeyed):
            self.counters["sa_rekeyed"] += 1
        elif isinstance(event, AuthenticationFailed):
            self.counters["ike_auth_failures"] += 1
        elif isinstance(event, IkeSaDeleted):
            self._arm(0.0)  # the keeper starts a new one if the peer is still wanted
        if isinstance(event, ChildSaEstablished | ChildSaRekeyed | ChildSaDeleted):
            self._kernel_stale = True  # the installer changed the kernel (or failed to)
            self._arm(KERNEL_EVENT_DELAY)

    # -- views -----------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """For `afbr status` and the audit, from the kernel as last read (`kernel_read_age`
        seconds ago): peers, those without a CHILD SA in the kernel, counters."""
        index = self._index()
        views = [self._view(remote, index) for remote in self.peers]
        in_kernel = [
            spi for spi, child in self.installer.children.items() if self._in_kernel(spi, child)
        ]
        established = sum(1 for sa in self.dispatcher.all_sas() if sa.state == IkeState.ESTABLISHED)
        return {
            "enabled": True,
            "peers": len(self.peers),
            "peers_without_sa": sorted(v.remote for v in views if not v.keyed),
            "peers_failed": sorted(self._failed),
            "ike_sas": established,
            "child_sas": len(in_kernel),
            "child_sas_believed": len(self.installer.children),
            **self.counters,
            **self.keeper.counters,
            "xfrm_failures": self.installer.failures,
            "bad_input": {
                kind.value: count
                for kind, count in sorted(
                    self.dispatcher.counters.totals.items(), key=lambda item: item[0].value
                )
            },
            "kernel_read_age": None
            if self._kernel_read_at is None
            else round(self.adapter.clock() - self._kernel_read_at, 1),
        }

    def sas(self) -> list[dict[str, Any]]:
        """The CHILD SAs, per peer (the outbound SA's destination is the peer), each saying
        whether the kernel holds it."""
        states = {sa.id: sa for sa in self.dispatcher.all_sas()}
        out = []
        for spi, child in sorted(self.installer.children.items()):
            ike = states.get(child.ike_sa)
            out.append(
                {
                    "peer": str(child.outbound.dst),
                    "spi_in": f"{spi:08x}",
                    "spi_out": f"{child.outbound.spi:08x}",
                    "in_kernel": self._in_kernel(spi, child)
                    and (str(child.outbound.dst), child.outbound.spi) in self._kernel,
                    "ike_sa": str(child.ike_sa),
                    "ike_state": ike.state.value if ike is not None else "closed",
                }
            )
        return out
