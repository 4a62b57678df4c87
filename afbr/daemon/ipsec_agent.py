"""The daemon's IKEv2 agent: keys the ESP softwires (route-based XFRM) of the remote AFBRs.

For each `IpsecNeed` of the desired state (an ESP softwire to a remote AFBR, RFC 5566 tunnel
type 4) the agent installs that peer's wildcard policies on the softwire's if_id at once — so
before any SA exists the kernel drops the peer's traffic, it never leaves in clear (RFC 5566
§3) — and runs IKEv2 with the peer: the AFBR with the lower core address initiates, the other
answers.  The CHILD SAs go into the kernel through `XfrmChildInstaller`, make-before-break on
rekeys.  After a restart of afbr the kernel still holds the previous run's SAs (forwarding went
on): the agent adopts them as orphans and negotiates a new IKE SA at once, whichever address is
lower (the higher one after `RESTART_INITIATE_DELAY`, unless the peer got there first); the peer
sees INITIAL_CONTACT and the old pairs give way to the new ones without a packet lost.

Authentication is pairwise PSK (keys file: peer core address -> key; `group_psk` uses the key
named `mesh` for all, RFC 5619 §3.5.2) or public keys, checked against the IPsec Tunnel
Authenticator the peer advertised in BGP (RFC 5566 §4; RFC 5619 §4.4.2).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from afbr.bgp.keyfile import load_key_file
from afbr.config import AfbrConfig
from afbr.dataplane.kernel_plan import xfrm_if_id
from afbr.dataplane.xfrm import REQID_MIN, SaState, delete_sa, list_sas
from afbr.dataplane.xfrm_policy import install_route_based_peer, remove_route_based_peer
from afbr.dataplane.xfrm_socket import XfrmSocket
from afbr.encap.model import IpsecNeed
from afbr.ipsec import (
    ESP_AES_CBC_SHA256,
    ESP_AES_GCM_128,
    ESP_AES_GCM_256,
    ESP_NULL_SHA256,
    IKE_AES_CBC_SHA256,
    IKE_AES_GCM_128,
    IKE_AES_GCM_256,
    AlgorithmSuite,
    AuthenticationFailed,
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaRekeyed,
    Identity,
    IkeConfig,
    IkeDispatcher,
    IkeEvent,
    IkeSa,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeState,
    KeyCredential,
    PeerTrust,
    PskCredential,
    Timers,
)
from afbr.ipsec.udp_adapter import IKE_PORT, IkeUdpAdapter
from afbr.ipsec.xfrm_adapter import PeerBinding, XfrmChildInstaller

log = logging.getLogger("afbr.ipsec")

RESTART_INITIATE_DELAY = 3.0  # seconds; the lower address initiates at once, if it restarted too

ESP_SUITES: dict[str, AlgorithmSuite] = {
    "aes-gcm-16-128": ESP_AES_GCM_128,
    "aes-gcm-16-256": ESP_AES_GCM_256,
    "aes-cbc-256-sha256": ESP_AES_CBC_SHA256,
    "null-sha256": ESP_NULL_SHA256,  # RFC 5619 §4.4.2: integrity only, always offered
}
IKE_SUITES: dict[str, AlgorithmSuite] = {
    "aes-gcm-16-128-prf-sha256-ecp256": IKE_AES_GCM_128,
    "aes-gcm-16-256-prf-sha512-x25519": IKE_AES_GCM_256,
    "aes-cbc-256-sha256-modp2048": IKE_AES_CBC_SHA256,
}


def local_private_key(config: AfbrConfig) -> Any:
    """This AFBR's private key (auth: pubkey), or None."""
    if config.ipsec.auth != "pubkey" or config.ipsec.private_key is None:
        return None
    return serialization.load_pem_private_key(config.ipsec.private_key.read_bytes(), None)


@dataclass
class Peer:
    need: IpsecNeed
    binding: PeerBinding
    ike_sa: IkeSa | None = None  # ours when we initiated
    established: bool = False


