"""When the IPsec agent starts IKE with a peer, repairs a CHILD SA or starts over: pure
decisions, per wanted peer, from what the agent observed (`PeerView`) and `now`.

The rules (issue "self-healing"; RFC 7296 §2.4, §2.8, RFC 5566 §3):
- A peer is keyed when an IKE SA with it is established and the kernel holds a CHILD SA's
  inbound SA and an outbound SA to it.  Nothing to do then; the backoff starts over.
- IKE up but the kernel lacks the CHILD SA (flushed, deleted by hand, a failed install): rekey
  each broken CHILD SA on the IKE SA that has it (a new CHILD SA where it has none), once; if
  the peer is still not keyed `repair_timeout` seconds later, start over: forget the IKE SA
  and initiate a new one (INITIAL_CONTACT tells the peer to drop its stale state).
- No IKE SA: whoever has none initiates, whatever the address order, and keeps trying with
  bounded exponential backoff (`backoff_first` * `factor`^n, at most `ceiling` seconds between
  tries) for as long as the peer is wanted.  The higher address waits `higher_delay` before its
  first try and nobody tries while the peer's own attempt is under way, so two AFBRs that lose
  their SAs together rarely start two IKE SAs; when they do, `redundant` picks the one to drop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum


class IkeStatus(Enum):
    NONE = "none"  # no IKE SA with the peer
    CONNECTING = "connecting"  # an IKE_SA_INIT/IKE_AUTH under way (ours or the peer's)
    ESTABLISHED = "established"


@dataclass(frozen=True)
class PeerView:
    """What the agent sees of one wanted peer now."""

    remote: str
    lower: bool  # our core address is the lower one
    ike: IkeStatus
    keyed: bool  # a CHILD SA is up and the kernel holds its SAs
    broken: tuple[int, ...] = ()  # inbound SPIs of CHILD SAs the kernel lacks
    initiating: bool = False  # our own attempt is under way (not the peer's)


@dataclass(frozen=True)
class Initiate:
    """Start a new IKE SA with the peer (an attempt of ours still under way is dropped)."""

    remote: str
    reason: str


@dataclass(frozen=True)
class RepairChild:
    """Rekey the CHILD SA with this inbound SPI (0: negotiate a new CHILD SA)."""

    remote: str
    inbound_spi: int


@dataclass(frozen=True)
class StartOver:
    """Forget the peer's IKE SAs (their CHILD SAs go) and initiate a new one."""

    remote: str
    reason: str


Action = Initiate | RepairChild | StartOver


@dataclass(frozen=True)
class IkeSaView:
    """One established IKE SA with a peer, for `redundant`."""

    key: bytes  # our SPI
    we_initiated: bool
    established_at: float
    last_received: float


@dataclass
class _PeerState:
    attempts: int = 0
    next_try: float | None = None
    repair_since: float | None = None


class PeerKeeper:
    """Per-peer backoff and repair state; `decide` is called for every wanted peer on each
    tick of the agent (and after kernel or IKE changes)."""

    def __init__(
        self,
        *,
        higher_delay: float = 0.5,
        backoff_first: float = 1.0,
        factor: float = 1.5,
        ceiling: float = 30.0,
        repair_timeout: float = 5.0,
    ) -> None:
        self.higher_delay = higher_delay
        self.backoff_first = backoff_first
        self.factor = factor
        self.ceiling = ceiling
        self.repair_timeout = repair_timeout
        self._peers: dict[str, _PeerState] = {}
        self.counters = {"initiations": 0, "repairs": 0, "start_overs": 0}

    def delay(self, attempts: int) -> float:
        """Seconds before try number `attempts` + 1."""
        return float(min(self.ceiling, self.backoff_first * self.factor ** max(0, attempts - 1)))

    def forget(self, remote: str) -> None:
        self._peers.pop(remote, None)

    def attempts(self, remote: str) -> int:
        state = self._peers.get(remote)
        return state.attempts if state is not None else 0

    def decide(self, view: PeerView, now: float) -> list[Action]:
        state = self._peers.setdefault(view.remote, _PeerState())
        if view.ike == IkeStatus.ESTABLISHED:
            if view.keyed:
                self._peers[view.remote] = _PeerState()  # healthy: the backoff starts over
                return []
            return self._repair(view, state, now)
        state.repair_since = None
        if state.next_try is None:  # the need is new: the lower address goes first
            state.next_try = now + (0.0 if view.lower else self.higher_delay)
        if view.ike == IkeStatus.CONNECTING and not view.initiating:
            # the peer is connecting to us: give it its round trips before starting our own
            state.next_try = max(state.next_try, now + self.backoff_first)
            return []
        if now < state.next_try:
            return []
        state.attempts += 1
        state.next_try = now + self.delay(state.attempts)
        self.counters["initiations"] += 1
        reason = "no IKE SA" if state.attempts == 1 else f"no IKE SA, try {state.attempts}"
        return [Initiate(view.remote, reason)]

    def _repair(self, view: PeerView, state: _PeerState, now: float) -> list[Action]:
        if state.repair_since is None:
            state.repair_since = now
            self.counters["repairs"] += 1
            spis = view.broken or (0,)
            return [RepairChild(view.remote, spi) for spi in spis]
        if now - state.repair_since < self.repair_timeout:
            return []
        state.repair_since = None
        state.attempts += 1
        state.next_try = now + self.delay(state.attempts)
        self.counters["start_overs"] += 1
        reason = f"CHILD SA not back within {self.repair_timeout:.0f}s of its repair"
        return [StartOver(view.remote, reason)]

    def next_deadline(self) -> float | None:
        deadlines = [s.next_try for s in self._peers.values() if s.next_try is not None]
        deadlines += [
            s.repair_since + self.repair_timeout
            for s in self._peers.values()
            if s.repair_since is not None
        ]
        return min(deadlines, default=None)


def redundant(sas: Sequence[IkeSaView], *, lower: bool) -> tuple[list[bytes], list[bytes]]:
    """Two AFBRs that started IKE at once hold two IKE SAs (both work: each has its CHILD SA
    in both kernels).  The one the lower address initiated stays; the higher address deletes
    its own — but only once the peer has shown, by speaking on the one that stays after ours
    was up, that it still holds it.  Returns (ours to delete, theirs to probe with a liveness
    check), both empty on the lower address."""
    if lower:
        return [], []
    ours = [sa for sa in sas if sa.we_initiated]
    theirs = [sa for sa in sas if not sa.we_initiated]
    if not ours or not theirs:
        return [], []
    keep = max(theirs, key=lambda sa: sa.established_at)
    newest_ours = max(sa.established_at for sa in ours)
    if keep.last_received > newest_ours:
        return [sa.key for sa in ours], []
    return [], [keep.key]
