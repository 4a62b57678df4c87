"""Turns the IKEv2 core's CHILD SA events into kernel XFRM states (route-based layout).

Each remote AFBR has a `PeerBinding`: the if_id of its xfrm interface and the reqid of its
SAs; `prepare_peer` creates the interface and the six wildcard policies once, before any SA,
so with no SA its traffic is dropped, never sent in clear.

Make-before-break (afbr.dataplane.xfrm's docstring): ChildSaEstablished and ChildSaRekeyed
install the inbound SA first, then the outbound one; ChildSaDeleted removes the outbound SA
first and the inbound one last.  The core emits ChildSaRekeyed before the ChildSaDeleted of the
pair it replaces, so there is always an SA for the peer.

A responder must not send on a new pair before the initiator has its inbound SA, which happens
only when our answer reaches it.  For a rekey the initiator's delete of the old pair says so
(RFC 7296 §2.8).  For a new IKE SA that replaces an older pair still carrying traffic (the peer
restarted: INITIAL_CONTACT, RFC 7296 §2.4; or we did and the kernel kept our old SAs, the
"orphans") nothing says so: the responder keeps sending on the older pair for `switch_delay`
seconds, and the older pair's SAs stay `linger` seconds more for the packets in flight.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from afbr.dataplane.xfrm import (
    EspCipher,
    EspIntegrity,
    SaRef,
    SaSpec,
    UdpEncap,
    add_sa,
    delete_sa,
)
from afbr.dataplane.xfrm_events import SaExpired, XfrmEvent
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
    IkeSaRekeyed,
)

log = logging.getLogger(__name__)

INBOUND_REPLAY_WINDOW = 64  # packets; wider than the legacy 32 so a rekey's reordering passes
SWITCH_DELAY = 2.0  # seconds: an IKE_AUTH answer and one retransmission of it reach the peer
LINGER = 2.0  # seconds an older pair stays after the switch, for the packets in flight

Schedule = Callable[[float, Callable[[], None]], object]  # (delay, action), e.g. loop.call_later


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

    def __init__(
        self,
        sock: XfrmSocket,
        binding_for: Callable[[str], PeerBinding | None],
        *,
        soft_packets: int | None = None,
        soft_bytes: int | None = None,
        schedule: Schedule | None = None,
        switch_delay: float = SWITCH_DELAY,
        linger: float = LINGER,
    ) -> None:
        self.sock = sock
        self.binding_for = binding_for  # by the remote peer's IP address (text)
        self.children: dict[int, InstalledChild] = {}  # by inbound SPI
        self.failures = 0
        # volume-based rekeys (RFC 7296 §2.8): the kernel's soft limits raise EXPIRE events;
        # time-based rekeys are the IKE core's own timers, so no soft time limit is set
        self.soft_packets = soft_packets
        self.soft_bytes = soft_bytes
        self._rekey_requested: set[int] = set()
        self._deferred_outbound: dict[int, SaSpec] = {}  # by the old pair's inbound SPI
        # without a scheduler (tests driving the installer by hand) every switch is immediate
        self.schedule = schedule
        self.switch_delay = switch_delay
        self.linger = linger
        self.orphans: dict[str, list[SaRef]] = {}  # peer -> our SAs from before a restart
        self._switching: set[str] = set()  # peers whose new outbound SA waits (see docstring)

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
                self._establish(event)
            elif isinstance(event, ChildSaRekeyed):
                # the old pair goes on its delete; as responder, the new outbound SA too
                self._install(
                    event.ike_sa,
                    event.child,
                    defer_outbound_until=(event.old_inbound_spi if event.responder else None),
                )
            elif isinstance(event, ChildSaDeleted):
                deferred = self._deferred_outbound.pop(event.inbound_spi, None)
                if deferred is not None:
                    add_sa(self.sock, deferred)  # the peer now has its new inbound SA
                self._retire(event.inbound_spi)
            elif isinstance(event, IkeSaRekeyed) and not event.redundant:
                self._move(event.ike_sa, event.new_ike_sa)  # CHILD SAs follow, kernel unchanged
        except (XfrmKernelError, ValueError) as exc:
            self.failures += 1
            log.error("XFRM update for %s failed: %s", type(event).__name__, exc)

    def rekey_due(self, event: XfrmEvent) -> tuple[IkeSaId, int] | None:
        """For a soft EXPIRE of one of our SAs (either direction): the IKE SA and the inbound
        SPI of the CHILD SA to rekey, once per CHILD SA; None for anything else."""
        if not isinstance(event, SaExpired) or event.hard:
            return None
        for inbound_spi, child in self.children.items():
            if event.spi in (child.inbound.spi, child.outbound.spi):
                if inbound_spi in self._rekey_requested:
                    return None
                self._rekey_requested.add(inbound_spi)
                return child.ike_sa, inbound_spi
        return None

    def adopt_orphans(self, remote: str, refs: list[SaRef]) -> None:
        """SAs to `remote` left in the kernel by our previous run: they carry traffic until a
        new pair replaces them, then go."""
        if refs:
            self.orphans.setdefault(remote, []).extend(refs)

    @property
    def switching(self) -> frozenset[str]:
        """Peers whose new outbound SA is held back for `switch_delay` (the old one sends)."""
        return frozenset(self._switching)

    def orphan_children(self, remote: str, ike_sa: IkeSaId) -> None:
        """The CHILD SAs of `ike_sa` become orphans: their SAs stay in the kernel, forwarding,
        until a new pair to `remote` is up (the IKE SA is being started over)."""
        for spi, child in list(self.children.items()):
            if child.ike_sa == ike_sa:
                del self.children[spi]
                self._rekey_requested.discard(spi)
                self.adopt_orphans(remote, [child.outbound, child.inbound])

    def _establish(self, event: ChildSaEstablished) -> None:
        remote = event.child.inbound.source
        older = remote in self.orphans or any(
            child.ike_sa != event.ike_sa and str(child.outbound.dst) == remote
            for child in self.children.values()
        )
        if self.schedule is None or not (event.responder and older):
            self._install(event.ike_sa, event.child)
        else:
            outbound = self._install(event.ike_sa, event.child, hold_outbound=True)
            self._switching.add(remote)
            self.schedule(self.switch_delay, lambda: self._switch(remote, outbound))
        if self.schedule is not None and remote in self.orphans:
            self.schedule(self.switch_delay + self.linger, lambda: self._drop_orphans(remote))

    def _switch(self, remote: str, outbound: SaSpec) -> None:
        """The held outbound SA of a responder goes in (the peer has its inbound by now)."""
        self._switching.discard(remote)
        wanted = SaRef(outbound.dst, outbound.spi)
        if any(child.outbound == wanted for child in self.children.values()):  # not deleted
            self._later_kernel_call(
                f"outbound SA to {remote}", partial(add_sa, self.sock, outbound)
            )

    def _retire(self, inbound_spi: int) -> None:
        """Remove a pair now, or after the switch to its successor when one is pending."""
        child = self.children.get(inbound_spi)
        if self.schedule is None or child is None or str(child.outbound.dst) not in self._switching:
            self._remove(inbound_spi)
            return
        removal = partial(self._remove, inbound_spi)
        what = f"removal of SA {inbound_spi:08x}"
        self.schedule(
            self.switch_delay + self.linger, partial(self._later_kernel_call, what, removal)
        )

    def _drop_orphans(self, remote: str) -> None:
        refs = self.orphans.pop(remote, [])
        outbound_first = sorted(refs, key=lambda ref: str(ref.dst) != remote)
        for ref in outbound_first:
            self._later_kernel_call(
                f"removal of an old SA to {remote}", partial(delete_sa, self.sock, ref)
            )
        if refs:
            log.info("%d SAs to %s from before the restart removed", len(refs), remote)

    def _later_kernel_call(self, what: str, call: Callable[[], object]) -> None:
        """A kernel change made from a timer, where `apply`'s own error handling is not."""
        try:
            call()
        except XfrmKernelError as exc:
            self.failures += 1
            log.error("XFRM %s failed: %s", what, exc)

    def _move(self, old: IkeSaId, new: IkeSaId) -> None:
        for spi, child in list(self.children.items()):
            if child.ike_sa == old:
                self.children[spi] = InstalledChild(new, child.inbound, child.outbound)

    def _install(
        self,
        ike_sa: IkeSaId,
        child: ChildSaParams,
        defer_outbound_until: int | None = None,
        *,
        hold_outbound: bool = False,
    ) -> SaSpec:
        """Install the pair (inbound first); the outbound SA waits for the old pair's delete
        (`defer_outbound_until`) or is left to the caller (`hold_outbound`).  Returns it."""
        binding = self.binding_for(child.inbound.source)
        if binding is None:
            raise ValueError(f"CHILD SA with unknown peer {child.inbound.source}")
        inbound = self._spec(child, child.inbound, binding, inbound=True)
        outbound = self._spec(child, child.outbound, binding, inbound=False)
        add_sa(self.sock, inbound)  # make-before-break: inbound first
        if defer_outbound_until is not None:
            self._deferred_outbound[defer_outbound_until] = outbound
        elif not hold_outbound:
            add_sa(self.sock, outbound)
        self.children[inbound.spi] = InstalledChild(
            ike_sa, SaRef(inbound.dst, inbound.spi), SaRef(outbound.dst, outbound.spi)
        )
        return outbound

    def _remove(self, inbound_spi: int) -> None:
        child = self.children.pop(inbound_spi, None)
        self._rekey_requested.discard(inbound_spi)
        if child is None:
            return
        delete_sa(self.sock, child.outbound)  # outbound first: the peer may still send on it
        delete_sa(self.sock, child.inbound)

    def _spec(
        self, child: ChildSaParams, keys: EspSaKeys, binding: PeerBinding, *, inbound: bool
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
            lifetime=self._lifetime(child),
        )

    def _lifetime(self, child: ChildSaParams) -> Lifetime:
        limits = Lifetime(hard_add_seconds=max(int(child.hard_lifetime), 0))
        if self.soft_packets is not None:
            limits = replace(limits, soft_packets=self.soft_packets)
        if self.soft_bytes is not None:
            limits = replace(limits, soft_bytes=self.soft_bytes)
        return limits
