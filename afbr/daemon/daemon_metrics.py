"""The daemon's Prometheus metrics, from its status and the side-car's mesh summary (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from afbr.bgp.softwire_rib import PathProblem
from afbr.ipsec.ike_counters import BadInput
from afbr.metrics import Metric

# Values stay ints where they are counts: afbr.metrics renders them digit for digit.


def _gauge(name: str, help_text: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    return Metric(name, "gauge", help_text, ((labels or {}, value),))


def _counter(name: str, help_text: str, value: float) -> Metric:
    return Metric(name, "counter", help_text, (({}, value),))


def status_metrics(
    status: Mapping[str, Any],
    *,
    neighbors: Sequence[Mapping[str, Any]] | None = None,
    sas: Sequence[Mapping[str, Any]] | None = None,
    started: float | None = None,
) -> list[Metric]:
    """Neighbors, routes, tunnels, drops by unit and reason, ExaBGP restarts and IPsec; per
    neighbor from `neighbors` (views.neighbors rows), per IPsec peer from `sas` (the agent's
    CHILD SAs), the process start time from `started` (Unix time)."""
    up = sum(1 for n in status["neighbors"] if n["state"] == "up")
    out = []
    if "version" in status:
        version = {"version": status["version"]}
        out.append(_gauge("afbr_build_info", "afbr's version (always 1).", 1, version))
    if started is not None:
        help_text = "Start time of the process since the Unix epoch in seconds."
        out.append(_gauge("process_start_time_seconds", help_text, started))
    out += [
        _gauge("afbr_bgp_neighbors_up", "BGP neighbors Established.", up),
        _gauge("afbr_routes", "Remote client prefixes in the RIB.", status["routes"]),
        _gauge("afbr_tunnels", "Softwires in the kernel.", status["tunnels"]),
        *_drop_metrics(status["drops"]),
        _counter("afbr_exabgp_restarts_total", "ExaBGP restarts.", status["exabgp"]["restarts"]),
        *(_neighbor_metrics(neighbors) if neighbors is not None else []),
    ]
    daemon = status.get("daemon", {})
    out += [
        _counter(name, help_text, daemon[key])
        for key, name, help_text in RECONCILE_COUNTERS
        if key in daemon
    ]
    ipsec = status.get("ipsec", {})
    if ipsec.get("enabled"):
        out += [
            _gauge("afbr_ipsec_peers", "Remote AFBRs with an ESP softwire.", ipsec["peers"]),
            _gauge(
                "afbr_ipsec_peers_without_sa",
                "IPsec peers with no CHILD SA (their traffic is dropped, never sent in clear).",
                len(ipsec["peers_without_sa"]),
            ),
            _child_sas(ipsec["child_sas"], sas),
            _counter("afbr_ipsec_sas_up_total", "CHILD SAs established.", ipsec["sa_up"]),
            _counter("afbr_ipsec_rekeys_total", "CHILD SAs rekeyed.", ipsec["sa_rekeyed"]),
            _counter(
                "afbr_ike_auth_failures_total",
                "IKE authentications that failed.",
                ipsec["ike_auth_failures"],
            ),
            *_ipsec_health_metrics(ipsec),
        ]
    return out


# status["drops"] mixes units: the RIB's counters are paths set aside (keyed by PathProblem),
# the softwire side's are packets the nftables filter dropped (named counters), plus its error
# count and whether the filter is in the kernel.  Each goes to a metric of its own unit.
DATAPLANE_ERRORS = "dataplane_errors"
DECAP_FILTER_INSTALLED = "decap_filter_installed"
PATH_REASONS = frozenset(problem.value for problem in PathProblem)


def _drop_metrics(drops: Mapping[str, int]) -> list[Metric]:
    # Every path reason, 0 included: a series that appears only at its first count hides
    # the first increase from rate().
    paths = dict.fromkeys(sorted(PATH_REASONS), 0)
    packets: dict[str, int] = {}
    for key, value in drops.items():
        if key in PATH_REASONS:
            paths[key] = value
        elif key not in (DATAPLANE_ERRORS, DECAP_FILTER_INSTALLED):
            packets[key] = value
    metrics = [
        Metric(
            "afbr_dropped_paths_total",
            "counter",
            "BGP paths (per prefix) set aside by the softwire RIB, by reason.",
            tuple(({"reason": k}, v) for k, v in paths.items()),
        ),
        Metric(
            "afbr_dropped_packets_total",
            "counter",
            "Packets the decapsulation filter dropped, by nftables counter.",
            tuple(({"reason": k}, v) for k, v in sorted(packets.items())),
        ),
    ]
    if DECAP_FILTER_INSTALLED in drops:
        metrics.append(
            _gauge(
                "afbr_decap_filter_installed",
                "1 if afbr's nftables decapsulation filter is in the kernel, else 0.",
                drops[DECAP_FILTER_INSTALLED],
            )
        )
    if DATAPLANE_ERRORS in drops:
        metrics.append(
            _counter(
                "afbr_dataplane_errors_total",
                "Kernel reconcile steps that failed.",
                drops[DATAPLANE_ERRORS],
            )
        )
    return metrics


def _neighbor_metrics(neighbors: Sequence[Mapping[str, Any]]) -> list[Metric]:
    return [
        Metric(
            "afbr_bgp_neighbor_up",
            "gauge",
            "1 if the BGP session with the neighbor is Established, else 0.",
            tuple(({"neighbor": n["address"]}, int(n["state"] == "up")) for n in neighbors),
        ),
        Metric(
            "afbr_bgp_neighbor_prefixes",
            "gauge",
            "Client prefixes whose best path is from the neighbor (sums to afbr_routes).",
            tuple(({"neighbor": n["address"]}, n["accepted"]) for n in neighbors),
        ),
        Metric(
            "afbr_bgp_neighbor_prefixes_received",
            "gauge",
            "Client prefixes the neighbor has a usable path for in the RIB.",
            tuple(({"neighbor": n["address"]}, n["received"]) for n in neighbors),
        ),
    ]


def _child_sas(total: int, sas: Sequence[Mapping[str, Any]] | None) -> Metric:
    """CHILD SAs in the kernel: per peer when the agent's SA list is given, else the total."""
    if sas is None:
        return _gauge("afbr_ipsec_child_sas", "CHILD SAs installed.", total)
    per_peer = Counter(str(sa["peer"]) for sa in sas if sa.get("in_kernel"))
    return Metric(
        "afbr_ipsec_child_sas",
        "gauge",
        "CHILD SAs installed in the kernel, per peer.",
        tuple(({"peer": peer}, count) for peer, count in sorted(per_peer.items())),
    )


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
    (
        "resync_repairs",
        "afbr_reconcile_resync_repairs_total",
        "Periodic reconciles that put back something the kernel had lost.",
    ),
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