class IpsecAgent:
    def __init__(self, config: AfbrConfig, netns: str | None = None) -> None:
        self.config = config
        self.sock = XfrmSocket(netns)
        self.peers: dict[str, Peer] = {}
        self.authenticators: dict[str, bytes] = {}
        self.installer = XfrmChildInstaller(self.sock, self._binding, schedule=self._later)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._leftover: dict[int, list[SaState]] = {}  # reqid -> SAs of our previous run
        self.dispatcher = IkeDispatcher(self._config_for, os.urandom)
        self.adapter = IkeUdpAdapter(
            self.dispatcher,
            [str(config.core.address)],
            [self.installer.apply, self._on_event],
            netns=netns,
        )
        self.counters: dict[str, int] = {"ike_auth_failures": 0, "sa_up": 0, "sa_rekeyed": 0}
        self._psks = self._load_psks(config)
        self._private_key = local_private_key(config)

    def start(self) -> None:
        """Open the IKE sockets (inside the running loop); note the SAs a previous run left."""
        self._loop = asyncio.get_running_loop()
        for state in list_sas(self.sock):
            if state.dst is not None:
                self._leftover.setdefault(state.reqid, []).append(state)
        self.adapter.start()

    def _later(self, delay: float, action: Callable[[], None]) -> object:
        if self._loop is None:
            action()
            return None
        return self._loop.call_later(delay, action)

    def close(self) -> None:
        """Stop IKE; the SAs stay in the kernel until they expire (forwarding stays)."""
        self.adapter.close()

    # -- desired state ---------------------------------------------------------------------

    def sync(self, needs: tuple[IpsecNeed, ...], authenticators: dict[str, bytes]) -> None:
        self.authenticators = authenticators
        wanted = {str(need.remote): need for need in needs}
        for remote in [r for r in self.peers if r not in wanted]:
            self._forget(remote)
        for remote, need in wanted.items():
            if remote not in self.peers:
                self._add(remote, need)
        self._drop_leftovers()

    def _drop_leftovers(self) -> None:
        """SAs and policies of our previous run towards AFBRs no longer wanted: the first sync
        (the RIB has converged) adopted the rest, these go."""
        for states in self._leftover.values():
            outbound_first = sorted(states, key=lambda state: state.dst == self.config.core.address)
            for state in outbound_first:
                delete_sa(self.sock, state.ref)
            remove_route_based_peer(self.sock, states[0].if_id)
            log.info(
                "%d SAs of a peer no longer wanted, left by a previous run, removed", len(states)
            )
        self._leftover.clear()

    def _add(self, remote: str, need: IpsecNeed) -> None:
        if_id = xfrm_if_id(need.tunnel)
        binding = PeerBinding(if_id=if_id, reqid=REQID_MIN + (if_id & 0xFFFF))
        # Policies first: with no SA yet, the peer's traffic is dropped (never in clear).
        install_route_based_peer(self.sock, need.local, need.remote, if_id, binding.reqid)
        self.peers[remote] = Peer(need, binding)
        orphans = [state.ref for state in self._leftover.pop(binding.reqid, [])]
        self.installer.adopt_orphans(remote, orphans)
        if int(need.local) < int(need.remote):  # one initiator per pair: the lower address
            self._initiate(remote)
        elif orphans:  # we restarted; the peer may hold an IKE SA we no longer know
            self._later(RESTART_INITIATE_DELAY, lambda: self._initiate(remote, unless_up=True))
        log.info(
            "IPsec peer %s added (if_id %#x, %d SAs from before a restart)",
            remote,
            if_id,
            len(orphans),
            extra={"event": "ipsec-peer"},
        )

    def _initiate(self, remote: str, *, unless_up: bool = False) -> None:
        peer = self.peers.get(remote)
        if peer is None or (unless_up and self._has_ike_sa(remote)):
            return
        ike_config = self._config_for((remote, IKE_PORT))
        if ike_config is not None:
            local = (str(peer.need.local), IKE_PORT)
            peer.ike_sa = self.adapter.connect(ike_config, local, (remote, IKE_PORT))

    def _has_ike_sa(self, remote: str) -> bool:
        return any(
            sa.remote_addr[0] == remote and sa.state != IkeState.CLOSED
            for sa in self.dispatcher.sas.values()
        )

    def _forget(self, remote: str) -> None:
        peer = self.peers.pop(remote)
        if peer.ike_sa is not None:
            self.adapter.drive(lambda sa, now: sa.delete(now), peer.ike_sa)
        remove_route_based_peer(self.sock, peer.binding.if_id)
        log.info("IPsec peer %s removed", remote, extra={"event": "ipsec-peer-gone"})

    def _binding(self, remote: str) -> PeerBinding | None:
        peer = self.peers.get(remote)
        return peer.binding if peer is not None else None

    # -- IKE configuration ----------------------------------------------------------------

    def _config_for(self, address: tuple[str, int]) -> IkeConfig | None:
        remote = address[0]
        if remote not in self.peers:
            return None  # RFC 5619 §4.4.2: only AFBRs we have a softwire to
        ipsec = self.config.ipsec
        if self._private_key is not None:
            credential: Any = KeyCredential(self._private_key)
            trust = PeerTrust(authenticator=self.authenticators.get(remote))
        else:
            psk = self._psks.get("mesh" if ipsec.group_psk else remote)
            if psk is None:
                log.error("no IKE pre-shared key for %s in %s", remote, ipsec.keys_file)
                return None
            credential = PskCredential(psk, group=ipsec.group_psk)
            trust = PeerTrust(psk=credential)
        return IkeConfig(
            local_id=Identity.address(str(self.config.core.address)),
            remote_id=Identity.address(remote),
            credential=credential,
            peer_trust=trust,
            ike_proposals=tuple(IKE_SUITES[name] for name in ipsec.ike),
            esp_proposals=tuple(ESP_SUITES[name] for name in ipsec.esp),
            timers=Timers(
                dpd_delay=float(ipsec.dpd_seconds),
                child_rekey=float(ipsec.rekey_seconds),
                child_lifetime=ipsec.rekey_seconds * 1.1,
            ),
        )

    @staticmethod
    def _load_psks(config: AfbrConfig) -> dict[str, bytes]:
        if config.ipsec.auth != "psk" or config.ipsec.keys_file is None:
            return {}
        ring = load_key_file(Path(config.ipsec.keys_file))
        return {name: secret.reveal() for name, secret in ring.items()}

    # -- events --------------------------------------------------------------------------

    def _on_event(self, event: IkeEvent) -> None:
        if isinstance(event, IkeSaEstablished):
            log.info("IKE SA up with %s", event.remote_addr[0], extra={"event": "ike-up"})
        elif isinstance(event, ChildSaEstablished):
            self.counters["sa_up"] += 1
            log.info("CHILD SA up", extra={"event": "sa-up"})
        elif isinstance(event, ChildSaRekeyed):
            self.counters["sa_rekeyed"] += 1
            log.info("CHILD SA rekeyed", extra={"event": "sa-rekeyed"})
        elif isinstance(event, ChildSaDeleted):
            log.info("CHILD SA down", extra={"event": "sa-down"})
        elif isinstance(event, IkeSaDeleted):
            log.info("IKE SA down", extra={"event": "ike-down"})
        elif isinstance(event, AuthenticationFailed):
            self.counters["ike_auth_failures"] += 1
            log.warning(
                "IKE authentication with %s failed: %s",
                event.remote_addr[0],
                event.reason,
                extra={"event": "auth-failed"},
            )

    def summary(self) -> dict[str, Any]:
        """For `afbr status` and the audit: peers, how many have a CHILD SA, counters."""
        keyed = {str(child.outbound.dst) for child in self.installer.children.values()}
        return {
            "enabled": True,
            "peers": len(self.peers),
            "peers_without_sa": sorted(set(self.peers) - keyed),
            "child_sas": len(self.installer.children),
            **self.counters,
            "xfrm_failures": self.installer.failures,
        }

    def sas(self) -> list[dict[str, Any]]:
        """The CHILD SAs installed, per peer (the outbound SA's destination is the peer)."""
        return [
            {
                "peer": str(child.outbound.dst),
                "spi_in": f"{spi:08x}",
                "spi_out": f"{child.outbound.spi:08x}",
                "ike_sa": str(child.ike_sa),
            }
            for spi, child in sorted(self.installer.children.items())
        ]
