"""The daemon's read-only views (status, neighbors, routes, audit, mesh, metrics): what the control
socket and /metrics serve, read from the parts the runtime wires together (`ViewSource`).
Nothing here changes state; the softwire and IPsec parts answer from what they last read from
the kernel."""

from __future__ import annotations

import time
from ipaddress import ip_address
from typing import Any, Protocol

from afbr import __version__
from afbr.bgp.control_plane import BgpControlPlane, NeighborRecord
from afbr.bgp.mesh_view import MeshView
from afbr.bgp.tunnel_encap import TunnelType
from afbr.config import AfbrConfig
from afbr.daemon.audit import audit_running
from afbr.daemon.daemon_metrics import mesh_metrics, status_metrics
from afbr.daemon.ipsec_agent import IpsecAgent
from afbr.daemon.supervisor import Supervisor
from afbr.daemon.tcp_md5_watch import TcpMd5Watch
from afbr.metrics import Metric


class Softwires(Protocol):
    """What the daemon needs of the dataplane side (see afbr.daemon.softwire_sync)."""

    ipsec: IpsecAgent | None

    async def sync_in_worker(
        self, control_plane: BgpControlPlane, config: AfbrConfig
    ) -> dict[str, Any]: ...

    def close(self) -> None: ...

    def tunnels(self) -> list[dict[str, Any]]: ...

    def tunnel_of(self, prefix: str) -> str | None: ...

    def counters(self) -> dict[str, int]: ...

    async def refresh_in_worker(self) -> None: ...


class ViewSource(Protocol):
    """What the views read (afbr.daemon.runtime.AfbrDaemon has it)."""

    config: AfbrConfig
    started: float
    supervisor: Supervisor | None
    control_plane: BgpControlPlane
    softwires: Softwires | None
    ipsec: IpsecAgent | None
    counters: dict[str, int]
    md5_watch: TcpMd5Watch
    last_reload: dict[str, Any]
    mesh_view: MeshView | None


def status(self: ViewSource) -> dict[str, Any]:
    """`afbr status`: identity, ExaBGP, neighbors (with TCP-MD5 diagnosis), routes, softwires
    and IPsec as the kernel has them, drops, the daemon's counters, the last reload."""
    rib = self.control_plane.rib
    return {
        "version": __version__,
        "role": self.config.role,
        "router_id": str(self.config.router_id),
        "core": f"IPv{self.config.core.family} {self.config.core.address}",
        "uptime_seconds": round(time.time() - self.started),
        "exabgp": {
            "state": self.supervisor.state if self.supervisor else "stopped",
            "restarts": self.supervisor.restarts if self.supervisor else 0,
        },
        "neighbors": self.md5_watch.annotate(
            [
                {
                    "address": str(n.address),
                    "state": "up" if str(n.address) in rib.neighbors_up else "down",
                    "md5": n.md5_key is not None,
                }
                for n in self.config.bgp.neighbors
            ]
        ),
        "routes": len(rib),
        "tunnels": sum(1 for t in self.softwires.tunnels() if t["in_kernel"])
        if self.softwires
        else 0,
        "ipsec": self.ipsec.summary() if self.ipsec is not None else {"enabled": False},
        "drops": {
            **rib.counters,
            **(self.softwires.counters() if self.softwires else {}),
        },
        "daemon": self.counters,
        "reload": self.last_reload or {"result": "none"},
    }


def neighbors(self: ViewSource, address: object = None) -> list[dict[str, Any]]:
    """`afbr neighbors [ADDR]`: each configured BGP neighbor (or the one at `address`) as the
    control plane knows it from ExaBGP's events: state and seconds since it last changed,
    prefixes in the RIB from it and those whose best path is its, the reason ExaBGP gave when
    it last went down, the families of its last OPEN, MD5 and the TCP-MD5 diagnosis.

    `seconds` is None until ExaBGP reports a change; `families` is None unless ExaBGP sent
    the OPEN (afbr asks for it with Graceful Restart).  The negotiated hold time and the
    other capabilities are not reported by afbr's ExaBGP events, so they are not shown.
    """
    if address is not None and not isinstance(address, str):
        raise ValueError(f"address must be a string, not {type(address).__name__}")
    wanted = None if address is None else ip_address(address)  # ValueError: the caller's
    plane = self.control_plane
    counts = plane.rib.prefix_counts()
    now = plane.clock()
    rows = []
    for n in self.config.bgp.neighbors:
        if wanted is not None and n.address != wanted:
            continue
        key = str(n.address)
        record = plane.neighbor_records.get(key, NeighborRecord())
        received, accepted = counts.get(key, (0, 0))
        rows.append(
            {
                "address": key,
                "asn": n.asn,
                "state": "up" if key in plane.rib.neighbors_up else "down",
                "seconds": None if record.since is None else max(0, round(now - record.since)),
                "received": received,
                "accepted": accepted,
                "md5": n.md5_key is not None,
                "families": None if record.families is None else list(record.families),
                "last_down_reason": record.last_down_reason,
            }
        )
    return self.md5_watch.annotate(rows)


def routes(self: ViewSource) -> list[dict[str, Any]]:
    """`afbr routes`: each remote client prefix, its endpoint, encapsulations and softwire."""
    out = []
    for prefix, path in sorted(self.control_plane.rib.best_paths()):
        out.append(
            {
                "prefix": prefix,
                "endpoint": str(path.endpoint),
                "neighbor": path.neighbor,
                "encaps": [int(t.tunnel.tunnel_type) for t in path.tunnels],
                "tunnel": self.softwires.tunnel_of(prefix) if self.softwires else None,
            }
        )
    return out


def audit(self: ViewSource) -> list[dict[str, str]]:
    """`afbr audit`: the RFC 5565/5619 rows, and on a side-car the mesh's findings."""
    rows = audit_running(self.config, status(self))
    if self.mesh_view is not None:
        rows += [
            {
                "requirement": f"mesh: AFBR {f['afbr']}",
                "rfc": f["rfc"],
                "status": "fail",
                "why": f["why"],
            }
            for f in self.mesh_view.audit()
        ]
    return rows


def mesh(self: ViewSource) -> dict[str, Any]:
    """The side-car's view of every AFBR (an AFBR sees only its best paths: `routes`)."""
    if self.mesh_view is None:
        return {"role": self.config.role, "afbrs": {}, "conflicts": {}}
    return {
        "role": self.config.role,
        "afbrs": self.mesh_view.afbrs(),
        "conflicts": self.mesh_view.conflicts(),
        "findings": self.mesh_view.audit(),
    }


def metrics(self: ViewSource) -> list[Metric]:
    """Prometheus metrics: the status's, per neighbor, per IPsec peer, and on a side-car the
    mesh view's."""
    mesh = mesh_metrics(self.mesh_view.summary()) if self.mesh_view is not None else []
    sas = self.ipsec.sas() if self.ipsec is not None else None
    return (
        status_metrics(status(self), neighbors=neighbors(self), sas=sas, started=self.started)
        + mesh
    )


def _encap_name(tunnel_type: int) -> str:
    """IANA's name of a tunnel type (RFC 9012 registry), or its number."""
    try:
        return TunnelType(tunnel_type).name.lower().replace("_", "-")
    except ValueError:
        return str(tunnel_type)
