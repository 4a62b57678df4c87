"""The asyncio UDP adapter of the IKEv2 core: sockets on ports 500 and 4500, timers, events.

Thin by design: datagrams go to `IkeDispatcher.receive_datagram` with the monotonic clock as
`now`, whatever the core wants to send goes out of the socket bound to its source address and
port, the core's next deadline is one `loop.call_at`, and its events go to the callbacks (the
XFRM installer first).  The port-4500 sockets carry UDP_ENCAP_ESPINUDP (RFC 3948): the kernel
takes ESP out of them and hands over only IKE (behind the non-ESP marker, which the core adds
and strips itself) and drops NAT keepalives.  Sockets are opened inside `netns` when given.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from afbr.dataplane.xfrm_events import XfrmEvent, XfrmEventListener
from afbr.dataplane.xfrm_socket import netns_scope
from afbr.ipsec.ike_config import Address, IkeConfig
from afbr.ipsec.ike_dispatcher import IkeDispatcher
from afbr.ipsec.ike_events import IkeEvent, IkeSaId
from afbr.ipsec.ike_sa import Datagram, IkeSa

log = logging.getLogger(__name__)

IKE_PORT = 500
NAT_T_PORT = 4500
UDP_ENCAP = 100  # linux/udp.h socket option
UDP_ENCAP_ESPINUDP = 2
MAX_DATAGRAM = 65535
EventHandler = Callable[[IkeEvent], None]


@dataclass
class _Endpoint:
    sock: socket.socket
    local: Address


@dataclass
class IkeUdpAdapter:
    """Owns the IKE sockets of some local addresses and drives one dispatcher with them."""

    dispatcher: IkeDispatcher
    local_addresses: Sequence[str]
    on_event: Sequence[EventHandler] = ()
    netns: str | None = None
    ports: tuple[int, int] = (IKE_PORT, NAT_T_PORT)
    clock: Callable[[], float] = time.monotonic
    on_xfrm_event: Callable[[XfrmEvent], None] | None = None
    watch_deletions: bool = False  # pass SA/policy deletions by anyone to on_xfrm_event too
    _endpoints: list[_Endpoint] = field(default_factory=list)
    _timer: asyncio.TimerHandle | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _listener: XfrmEventListener | None = None
    send_errors: int = 0

    def start(self) -> None:
        """Open the sockets and start reading (call from inside the running loop)."""
        self._loop = asyncio.get_running_loop()
        for address in self.local_addresses:
            for port in self.ports:
                self._open(address, port, encap=port != IKE_PORT)
        if self.on_xfrm_event is not None:
            self._listener = XfrmEventListener(self.netns, watch_deletions=self.watch_deletions)
            self._loop.add_reader(self._listener.fileno(), self._on_xfrm_readable)
        self._flush()

    def _open(self, address: str, port: int, *, encap: bool) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with netns_scope(self.netns):
            sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if encap:
            sock.setsockopt(socket.IPPROTO_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP)
        sock.bind((address, port))
        sock.setblocking(False)
        endpoint = _Endpoint(sock, (address, port))
        self._endpoints.append(endpoint)
        assert self._loop is not None
        self._loop.add_reader(sock.fileno(), self._on_readable, endpoint)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for endpoint in self._endpoints:
            if self._loop is not None:
                self._loop.remove_reader(endpoint.sock.fileno())
            endpoint.sock.close()
        self._endpoints.clear()
        if self._listener is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None

    # -- commands ----------------------------------------------------------------------------
    def connect(self, config: IkeConfig, local: Address, remote: Address) -> IkeSa:
        """Start an IKE SA as initiator (IKE_SA_INIT goes out at once)."""
        sa = self.dispatcher.connect(config, local, remote, self.clock())
        self._flush()
        return sa

    def drive(self, action: Callable[[IkeSa, float], None], sa: IkeSa) -> None:
        """Run a command on an SA (rekey_child, delete, ...) and send what it produced."""
        now = self.clock()
        action(sa, now)
        self.dispatcher.after_command(sa, now)
        self._flush()

    def rekey_child_of(self, ike_sa: IkeSaId, inbound_spi: int) -> bool:
        """Start a CHILD SA rekey (e.g. on the kernel's soft EXPIRE); False if the IKE SA is
        gone."""
        sa = next((s for s in self.dispatcher.sas.values() if s.id == ike_sa), None)
        if sa is None:
            return False
        self.drive(lambda s, now: s.rekey_child(inbound_spi, now), sa)
        return True

    # -- I/O ---------------------------------------------------------------------------------
    def _on_readable(self, endpoint: _Endpoint) -> None:
        for _ in range(64):  # bounded: other sockets and timers get their turn
            try:
                data, addr = endpoint.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # ICMP errors surface here; the core retransmits
                log.debug("IKE socket %s: %s", endpoint.local, exc)
                break
            log.debug("IKE %d bytes %s <- %s", len(data), endpoint.local, addr[:2])
            self.dispatcher.receive_datagram(data, (addr[0], addr[1]), self.clock(), endpoint.local)
        self._flush()

    def _send(self, datagram: Datagram) -> None:
        endpoint = self._endpoint_for(datagram.source, datagram.destination)
        if endpoint is None:
            self.send_errors += 1
            log.warning("no socket for %s -> %s", datagram.source, datagram.destination)
            return
        log.debug("IKE %d bytes %s -> %s", len(datagram.data), endpoint.local, datagram.destination)
        try:
            endpoint.sock.sendto(datagram.data, datagram.destination)
        except OSError as exc:
            self.send_errors += 1
            log.debug("send to %s: %s", datagram.destination, exc)

    def _endpoint_for(self, source: Address, destination: Address) -> _Endpoint | None:
        v6 = ":" in destination[0]
        fallback = None
        for endpoint in self._endpoints:
            if endpoint.local[1] != source[1] or (":" in endpoint.local[0]) != v6:
                continue
            if endpoint.local[0] == source[0]:
                return endpoint
            fallback = fallback or endpoint  # the core did not know its local address yet
        return fallback

    def _flush(self) -> None:
        """Hand the core's events on, then send what it produced, then re-arm the timer.

        Events first (make-before-break): an answer lets the peer go on — switch to a new SA,
        remove an old inbound one — so what the event changes in the kernel (our new inbound
        SA, our switch to the new outbound SA) must be in place before the answer leaves.
        Sent the other way round, a rekey lost a packet whenever the peer was quicker than us.
        """
        while (event := self.dispatcher.next_event()) is not None:
            for handler in self.on_event:
                handler(event)
        now = self.clock()
        for datagram in self.dispatcher.datagrams_to_send(now):
            self._send(datagram)
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self._loop is None:
            return
        deadline = self.dispatcher.get_timer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            delay = max(deadline - self.clock(), 0.0)
            self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.dispatcher.handle_timer(self.clock())
        self._flush()

    def _on_xfrm_readable(self) -> None:
        if self._listener is None or self.on_xfrm_event is None:
            return
        for event in self._listener.read_pending():
            self.on_xfrm_event(event)
        self._flush()
