"""Shared pieces of the BGP interop tests: afbr configs, and tunnel views to compare.

A Tunnel Encapsulation attribute is compared as a list of tunnels, each a dict of what the
tests care about — tunnel type, Encapsulation key (GRE key or L2TPv3 session id), L2TPv3
cookie, Protocol Type, IPsec Tunnel Authenticator — built three ways: from the afbr config
that A runs (what A should send), from GoBGP's own decoding (`gobgp global rib -j`), and from
afbr's codec reading the octets B received.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from typing import Any

from afbr.bgp.tunnel_encap import decode_tunnel_encap
from afbr.lab.reflector_lab import RR_ASN, ReflectorLab

KEY = "s0ftw1re-md5"
ETHERTYPE = {4: 0x0800, 6: 0x86DD}  # Protocol Type sub-TLV: the client packets' family
# RFC 5566 §4: SHA-1 of the AFBR's public key; here of a stand-in key text.
A_AUTHENTICATOR = hashlib.sha1(b"afbr A public key (stand-in)").digest()
A_GRE_KEY = 7
A_L2TP_SESSION, A_L2TP_COOKIE = 66, bytes.fromhex("deadbeef")
CLIENT_PREFIXES = {
    # core family -> client prefixes of A and B (the other family, RFC 5565 §1)
    6: {"a": ["198.51.100.0/25", "198.51.100.128/26"], "b": ["203.0.113.0/24"]},
    4: {"a": ["2001:db8:a::/48", "2001:db8:a1::/64"], "b": ["2001:db8:b::/48"]},
}
Tunnels = list[dict[str, Any]]


def afbr_config(
    topo: ReflectorLab, name: str, *, ipsec: bool, encap: dict[str, Any]
) -> dict[str, Any]:
    """afbr.yaml for client `name` of the reflector lab (its one neighbor: the reflector)."""
    index = list(topo.clients).index(name)
    config: dict[str, Any] = {
        "router_id": f"192.0.2.{11 + index}",
        "asn": RR_ASN,
        "core": {"family": f"ipv{topo.core}", "address": topo.addresses[name]},
        "clients": {"prefixes": CLIENT_PREFIXES[topo.core][name]},
        "bgp": {
            "neighbors": [
                {
                    "address": topo.rr_address,
                    "asn": RR_ASN,
                    "role": "route-reflector",
                    "md5_key": "rr",
                }
            ]
        },
        "encap": encap,
        "ipsec": {"enabled": ipsec},
    }
    return config


A_ENCAP = {
    "preference": ["gre", "ip-in-ip", "l2tpv3"],
    "gre_key": A_GRE_KEY,
    "l2tpv3_session_id": A_L2TP_SESSION,
    "l2tpv3_cookie": A_L2TP_COOKIE.hex(),
}


def expected_a_tunnels(client_family: int) -> Tunnels:
    """What A's config says it sends: ESP tunnel mode first (IPsec on), then its preference."""
    common = {
        "protocol": ETHERTYPE[client_family],
        "authenticator": "0001" + A_AUTHENTICATOR.hex(),  # type 1: SHA-1 (RFC 5566 §4)
    }
    return [
        {"type": 4, **common},  # IPsec in tunnel mode (RFC 5566 §2)
        {"type": 2, "key": A_GRE_KEY, **common},  # GRE (RFC 9012 §3.2.4)
        {"type": 7, **common},  # IP-in-IP
        {"type": 1, "key": A_L2TP_SESSION, "cookie": A_L2TP_COOKIE.hex(), **common},  # L2TPv3
    ]


def gobgp_tunnels(path: dict[str, Any]) -> Tunnels:
    """The tunnels GoBGP decoded from attribute 23 of one path of `gobgp global rib -j`."""
    (attr,) = [a for a in path["attrs"] if a["type"] == 23]
    result: Tunnels = []
    for tlv in attr["value"]:
        view: dict[str, Any] = {"type": tlv["type"]}
        for sub in tlv["value"]:
            if sub["type"] == 1:  # Encapsulation: GRE key or L2TPv3 session id + cookie
                view["key"] = sub["key"]
                if sub.get("cookie"):
                    view["cookie"] = base64.b64decode(sub["cookie"]).hex()
            elif sub["type"] == 2:
                view["protocol"] = sub["protocol"]
            elif sub["type"] == 3:  # GoBGP keeps the authenticator raw (base64)
                view["authenticator"] = base64.b64decode(sub["value"]).hex()
            else:
                view[f"sub_tlv_{sub['type']}"] = sub
        result.append(view)
    return result


def codec_tunnels(value_hex: str) -> Tunnels:
    """The same view, from afbr's own decoder reading the attribute's octets."""
    result: Tunnels = []
    for tunnel in decode_tunnel_encap(bytes.fromhex(value_hex)).tunnels:
        view: dict[str, Any] = {"type": int(tunnel.tunnel_type)}
        key = tunnel.gre_key if tunnel.gre_key is not None else tunnel.l2tpv3_session_id
        if key is not None:
            view["key"] = key
        if tunnel.l2tpv3_cookie:
            view["cookie"] = tunnel.l2tpv3_cookie.hex()
        if tunnel.protocol_type is not None:
            view["protocol"] = tunnel.protocol_type
        if tunnel.authenticator is not None:
            auth = tunnel.authenticator
            view["authenticator"] = auth.value_bytes().hex()
        result.append(view)
    return result


def poll(probe: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.2) -> Any:
    """Call `probe` until it returns something truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
