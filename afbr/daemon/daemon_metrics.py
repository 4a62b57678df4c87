"""The daemon's Prometheus metrics, from its status and the side-car's mesh summary (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from afbr.ipsec.ike_counters import BadInput
from afbr.metrics import Metric

# Values stay ints where they are counts: afbr.metrics renders them digit for digit.


def _gauge(name: str, help_text: str, value: float) -> Metric:
    return Metric(name, "gauge", help_text, (({}, value),))


def _counter(name: str, help_text: str, value: float) -> Metric:
    return Metric(name, "counter", help_text, (({}, value),))


def status_metrics(status: Mapping[str, Any]) -> list[Metric]:
    """Neighbors, routes, tunnels, drops by reason, ExaBGP restarts and IPsec."""
    up = sum(1 for n in status["neighbors"] if n["state"] == "up")
    drops = tuple(({"reason": k}, v) for k, v in status["drops"].items())
    metrics = [
        _gauge("afbr_bgp_neighbors_up", "BGP neighbors Established.", up),
        _gauge("afbr_routes", "Remote client prefixes in the RIB.", status["routes"]),
        _gauge("afbr_tunnels", "Softwires in the kernel.", status["tunnels"]),
        Metric("afbr_drops_total", "counter", "Dropped paths and packets by reason.", drops),
        _counter("afbr_exabgp_restarts_total", "ExaBGP restarts.", status["exabgp"]["restarts"]),
    ]
    daemon = status.get("daemon", {})
    metrics += [
        _counter(name, help_text, daemon[key])
        for key, name, help_text in RECONCILE_COUNTERS
        if key in daemon
    ]
    ipsec = status.get("ipsec", {})
    if ipsec.get("enabled"):
        metrics += [
            _gauge("afbr_ipsec_peers", "Remote AFBRs with an ESP softwire.", ipsec["peers"]),
            _gauge(
                "afbr_ipsec_peers_without_sa",
                "IPsec peers with no CHILD SA (their traffic is dropped, never sent in clear).",
                len(ipsec["peers_without_sa"]),
            ),
            _gauge("afbr_ipsec_child_sas", "CHILD SAs installed.", ipsec["child_sas"]),
            _counter("afbr_ipsec_sas_up_total", "CHILD SAs established.", ipsec["sa_up"]),
            _counter("afbr_ipsec_rekeys_total", "CHILD SAs rekeyed.", ipsec["sa_rekeyed"]),
            _counter(
                "afbr_ike_auth_failures_total",
                "IKE authentications that failed.",
                ipsec["ike_auth_failures"],
            ),
            *_ipsec_health_metrics(ipsec),
        ]
    return metrics


# The agent's self-healing counters: (status key, metric, help), each exported when present.
IPSEC_HEALTH_COUNTERS = (
    ("xfrm_failures", "afbr_xfrm_failures_total", "XFRM (kernel SA and policy) calls that failed."),
    ("repairs", "afbr_ipsec_repairs_total", "CHILD SAs the kernel lacked, rekeyed to repair."),
    ("kernel_repairs", "afbr_ipsec_kernel_repairs_total", "SAs/policies restored in the kernel."),
    ("start_overs", "afbr_ike_start_overs_total", "IKE SAs started over after a failed repair."),
    ("initiations", "afbr_ike_initiations_total", "IKE SAs this AFBR initiated."),
    ("peer_errors", "afbr_ipsec_peer_errors_total", "IPsec peers whose set-up failed (retried)."),
)
# The reconcile's own counters (status "daemon"): (key, metric, help).
RECONCILE_COUNTERS = (
    ("syncs", "afbr_reconciles_total", "Reconciles of the kernel that succeeded."),
    ("sync_errors", "afbr_reconcile_failures_total", "Reconciles that failed (retried)."),
    ("sync_retries", "afbr_reconcile_retries_total", "Reconciles run to retry a failed one."),
    ("resyncs", "afbr_reconcile_resyncs_total", "Periodic reconciles with no BGP change."),
)


def _ipsec_health_metrics(ipsec: Mapping[str, Any]) -> list[Metric]:
    """Bad IKE input by kind (afbr.ipsec.ike_counters.BadInput), XFRM failures, repairs."""
    metrics = []
    bad_input = ipsec.get("bad_input")
    if bad_input is not None:
        # Every kind, 0 included: a series that appears only at its first count hides the
        # first increase from rate().
        counts = {kind.value: 0 for kind in BadInput} | dict(bad_input)
        samples = tuple(({"kind": kind}, count) for kind, count in sorted(counts.items()))
        metrics.append(
            Metric("afbr_ike_bad_input_total", "counter", "Bad IKE input by kind.", samples)
        )
    metrics += [
        _counter(name, help_text, ipsec[key])
        for key, name, help_text in IPSEC_HEALTH_COUNTERS
        if key in ipsec
    ]
    return metrics


def mesh_metrics(summary: Mapping[str, Any]) -> list[Metric]:
    """The side-car's view: AFBRs, prefixes claimed twice, audit findings by kind."""
    findings = tuple(({"finding": k}, v) for k, v in summary["findings"].items())
    return [
        _gauge("afbr_mesh_afbrs", "AFBRs in the mesh view.", summary["afbrs"]),
        _gauge(
            "afbr_mesh_conflicts", "Client prefixes claimed by two AFBRs.", summary["conflicts"]
        ),
        Metric("afbr_mesh_findings_total", "counter", "Audit findings by kind.", findings),
    ]
