"""A malformed Tunnel Encapsulation attribute reaching afbr through a real reflector.

A plain ExaBGP (M) crafts attribute 23 octets with its raw `attribute [ 0x17 0xc0 0x... ]`
and announces them through BIRD, which reflects the attribute byte-identical (it keeps it as
an unknown transitive attribute), to afbr control plane B.  TCP-MD5 on every session.
RFC 9012 §13 / RFC 7606: a Tunnel TLV that runs past the attribute makes the route
treat-as-withdraw (a route B had is removed, a new one never appears, both counted); a
malformed sub-TLV is ignored and the route kept.  The session stays up throughout.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bgp_interop_support import KEY, afbr_config, codec_tunnels

from afbr.lab.afbr_control_plane import AfbrControlPlane
from afbr.lab.exabgp_peer import ExaBgp
from afbr.lab.netns import Lab
from afbr.lab.reflector_lab import RR_ASN, reflector_lab

pytestmark = [pytest.mark.interop, pytest.mark.netns]

IP_IN_IP = "0007000402020800"  # IP-in-IP TLV, Protocol Type IPv4 (RFC 9012 §3.4.1)
TLV_OVERRUN = "0007001002020800"  # TLV length 16, 4 octets follow: RFC 9012 §13 treat-as-withdraw
# GRE TLV whose Encapsulation sub-TLV has 3 octets instead of a 4-octet key, then Protocol
# Type: the sub-TLV is ignored, the TLV and the route stay (RFC 9012 §13).
GRE_SHORT_KEY = "0002000901030000070202" + "0800"
TREAT_AS_WITHDRAW = "tunnel-encap-treat-as-withdraw"  # afbr's counter for it
P1, P2, P3 = "198.51.100.0/26", "198.51.100.64/26", "198.51.100.128/26"


def _crafter_config(own: str, rr: str) -> str:
    return f"""neighbor {rr} {{
    router-id 192.0.2.99;
    local-address {own};
    local-as {RR_ASN};
    peer-as {RR_ASN};
    md5-password "{KEY}";
    capability {{ route-refresh; nexthop true; }}
    family {{ ipv4 unicast; ipv6 unicast; }}
    nexthop {{ ipv4 unicast ipv6; }}
}}
"""


def test_malformed_attribute_is_handled_per_rfc_9012(lab: Lab, tmp_path: Path) -> None:
    topo = reflector_lab(lab, tmp_path, core=6, clients=["m", "b"])
    rr = topo.start_reflector("bird", {"m": KEY, "b": KEY})
    m_addr, rr_addr = topo.addresses["m"], topo.rr_address
    crafter = ExaBgp(
        topo.clients["m"], tmp_path / "crafter", config=_crafter_config(m_addr, rr_addr)
    ).start()
    b = AfbrControlPlane(
        topo.clients["b"],
        tmp_path / "afbr-b",
        config=afbr_config(topo, "b", ipsec=False, encap={"preference": ["ip-in-ip"]}),
        md5_keys={"rr": KEY},
    ).start()
    crafter.wait_established(rr_addr)
    rr.wait_established(topo.addresses["b"])

    def announce(prefix: str, value_hex: str) -> None:
        crafter.cli(
            f"announce route {prefix} next-hop {m_addr} attribute [ 0x17 0xc0 0x{value_hex} ]"
        )

    announce(P1, IP_IN_IP)
    dump = b.wait_dump(lambda d: P1 in d.get("prefixes", {}), what="the valid route in B")
    assert dump["prefixes"][P1]["tunnel_types"] == [7]

    announce(P2, TLV_OVERRUN)  # new route, malformed: never enters the RIB
    announce(P1, TLV_OVERRUN)  # replaces a good route: treat-as-withdraw removes it
    announce(P3, GRE_SHORT_KEY)  # malformed sub-TLV: ignored, route kept
    dump = b.wait_dump(
        lambda d: (
            P3 in d.get("prefixes", {})
            and P1 not in d["prefixes"]
            and d["counters"].get(TREAT_AS_WITHDRAW, 0) >= 2
        ),
        what="B handling the malformed attributes",
    )
    assert P2 not in dump["prefixes"]
    assert dump["counters"][TREAT_AS_WITHDRAW] == 2  # P2 and P1, once each
    kept = dump["prefixes"][P3]
    assert kept["tunnel_types"] == [2]
    assert kept["tunnel_encap"] == GRE_SHORT_KEY  # kept byte-exact (RFC 9012 §13)
    assert [t["type"] for t in codec_tunnels(kept["tunnel_encap"])] == [2]

    # The sessions stayed up: no NOTIFICATION, no reset, on any side.
    assert crafter.session_state(rr_addr) == "established"
    assert rr.session_state(m_addr) == "established"
    assert rr.session_state(topo.addresses["b"]) == "established"
    assert dump["neighbors_up"] == [rr_addr]
    # And a good attribute again brings P1 back over the same session.
    announce(P1, IP_IN_IP)
    b.wait_dump(lambda d: P1 in d.get("prefixes", {}), what="P1 back in B")
