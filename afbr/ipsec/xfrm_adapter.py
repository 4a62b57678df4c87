"""Turns the IKEv2 core's CHILD SA events into kernel XFRM states (route-based layout).

Each remote AFBR has a `PeerBinding`: the if_id of its xfrm interface and the reqid of its
SAs; `prepare_peer` creates the interface and the six wildcard policies once, before any SA,
so with no SA its traffic is dropped, never sent in clear.

Make-before-break (afbr.dataplane.xfrm's docstring): ChildSaEstablished and ChildSaRekeyed
install the inbound SA first, then the outbound one; ChildSaDeleted removes the outbound SA
first and the inbound one last.  The core emits ChildSaRekeyed before the ChildSaDeleted of the
pair it replaces, so there is always an SA for the peer.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass

from afbr.dataplane.xfrm import (
    EspCipher,
    EspIntegrity,
    SaRef,
    SaSpec,
    UdpEncap,
    add_sa,
    delete_sa,
)
from afbr.dataplane.xfrm_iface import create_xfrm_interface
from afbr.dataplane.xfrm_policy import install_route_based_peer
from afbr.dataplane.xfrm_socket import XfrmKernelError, XfrmSocket
from afbr.dataplane.xfrm_wire import Lifetime, XfrmMode
from afbr.ipsec.ike_config import IpsecMode
from afbr.ipsec.ike_events import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaParams,
    ChildSaRekeyed,
    EspSaKeys,
    IkeEvent,
    IkeSaId,
)

log = logging.getLogger(__name__)

INBOUND_REPLAY_WINDOW = 64  # packets; wider than the legacy 32 so a rekey's reordering passes


@dataclass(frozen=True)
class PeerBinding:
    """The kernel objects of one remote AFBR."""

    if_id: int
    reqid: int


@dataclass(frozen=True)
class InstalledChild:
    ike_sa: IkeSaId
    inbound: SaRef
    outbound: SaRef


class XfrmChildInstaller:
    """Applies IKE events to the kernel; remembers which SAs it installed for which IKE SA."""

    def __init__(self, sock: XfrmSocket, binding_for: Callable[[str], PeerBinding | None]) -> None:
        self.sock = sock
        self.binding_for = binding_for  # by the remote peer's IP address (text)
        self.children: dict[int, InstalledChild] = {}  # by inbound SPI
        self.failures = 0

    def prepare_peer(self, local_ip: str, remote_ip: str, *, underlying: str | None = None) -> None:
        """Create the peer's xfrm interface and wildcard policies (idempotent)."""
        binding = self.binding_for(remote_ip)
        if binding is None:
            raise ValueError(f"no binding for peer {remote_ip}")
        create_xfrm_interface(binding.if_id, underlying=underlying, netns=self.sock.netns)
        install_route_based_peer(
            self.sock,
            ipaddress.ip_address(local_ip),
            ipaddress.ip_address(remote_ip),
            binding.if_id,
            binding.reqid,
        )

    def apply(self, event: IkeEvent) -> None:
        """Install or remove SAs for CHILD SA events; other events are not the kernel's."""
        try:
            if isinstance(event, ChildSaEstablished):
                self._install(event.ike_sa, event.child)
            elif isinstance(event, ChildSaRekeyed):
                self._install(event.ike_sa, event.child)  # the old pair goes on its delete
            elif isinstance(event, ChildSaDeleted):
                self._remove(event.inbound_spi)
        except (XfrmKernelError, ValueError) as exc:
            self.failures += 1
            log.error("XFRM update for %s failed: %s", type(event).__name__, exc)

    def owner_of(self, inbound_spi: int) -> IkeSaId | None:
        child = self.children.get(inbound_spi)
        return child.ike_sa if child is not None else None

    def remove_all(self) -> None:
        for spi in list(self.children):
            self._remove(spi)

    def _install(self, ike_sa: IkeSaId, child: ChildSaParams) -> None:
        binding = self.binding_for(child.inbound.source)
        if binding is None:
            raise ValueError(f"CHILD SA with unknown peer {child.inbound.source}")
        inbound = self._spec(child, child.inbound, binding, inbound=True)
        outbound = self._spec(child, child.outbound, binding, inbound=False)
        add_sa(self.sock, inbound)  # make-before-break: inbound first
        add_sa(self.sock, outbound)
        self.children[inbound.spi] = InstalledChild(
            ike_sa, SaRef(inbound.dst, inbound.spi), SaRef(outbound.dst, outbound.spi)
        )

    def _remove(self, inbound_spi: int) -> None:
        child = self.children.pop(inbound_spi, None)
        if child is None:
            return
        delete_sa(self.sock, child.outbound)  # outbound first: the peer may still send on it
        delete_sa(self.sock, child.inbound)

    @staticmethod
    def _spec(
        child: ChildSaParams, keys: EspSaKeys, binding: PeerBinding, *, inbound: bool
    ) -> SaSpec:
        suite = child.algorithms
        encap = None
        if child.udp_encapsulation is not None:
            local_port, remote_port = child.udp_encapsulation
            ports = (remote_port, local_port) if inbound else (local_port, remote_port)
            encap = UdpEncap(*ports)
        return SaSpec(
            src=ipaddress.ip_address(keys.source),
            dst=ipaddress.ip_address(keys.destination),
            spi=keys.spi,
            reqid=binding.reqid,
            cipher=EspCipher(int(suite.encryption)),
            encryption_key=keys.encryption_key,
            integrity=EspIntegrity(int(suite.integrity)),
            integrity_key=keys.integrity_key,
            mode=XfrmMode.TUNNEL if child.mode == IpsecMode.TUNNEL else XfrmMode.TRANSPORT,
            if_id=binding.if_id,
            encap=encap,
            replay_window=INBOUND_REPLAY_WINDOW if inbound else 0,
            lifetime=Lifetime(hard_add_seconds=max(int(child.hard_lifetime), 0)),
        )
