"""The demo's result as a readable summary (and as JSON): the mesh per AFBR, then the traffic."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from afbr.lab.demo_mesh import DemoMesh
from afbr.lab.demo_traffic import PingResult
from afbr.text_table import render_table


def _count(value: object) -> str:
    return str(len(value)) if isinstance(value, list) else "?"


def neighbor_state(neighbor: Mapping[str, object]) -> str:
    """A neighbor row's session state, whatever the field is called."""
    for key in ("state", "session_state", "session"):
        if key in neighbor:
            return str(neighbor[key]).lower()
    return "unknown"


def _neighbors(status: object) -> str:
    if not isinstance(status, Mapping):
        return "?"
    rows = [n for n in status.get("neighbors", []) if isinstance(n, Mapping)]
    return ", ".join(f"{n.get('address')} {neighbor_state(dict(n))}" for n in rows) or "-"


def audit_summary(audit: object) -> str:
    if not isinstance(audit, list):
        return "?"
    failed = [row for row in audit if isinstance(row, Mapping) and row.get("status") == "fail"]
    if not failed:
        return f"pass ({len(audit)} checks)"
    return f"FAIL {len(failed)}/{len(audit)}: " + "; ".join(
        str(r.get("requirement")) for r in failed
    )


def mesh_rows(mesh: DemoMesh, snapshot: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for afbr in mesh.afbrs:
        node = snapshot.get(afbr.name, {})
        rows.append(
            {
                "afbr": afbr.name,
                "site": afbr.site,
                "island": str(afbr.island),
                "core": str(afbr.core_address),
                "bgp neighbors": _neighbors(node.get("status")),
                "tunnels": _count(node.get("tunnels")),
                "routes": _count(node.get("routes")),
                "sas": _count(node.get("sas")),
                "audit": audit_summary(node.get("audit")),
            }
        )
    return rows


def traffic_rows(results: Sequence[PingResult]) -> list[dict[str, Any]]:
    return [
        {
            "from": f"{r.source} island",
            "to": f"{r.destination} island ({r.address})",
            "family": f"IPv{r.family}",
            "sent": r.sent,
            "received": r.received,
            "rtt avg": f"{r.rtt_avg_ms:.2f} ms" if r.rtt_avg_ms is not None else "-",
            "result": "ok" if r.ok else "LOSS",
        }
        for r in results
    ]


def render_summary(
    mesh: DemoMesh,
    snapshot: Mapping[str, Mapping[str, Any]],
    traffic: Sequence[PingResult],
    *,
    converged_after: float,
    elapsed: float,
) -> str:
    ok = sum(1 for r in traffic if r.ok)
    without_sa = [
        name
        for name, node in snapshot.items()
        if not (isinstance(node.get("sas"), list) and node["sas"])
    ]
    ipsec = (
        "IPsec: SAs installed on every AFBR"
        if not without_sa
        else "IPsec: configured on, but no SA is installed on "
        + ", ".join(without_sa)
        + " (`afbr sas`): those softwires carry traffic unprotected"
    )
    lines = [
        f"mesh: {len(mesh.afbrs)} AFBRs, route reflector {mesh.reflector.name} (GoBGP), "
        f"TCP-MD5 on every session, IPsec on; converged {converged_after:.1f}s after start",
        render_table(mesh_rows(mesh, snapshot)),
        ipsec,
        "",
        "traffic (ping between the client hosts of every pair of islands of one family):",
        render_table(traffic_rows(traffic)) if traffic else "(none)",
        "",
        f"result: {'OK' if ok == len(traffic) and traffic else 'FAILED'}: "
        f"{ok}/{len(traffic)} directions without loss; {elapsed:.1f}s from start to here",
    ]
    return "\n".join(lines)


def summary_json(
    mesh: DemoMesh,
    snapshot: Mapping[str, Mapping[str, Any]],
    traffic: Sequence[PingResult],
    *,
    converged_after: float | None,
    elapsed: float,
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "ok": error is None and bool(traffic) and all(r.ok for r in traffic),
        "error": error,
        "converged_after_s": None if converged_after is None else round(converged_after, 2),
        "elapsed_s": round(elapsed, 2),
        "afbrs": {
            a.name: {
                "site": a.site,
                "island": str(a.island),
                "core": str(a.core_address),
                **dict(snapshot.get(a.name, {})),
            }
            for a in mesh.afbrs
        },
        "traffic": [r.as_dict() for r in traffic],
    }
