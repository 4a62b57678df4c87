"""The daemon's metrics from its status and the side-car's mesh summary, as Prometheus text."""

from __future__ import annotations

from typing import Any

import pytest

from afbr.daemon.daemon_metrics import mesh_metrics, status_metrics
from afbr.ipsec.ike_counters import BadInput
from afbr.metrics import Metric, format_value, render

STATUS: dict[str, Any] = {
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
        # IpsecAgent.summary(): the dispatcher's BadInputLog.totals by kind, the XFRM
        # installer's failures, the peer keeper's repairs and initiations.
        "bad_input": {"garbage": 20000, "bad-icv": 1234567, "unknown-spi": 3},
        "xfrm_failures": 2,
        "repairs": 4,
        "initiations": 1234567,
    },
}


def lines(text: str) -> set[str]:
    return {line for line in text.splitlines() if not line.startswith("#")}


def test_status_metrics_cover_bgp_drops_and_ipsec() -> None:
    text = render(status_metrics(STATUS))
    assert lines(text) >= {
        "afbr_bgp_neighbors_up 1",
        "afbr_routes 3",
        'afbr_dropped_packets_total{reason="spoof_afbr0123"} 4',
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


def test_ike_bad_input_and_self_healing_counters_are_exact_integers() -> None:
    text = render(status_metrics(STATUS))
    assert lines(text) >= {
        'afbr_ike_bad_input_total{kind="garbage"} 20000',
        'afbr_ike_bad_input_total{kind="bad-icv"} 1234567',
        'afbr_ike_bad_input_total{kind="unknown-spi"} 3',
        'afbr_ike_bad_input_total{kind="truncated"} 0',  # every kind, from its first count
        "afbr_xfrm_failures_total 2",
        "afbr_ipsec_repairs_total 4",
        "afbr_ike_initiations_total 1234567",
    }
    kinds = {line.split('"')[1] for line in lines(text) if line.startswith("afbr_ike_bad_input")}
    assert kinds == {kind.value for kind in BadInput}
    assert "e+" not in text
    assert "# TYPE afbr_ike_bad_input_total counter" in text


def test_an_agent_without_the_new_counters_still_renders() -> None:
    ipsec = {
        k: v
        for k, v in STATUS["ipsec"].items()
        if k not in ("bad_input", "xfrm_failures", "repairs", "initiations")
    }
    text = render(status_metrics({**STATUS, "ipsec": ipsec}))
    assert "afbr_ike_bad_input_total" not in text and "afbr_xfrm" not in text
    assert "afbr_ike_auth_failures_total 5" in text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1234567, "1234567"),
        (1234567.0, "1234567"),
        (20000, "20000"),
        (2**63 + 1, "9223372036854775809"),  # a 64-bit counter, digit for digit
        (0, "0"),
        (True, "1"),
        (0.25, "0.25"),
        (1.5e-7, "1.5e-07"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
    ],
)
def test_sample_values_render_exactly(value: float, text: str) -> None:
    assert format_value(value) == text
    assert render([Metric("afbr_x", "gauge", "X.", (({}, value),))]).endswith(f"afbr_x {text}\n")
