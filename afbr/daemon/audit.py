"""`afbr audit`: the RFC 5565 / RFC 5619 requirements that apply, checked on the running
config and state.  Pure: config and the daemon's status in, one row per check out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from afbr.config import AfbrConfig

PASS, FAIL, NOT_APPLICABLE = "pass", "fail", "n/a"


def _row(requirement: str, rfc: str, ok: bool | None, why: str) -> dict[str, str]:
    status = NOT_APPLICABLE if ok is None else (PASS if ok else FAIL)
    return {"requirement": requirement, "rfc": rfc, "status": status, "why": why}


def audit_running(config: AfbrConfig, status: Mapping[str, Any]) -> list[dict[str, str]]:
    rows = [_bgp_md5(config)]
    rows.append(_neighbors_up(status))
    if config.role == "sidecar":
        return rows
    ipsec = config.ipsec
    rows.append(_softwires_protected(config, status))
    null_offered = "null-sha256" in ipsec.esp
    rows.append(
        _row(
            "ESP with NULL encryption (integrity only) is offered",
            "RFC 5619 §4.4.2",
            null_offered if ipsec.enabled else None,
            "null-sha256 is in ipsec.esp" if null_offered else "ipsec.esp lacks null-sha256",
        )
    )
    if ipsec.auth == "psk":
        pairwise = not ipsec.group_psk
        why = "pairwise pre-shared keys" if pairwise else "one group key for the whole mesh"
        rows.append(
            _row(
                "IKE keys are pairwise", "RFC 5619 §3.5.2", pairwise if ipsec.enabled else None, why
            )
        )
    else:
        rows.append(
            _row(
                "peer public keys are checked against the BGP IPsec Tunnel Authenticator",
                "RFC 5566 §4; RFC 5619 §4.4.2",
                True if ipsec.enabled else None,
                "auth: pubkey; an SA is installed only after the key matches",
            )
        )
    rows.append(_decap_filter(status))
    return rows


def _decap_filter(status: Mapping[str, Any]) -> dict[str, str]:
    """As the reconcile worker last read the kernel: afbr's nftables table with every chain
    and counter the desired filter declares."""
    drops = status.get("drops", {})
    installed = drops.get("decap_filter_installed")
    if installed:
        why = "the afbr nftables table is installed with every softwire's chain"
    elif installed is None:
        why = "no decapsulation filter is installed (the dataplane has not reported one)"
    else:
        why = "afbr's nftables table is missing or incomplete in the kernel (see the log)"
    return _row(
        "decapsulated traffic is filtered against what each AFBR advertised",
        "RFC 5619 §3.3",
        bool(installed),
        why,
    )


def _softwires_protected(config: AfbrConfig, status: Mapping[str, Any]) -> dict[str, str]:
    """On the running state: every ESP softwire's peer has a CHILD SA in the kernel."""
    requirement, rfc = "softwires are protected by IPsec", "RFC 5619 §4.4.2"
    if not config.ipsec.enabled:
        why = "ipsec.enabled is false: softwires carry client traffic in clear across the core"
        return _row(requirement, rfc, False, why)
    running = status.get("ipsec", {})
    if not running.get("enabled"):
        return _row(requirement, rfc, False, "ipsec.enabled is true but no IKE agent runs")
    bare = list(running.get("peers_without_sa", []))
    peers = int(running.get("peers", 0))
    if bare:  # the policies drop their traffic, it never goes in clear, but it does not flow
        why = f"no CHILD SA with {', '.join(bare)} (their traffic is dropped, not sent in clear)"
        return _row(requirement, rfc, False, why)
    return _row(requirement, rfc, True, f"ipsec.enabled; all {peers} IPsec peers have CHILD SAs")


def _bgp_md5(config: AfbrConfig) -> dict[str, str]:
    bare = [str(n.address) for n in config.bgp.neighbors if n.md5_key is None]
    return _row(
        "every BGP session is authenticated with TCP-MD5",
        "RFC 5565 §13.3; RFC 5619 §4.4.1",
        not bare,
        "all neighbors have md5_key" if not bare else "no TCP-MD5 key for " + ", ".join(bare),
    )


def _neighbors_up(status: Mapping[str, Any]) -> dict[str, str]:
    neighbors = status.get("neighbors", [])
    down = [n["address"] for n in neighbors if n.get("state") != "up"]
    return _row(
        "BGP sessions to the route reflectors are Established",
        "RFC 5565 §5",
        not down and bool(neighbors),
        "all up" if not down else "down: " + ", ".join(down),
    )
