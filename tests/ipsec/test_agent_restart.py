"""The IKEv2 agent after an afbr restart: the previous run's SAs to wanted peers are adopted (they
keep forwarding until new ones replace them), those to peers no longer wanted are removed with
their policies.  Real XFRM states and policies in a namespace of the UML kernel."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest
import yaml

from afbr.config import parse_config
from afbr.daemon.ipsec_agent import IpsecAgent
from afbr.dataplane.kernel_plan import xfrm_if_id
from afbr.dataplane.xfrm import REQID_MIN, EspCipher, EspIntegrity, SaSpec, add_sa, list_sas
from afbr.dataplane.xfrm_policy import install_route_based_peer, list_policies
from afbr.dataplane.xfrm_socket import XfrmSocket
from afbr.encap.model import IpsecMode, IpsecNeed
from afbr.lab.netns import Lab

pytestmark = [pytest.mark.kernel, pytest.mark.netns]

LOCAL = ipaddress.ip_address("2001:db8::a")
WANTED = ipaddress.ip_address("2001:db8::9")  # lower: the peer initiates, we only answer
GONE = ipaddress.ip_address("2001:db8::c")


def leftover_pair(sock: XfrmSocket, tunnel: str, remote: ipaddress.IPv6Address, spi: int) -> int:
    """What a previous run left for a softwire: its policies and its SAs both ways."""
    if_id = xfrm_if_id(tunnel)
    reqid = REQID_MIN + (if_id & 0xFFFF)
    install_route_based_peer(sock, LOCAL, remote, if_id, reqid)
    for src, dst, spi_dir in ((LOCAL, remote, spi), (remote, LOCAL, spi + 1)):
        spec = SaSpec(
            src,
            dst,
            spi_dir,
            reqid,
            EspCipher.AES_CBC,
            bytes(32),
            EspIntegrity.HMAC_SHA2_256_128,
            bytes(32),
            if_id=if_id,
        )
        add_sa(sock, spec)
    return if_id


def config(tmp_path: Path) -> object:
    keys = tmp_path / "ike-keys.yaml"
    keys.write_text(yaml.safe_dump({str(WANTED): "k" * 32, str(GONE): "g" * 32}))
    keys.chmod(0o600)
    bgp_keys = tmp_path / "bgp-keys.yaml"
    bgp_keys.write_text(yaml.safe_dump({"rr": "secret"}))
    bgp_keys.chmod(0o600)
    return parse_config(
        yaml.safe_dump(
            {
                "router_id": "192.0.2.1",
                "asn": 65000,
                "core": {"family": "ipv6", "address": str(LOCAL)},
                "clients": {"prefixes": ["198.51.100.0/24"]},
                "bgp": {
                    "keys_file": str(bgp_keys),
                    "neighbors": [{"address": "2001:db8::1", "asn": 65000, "md5_key": "rr"}],
                },
                "ipsec": {"keys_file": str(keys)},
                "state_dir": str(tmp_path / "state"),
            }
        )
    )


def test_a_restarted_agent_adopts_wanted_sas_and_removes_the_rest(lab: Lab, tmp_path: Path) -> None:
    host = lab.host("agent")
    host.ip_batch([f"addr add {LOCAL}/64 dev lo nodad"])
    with XfrmSocket(host.name) as sock:
        wanted_if = leftover_pair(sock, "afbr-wanted", WANTED, 0x1000)
        gone_if = leftover_pair(sock, "afbr-gone", GONE, 0x2000)

        async def run() -> dict[str, object]:
            agent = IpsecAgent(config(tmp_path), netns=host.name)  # type: ignore[arg-type]
            agent.start()
            try:
                agent.sync((IpsecNeed("afbr-wanted", LOCAL, WANTED, IpsecMode.TUNNEL),), {})
                return {"orphans": dict(agent.installer.orphans)}
            finally:
                agent.close()

        seen = asyncio.run(run())
        states = {(str(s.dst), s.spi) for s in list_sas(sock)}
        policy_ifs = {p.if_id for p in list_policies(sock)}
    assert states == {(str(WANTED), 0x1000), (str(LOCAL), 0x1001)}  # adopted, still forwarding
    assert {ref.spi for ref in seen["orphans"][str(WANTED)]} == {0x1000, 0x1001}  # type: ignore[index]
    assert wanted_if in policy_ifs and gone_if not in policy_ifs
