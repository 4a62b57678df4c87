"""The daemon's metrics from its status and the side-car's mesh summary, as Prometheus text."""

from __future__ import annotations

from afbr.daemon.daemon_metrics import mesh_metrics, status_metrics
from afbr.metrics import render

STATUS = {
    "neighbors": [{"state": "up"}, {"state": "down"}],
    "routes": 3,
    "tunnels": 2,
    "drops": {"spoof_afbr0123": 4},
    "exabgp": {"restarts": 1},
    "ipsec": {
        "enabled": True,
        "peers": 2,
        "peers_without_sa": ["2001:db8::b"],
        "child_sas": 1,
        "sa_up": 3,
        "sa_rekeyed": 2,
        "ike_auth_failures": 5,
    },
}


def lines(text: str) -> set[str]:
    return {line for line in text.splitlines() if not line.startswith("#")}


def test_status_metrics_cover_bgp_drops_and_ipsec() -> None:
    text = render(status_metrics(STATUS))
    assert lines(text) >= {
        "afbr_bgp_neighbors_up 1",
        "afbr_routes 3",
        'afbr_drops_total{reason="spoof_afbr0123"} 4',
        "afbr_ipsec_peers_without_sa 1",
        "afbr_ipsec_child_sas 1",
        "afbr_ipsec_rekeys_total 2",
        "afbr_ike_auth_failures_total 5",
    }


def test_no_ipsec_metrics_when_ipsec_is_off() -> None:
    text = render(status_metrics({**STATUS, "ipsec": {"enabled": False}}))
    assert "afbr_ipsec" not in text and "afbr_ike" not in text


def test_the_side_cars_findings_are_exported() -> None:
    summary = {"afbrs": 3, "conflicts": 1, "findings": {"missing-authenticator": 2}}
    assert lines(render(mesh_metrics(summary))) == {
        "afbr_mesh_afbrs 3",
        "afbr_mesh_conflicts 1",
        'afbr_mesh_findings_total{finding="missing-authenticator"} 2',
    }
