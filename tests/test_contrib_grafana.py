"""contrib/grafana-afbr.json is a valid Grafana dashboard whose every query names metrics
afbr exports (afbr.daemon.daemon_metrics, with every part of the status present)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from afbr.daemon.daemon_metrics import (
    IPSEC_HEALTH_COUNTERS,
    RECONCILE_COUNTERS,
    mesh_metrics,
    status_metrics,
)

DASHBOARD = Path(__file__).resolve().parents[1] / "contrib" / "grafana-afbr.json"
# PromQL's own words in the dashboard's queries, and Grafana's variables: not metric names.
PROMQL = {"sum", "min", "max", "by", "rate", "increase", "time", "instance", "reason", "kind"}

STATUS: dict[str, Any] = {
    "version": "0.1.0",
    "neighbors": [{"address": "2001:db8::1", "state": "up"}],
    "routes": 1,
    "tunnels": 1,
    "drops": {"no-usable-tunnel": 1, "dataplane_errors": 0, "decap_filter_installed": 1},
    "exabgp": {"restarts": 0},
    "daemon": {key: 0 for key, _, _ in RECONCILE_COUNTERS},
    "ipsec": {
        "enabled": True,
        "peers": 1,
        "peers_without_sa": [],
        "child_sas": 1,
        "sa_up": 1,
        "sa_rekeyed": 0,
        "ike_auth_failures": 0,
        "bad_input": {},
        **{key: 0 for key, _, _ in IPSEC_HEALTH_COUNTERS},
    },
}
NEIGHBORS = [{"address": "2001:db8::1", "state": "up", "received": 1, "accepted": 1}]


def exported() -> set[str]:
    metrics = status_metrics(STATUS, neighbors=NEIGHBORS, sas=[], started=1.0)
    metrics += mesh_metrics({"afbrs": 1, "conflicts": 0, "findings": {}})
    return {metric.name for metric in metrics}


def queries(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("expr", "definition") and isinstance(v, str)]
        return found + [q for v in node.values() for q in queries(v)]
    if isinstance(node, list):
        return [q for v in node for q in queries(v)]
    return []


def metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"|\[[^]]*\]|\{[^}]*\}', "", expr)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_strings))
    return words - PROMQL - {"label_values"}


def test_the_dashboard_is_json_with_panels_and_queries() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(panel["targets"] for panel in dashboard["panels"])


def test_every_queried_metric_is_one_afbr_exports() -> None:
    names = {
        name for expr in queries(json.loads(DASHBOARD.read_text())) for name in metric_names(expr)
    }
    assert names <= exported(), names - exported()
    # What the dashboard is for: neighbors, routes, tunnels, peers without SA, repairs, drops.
    assert names >= {
        "afbr_bgp_neighbor_up",
        "afbr_routes",
        "afbr_tunnels",
        "afbr_ipsec_peers_without_sa",
        "afbr_ipsec_repairs_total",
        "afbr_dropped_packets_total",
        "afbr_dropped_paths_total",
    }


def test_the_name_extraction_sees_a_wrong_name() -> None:
    assert metric_names('sum by (instance) (rate(afbr_drops_total{instance=~"$i"}[5m]))') == {
        "afbr_drops_total"
    }
