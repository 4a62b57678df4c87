"""A route-reflector lab: one reflector (GoBGP or BIRD) and its clients on one core segment.

The reflector's namespace holds a bridge; each client namespace hangs on it by a veth, so
reflector and clients share one subnet of the core's address family (IPv6 2001:db8:ffff::/64
or IPv4 192.0.2.0/24).  A client's core address is both its BGP session address and the next
hop it announces, which the reflector resolves as directly connected (BIRD's `igp table`).
Every session carries a TCP-MD5 key; a client may be given a different key than the reflector
expects (the wrong-key tests).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from afbr.lab.daemon_base import BgpNeighbor
from afbr.lab.netns import Host, Lab
from afbr.lab.peers import Bird, GoBgp

ReflectorKind = Literal["gobgp", "bird"]
CORE_PREFIX = {
    6: ipaddress.ip_network("2001:db8:ffff::/64"),
    4: ipaddress.ip_network("192.0.2.0/24"),
}
RR_ASN = 65000
RR_ROUTER_ID = "192.0.2.1"


@dataclass
class ReflectorLab:
    """The hosts and addresses of one reflector lab; `start_reflector` starts the daemon."""

    lab: Lab
    workdir: Path
    core: int  # 4 or 6: the address family of the core (sessions and next hops)
    rr: Host
    clients: dict[str, Host] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)

    @property
    def rr_address(self) -> str:
        return str(CORE_PREFIX[self.core][1])

    def add_client(self, name: str) -> Host:
        """A client namespace on the core segment, with the next free core address."""
        host = self.lab.host(name)
        index = len(self.clients) + 2
        address = str(CORE_PREFIX[self.core][index])
        self.lab.link(self.rr, f"c{index}", host, "eth0")
        plen = CORE_PREFIX[self.core].prefixlen
        host.ip_batch(
            [f"addr add {address}/{plen} dev eth0" + (" nodad" if self.core == 6 else "")]
        )
        self.rr.ip_batch([f"link set c{index} master br0"])
        self.clients[name] = host
        self.addresses[name] = address
        return host

    def start_reflector(self, kind: ReflectorKind, keys: dict[str, str]) -> GoBgp | Bird:
        """Start GoBGP or BIRD as route reflector for the clients, `keys`: client -> MD5 key."""
        neighbors = [
            BgpNeighbor(
                self.addresses[name], RR_ASN, keys[name], rr_client=True, passive=True, name=name
            )
            for name in self.clients
        ]
        if kind == "gobgp":
            return GoBgp(
                self.rr,
                self.workdir / "gobgp",
                asn=RR_ASN,
                router_id=RR_ROUTER_ID,
                local_address=self.rr_address,
                neighbors=neighbors,
            ).start()
        return Bird(
            self.rr,
            self.workdir / "bird",
            asn=RR_ASN,
            router_id=RR_ROUTER_ID,
            local_address=self.rr_address,
            neighbors=neighbors,
            export="where source = RTS_BGP",  # reflect only, no connected routes of its own
        ).start()


def reflector_lab(lab: Lab, workdir: Path, *, core: int, clients: Sequence[str]) -> ReflectorLab:
    """Build the reflector namespace with its bridge and one namespace per client name."""
    rr = lab.host("rr")
    plen = CORE_PREFIX[core].prefixlen
    rr_address = CORE_PREFIX[core][1]
    rr.ip_batch(
        [
            "link add br0 type bridge",
            "link set br0 up",
            f"addr add {rr_address}/{plen} dev br0" + (" nodad" if core == 6 else ""),
        ]
    )
    topo = ReflectorLab(lab, workdir, core, rr)
    for name in clients:
        topo.add_client(name)
    return topo


def write_client_config(
    workdir: Path,
    name: str,
    core_address: str,
    rr_address: str,
    *,
    prefixes: Sequence[str],
    preference: Sequence[str],
) -> Path:
    """afbr.yaml (and its 0600 BGP key file) for client `name` ("a", "b", ...) of a reflector
    lab running `afbr run --no-dataplane`: an IPv6 core, TCP-MD5 key `md5-<name>-secret`
    towards the reflector, IPsec off, control socket and state under `workdir`."""
    keys = workdir / "bgp-keys.yaml"
    keys.write_text(f"md5-rr: 'md5-{name}-secret'\n")
    keys.chmod(0o600)
    config = workdir / "afbr.yaml"
    config.write_text(
        f"""\
router_id: 192.0.2.{10 + ord(name) - ord("a")}
asn: {RR_ASN}
core: {{family: ipv6, address: "{core_address}"}}
clients: {{prefixes: [{", ".join(prefixes)}]}}
bgp:
  keys_file: {keys}
  neighbors:
    - {{address: "{rr_address}", asn: {RR_ASN}, md5_key: md5-rr}}
encap: {{preference: [{", ".join(preference)}], gre_key: 7}}
ipsec: {{enabled: false}}
control_socket: {workdir}/afbr.sock
state_dir: {workdir}/state
"""
    )
    return config
