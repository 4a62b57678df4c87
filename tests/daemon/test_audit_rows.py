"""`afbr audit` rows computed from config and running status (afbr.daemon.audit, pure)."""

from __future__ import annotations

from typing import Any

from test_config import MINIMAL  # the minimal valid config (tests/test_config.py)

from afbr.config import parse_config
from afbr.daemon.audit import audit_running

IPSEC_LINE = "ipsec: {keys_file: /etc/afbr/ike-keys.yaml}"
UP = {"neighbors": [{"address": "2001:db8::1", "state": "up"}]}


def ipsec_row(enabled: bool, ipsec_status: dict[str, Any] | None) -> dict[str, str]:
    assert IPSEC_LINE in MINIMAL
    ipsec = IPSEC_LINE.replace("}", f", enabled: {'true' if enabled else 'false'}}}")
    config = parse_config(MINIMAL.replace(IPSEC_LINE, ipsec))
    status = dict(UP, ipsec=ipsec_status) if ipsec_status is not None else dict(UP)
    rows = {row["requirement"]: row for row in audit_running(config, status)}
    return rows["softwires are protected by IPsec"]


def test_ipsec_passes_only_when_every_peer_has_a_child_sa() -> None:
    row = ipsec_row(True, {"enabled": True, "peers": 2, "peers_without_sa": []})
    assert row["status"] == "pass" and "all 2 IPsec peers" in row["why"]


def test_ipsec_fails_naming_the_peers_without_a_child_sa() -> None:
    row = ipsec_row(True, {"enabled": True, "peers": 2, "peers_without_sa": ["2001:db8::b"]})
    assert row["status"] == "fail"
    assert "2001:db8::b" in row["why"] and "not sent in clear" in row["why"]


def test_ipsec_fails_when_configured_but_no_agent_runs() -> None:
    row = ipsec_row(True, {"enabled": False})
    assert row["status"] == "fail" and "no IKE agent" in row["why"]


def test_ipsec_fails_when_switched_off() -> None:
    row = ipsec_row(False, None)
    assert row["status"] == "fail" and "in clear" in row["why"]


def filter_row(drops: dict[str, int]) -> dict[str, str]:
    config = parse_config(MINIMAL)
    rows = {row["requirement"]: row for row in audit_running(config, dict(UP, drops=drops))}
    return rows["decapsulated traffic is filtered against what each AFBR advertised"]


def test_decap_filter_row_reads_what_the_dataplane_found_in_the_kernel() -> None:
    assert filter_row({"decap_filter_installed": 1})["status"] == "pass"
    missing = filter_row({"decap_filter_installed": 0, "dataplane_errors": 3})
    assert missing["status"] == "fail" and "missing or incomplete" in missing["why"]
    no_dataplane = filter_row({})
    assert no_dataplane["status"] == "fail" and "has not reported" in no_dataplane["why"]
