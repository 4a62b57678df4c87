"""The demo mesh as data: nodes, links, addresses, and every node's configuration files.

Issue 6 asks for three AFBRs — two IPv4 islands over an IPv6 core, one IPv6 island over an
IPv4 core — with a route reflector, TCP-MD5 and IPsec, and traffic between all islands.  An
island can only talk to islands of its own family (RFC 5565 §1: softwires carry the client
family across the core; nothing translates), so the IPv6 island needs an IPv6 partner.  One
afbr instance serves one client family over one core family (afbr.config: `core.family`), and
it owns its namespace's tunnels, routes, XFRM objects and nftables table (one instance per
box, DESIGN.md), so a second client family at a site means a second AFBR.  Hence:

    site A (dual-stack)      site B            site C
    ce-a ---- a   (IPv4 island 198.51.100.0/24 over the IPv6 core, 2001:db8::a)
      '------ a6  (IPv6 island 2001:db8:a::/64 over the IPv4 core, 192.0.2.10)
              b   (IPv4 island 203.0.113.0/24 over the IPv6 core, 2001:db8::b) ---- ce-b
              c   (IPv6 island 2001:db8:c::/64 over the IPv4 core, 192.0.2.12) ---- ce-c

The three AFBR sites of the issue are A, B and C; site A runs two AFBRs (`a` for its IPv4
island, `a6` for its IPv6 island) and its client host `ce-a` is dual-stack.  The core is one
dual-stack segment (the `core` node is a plain bridge): 2001:db8::/64 and 192.0.2.0/25.  The
route reflector `rr` (GoBGP) sits on it with an address of each family; `a` and `b` peer with
it over IPv6 (RFC 8950 next hops), `a6` and `c` over IPv4 (IPv4-mapped next hops, RFC 4798),
each session with its own TCP-MD5 key (RFC 5565 §13.3).  Softwires: a<->b over IPv6 and
a6<->c over IPv4, each protected by IKEv2/ESP with a pairwise PSK (RFC 5619 §4.4).

The namespace runner (afbr.lab.demo_runner) and the containerlab files (afbr.lab.demo_clab,
written by `python -m afbr.lab.demo_mesh --write lab/demo`) are both built from this module,
so they describe the same nodes, links, addresses and configs.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
NodeRole = Literal["afbr", "reflector", "switch", "client"]

ASN = 65000
CORE_V6 = ipaddress.IPv6Network("2001:db8::/64")
CORE_V4 = ipaddress.IPv4Network("192.0.2.0/25")
BRIDGE = "br0"
GRACEFUL_RESTART_SECONDS = 30  # RFC 4724 restart time the reflector grants its clients


@dataclass(frozen=True)
class Interface:
    name: str
    addresses: tuple[str, ...] = ()  # CIDR, e.g. "2001:db8::a/64"


@dataclass(frozen=True)
class Node:
    name: str
    role: NodeRole
    interfaces: tuple[Interface, ...] = ()
    routes: tuple[str, ...] = ()  # `ip route add` arguments, e.g. "default via 198.51.100.1"
    bridge_ports: tuple[str, ...] = ()  # for the switch: interfaces enslaved to br0

    @property
    def forwarding(self) -> bool:
        return self.role == "afbr"


@dataclass(frozen=True)
class Link:
    a: str
    a_if: str
    b: str
    b_if: str


@dataclass(frozen=True)
class Afbr:
    """One AFBR: its core address, its client island and the client host behind it."""

    name: str
    site: str
    core_address: IPAddress
    router_id: str
    island: IPNetwork
    encap: tuple[str, ...]
    client: str  # the client host's node name
    client_if: str  # the client host's interface towards this AFBR
    core_if: str = "eth1"
    island_if: str = "eth2"

    @property
    def core_family(self) -> int:
        return self.core_address.version

    @property
    def client_family(self) -> int:
        return self.island.version

    @property
    def gateway(self) -> IPAddress:
        """This AFBR's address on its island (the client host's default gateway)."""
        return self.island[1]

    @property
    def client_address(self) -> IPAddress:
        return self.island[10]


@dataclass(frozen=True)
class Reflector:
    name: str
    router_id: str
    addresses: dict[int, IPAddress]  # family -> address on the core


@dataclass(frozen=True)
class DemoMesh:
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    afbrs: tuple[Afbr, ...]
    reflector: Reflector

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def afbr(self, name: str) -> Afbr:
        for afbr in self.afbrs:
            if afbr.name == name:
                return afbr
        raise KeyError(name)

    def partners(self, afbr: Afbr) -> tuple[Afbr, ...]:
        """The AFBRs whose islands this AFBR's island talks to: same families (RFC 5565 §1)."""
        return tuple(
            other
            for other in self.afbrs
            if other is not afbr
            and other.client_family == afbr.client_family
            and other.core_family == afbr.core_family
        )

    def traffic_pairs(self) -> tuple[tuple[Afbr, Afbr], ...]:
        """Every ordered pair of islands that can talk: the demo's traffic directions."""
        return tuple((src, dst) for src in self.afbrs for dst in self.partners(src))


AFBRS = (
    Afbr("a", "A", ipaddress.ip_address("2001:db8::a"), "192.0.2.101",
         ipaddress.ip_network("198.51.100.0/24"), ("gre", "ip-in-ip"), "ce-a", "eth1"),
    Afbr("b", "B", ipaddress.ip_address("2001:db8::b"), "192.0.2.102",
         ipaddress.ip_network("203.0.113.0/24"), ("gre", "ip-in-ip"), "ce-b", "eth1"),
    Afbr("a6", "A", ipaddress.ip_address("192.0.2.10"), "192.0.2.10",
         ipaddress.ip_network("2001:db8:a::/64"), ("ip-in-ip", "gre"), "ce-a", "eth2"),
    Afbr("c", "C", ipaddress.ip_address("192.0.2.12"), "192.0.2.12",
         ipaddress.ip_network("2001:db8:c::/64"), ("ip-in-ip", "gre"), "ce-c", "eth1"),
)  # fmt: skip
REFLECTOR = Reflector(
    "rr",
    "192.0.2.1",
    {6: ipaddress.ip_address("2001:db8::1"), 4: ipaddress.ip_address("192.0.2.1")},
)


def _cidr(address: IPAddress, network: IPNetwork) -> str:
    return f"{address}/{network.prefixlen}"


def _core_network(family: int) -> IPNetwork:
    return CORE_V6 if family == 6 else CORE_V4


def build_mesh(afbrs: Sequence[Afbr] = AFBRS, reflector: Reflector = REFLECTOR) -> DemoMesh:
    """The topology: a core switch, the reflector and the AFBRs on it, a client host each."""
    links: list[Link] = []
    ports: list[str] = []

    def to_core(node: str, ifname: str) -> None:
        port = f"eth{len(ports) + 1}"
        ports.append(port)
        links.append(Link("core", port, node, ifname))

    to_core(reflector.name, "eth1")
    rr_if = Interface(
        "eth1", tuple(_cidr(a, _core_network(f)) for f, a in sorted(reflector.addresses.items()))
    )
    nodes = [Node(reflector.name, "reflector", (rr_if,))]
    clients: dict[str, list[Interface]] = {}
    client_routes: dict[str, list[str]] = {}
    for afbr in afbrs:
        to_core(afbr.name, afbr.core_if)
        core = Interface(afbr.core_if, (_cidr(afbr.core_address, _core_network(afbr.core_family)),))
        lan = Interface(afbr.island_if, (_cidr(afbr.gateway, afbr.island),))
        nodes.append(Node(afbr.name, "afbr", (core, lan)))
        links.append(Link(afbr.name, afbr.island_if, afbr.client, afbr.client_if))
        clients.setdefault(afbr.client, []).append(
            Interface(afbr.client_if, (_cidr(afbr.client_address, afbr.island),))
        )
        client_routes.setdefault(afbr.client, []).append(f"default via {afbr.gateway}")
    nodes.insert(0, Node("core", "switch", tuple(Interface(p) for p in ports), (), tuple(ports)))
    for name, interfaces in clients.items():
        nodes.append(Node(name, "client", tuple(interfaces), tuple(client_routes[name])))
    return DemoMesh(tuple(nodes), tuple(links), tuple(afbrs), reflector)


def ip_batch_lines(node: Node) -> list[str]:
    """The `ip -batch` lines that configure a node once its links exist."""
    if node.role == "switch":
        lines = [f"link add {BRIDGE} type bridge", f"link set {BRIDGE} up"]
        for port in node.bridge_ports:
            lines += [f"link set {port} master {BRIDGE}", f"link set {port} up"]
        return lines
    lines = []
    for interface in node.interfaces:
        for cidr in interface.addresses:
            nodad = " nodad" if ":" in cidr else ""
            lines.append(f"addr add {cidr} dev {interface.name}{nodad}")
        lines.append(f"link set {interface.name} up")
    lines += [f"route add {route}" for route in node.routes]
    return lines


def sysctl_settings(node: Node) -> list[str]:
    settings = ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"]
    if node.forwarding:
        settings += ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]
    return settings


@dataclass(frozen=True)
class DemoKeys:
    """TCP-MD5 keys (AFBR name -> key of its session with the reflector) and IKE PSKs
    (frozenset of two AFBR names -> pairwise key, RFC 5619 §3.5.2)."""

    md5: dict[str, str]
    ike: dict[frozenset[str], str] = field(default_factory=dict)

    @classmethod
    def generate(cls, mesh: DemoMesh) -> DemoKeys:
        """Fresh random keys (the namespace runner makes new ones every run)."""
        md5 = {a.name: secrets.token_urlsafe(18) for a in mesh.afbrs}
        return cls(md5, {pair: secrets.token_hex(16) for pair in _ike_pairs(mesh)})

    @classmethod
    def published(cls, mesh: DemoMesh) -> DemoKeys:
        """Fixed, public keys for the committed containerlab files: a demo, not a deployment."""
        md5 = {a.name: f"demo-only-md5-{a.name}" for a in mesh.afbrs}
        ike = {pair: "demo-only-psk-" + "-".join(sorted(pair)) for pair in _ike_pairs(mesh)}
        return cls(md5, ike)


def _ike_pairs(mesh: DemoMesh) -> list[frozenset[str]]:
    pairs = {frozenset((a.name, b.name)) for a in mesh.afbrs for b in mesh.partners(a)}
    return sorted(pairs, key=sorted)


@dataclass(frozen=True)
class NodePaths:
    """Where an AFBR's files live: in its container, or in the runner's work folder."""

    config_dir: Path
    control_socket: Path
    state_dir: Path

    @classmethod
    def container(cls) -> NodePaths:
        return cls(Path("/etc/afbr"), Path("/run/afbr/afbr.sock"), Path("/var/lib/afbr"))

    @classmethod
    def workdir(cls, base: Path) -> NodePaths:
        return cls(base, base / "run" / "afbr.sock", base / "state")

    @property
    def config(self) -> Path:
        return self.config_dir / "afbr.yaml"

    @property
    def bgp_keys(self) -> Path:
        return self.config_dir / "bgp-keys.yaml"

    @property
    def ike_keys(self) -> Path:
        return self.config_dir / "ike-keys.yaml"


def afbr_config(
    mesh: DemoMesh, afbr: Afbr, paths: NodePaths, *, md5: bool = True, ipsec: bool = True
) -> dict[str, Any]:
    """The afbr.yaml of one AFBR as a mapping (afbr.config's schema)."""
    neighbor: dict[str, Any] = {
        "address": str(mesh.reflector.addresses[afbr.core_family]),
        "asn": ASN,
        "role": "route-reflector",
    }
    if md5:
        neighbor["md5_key"] = mesh.reflector.name
    else:
        neighbor["allow_unauthenticated"] = True  # afbr warns; `afbr audit` fails this
    config: dict[str, Any] = {
        "router_id": afbr.router_id,
        "asn": ASN,
        "core": {
            "family": f"ipv{afbr.core_family}",
            "address": str(afbr.core_address),
            "interface": afbr.core_if,
        },
        "clients": {"prefixes": [str(afbr.island)]},
        "bgp": {"keys_file": str(paths.bgp_keys), "neighbors": [neighbor]},
        "encap": {"preference": list(afbr.encap)},
        "ipsec": (
            {"enabled": True, "auth": "psk", "keys_file": str(paths.ike_keys)}
            if ipsec
            else {"enabled": False}
        ),
        "control_socket": str(paths.control_socket),
        "state_dir": str(paths.state_dir),
        "log": {"format": "text", "level": "info"},
    }
    return config


def render_afbr_yaml(
    mesh: DemoMesh, afbr: Afbr, paths: NodePaths, *, md5: bool = True, ipsec: bool = True
) -> str:
    partners = ", ".join(p.name for p in mesh.partners(afbr))
    head = (
        f"# afbr.yaml of AFBR {afbr.name} (site {afbr.site}) of the afbr demo mesh:\n"
        f"# IPv{afbr.client_family} island {afbr.island} over the IPv{afbr.core_family} core; "
        f"softwire partners: {partners}.\n"
        "# Generated by afbr.lab.demo_mesh; `afbr config check` validates it.\n"
    )
    config = afbr_config(mesh, afbr, paths, md5=md5, ipsec=ipsec)
    return head + yaml.safe_dump(config, sort_keys=False)


def bgp_keys_text(mesh: DemoMesh, afbr: Afbr, keys: DemoKeys) -> str:
    return yaml.safe_dump({mesh.reflector.name: keys.md5[afbr.name]})


def ike_keys_text(mesh: DemoMesh, afbr: Afbr, keys: DemoKeys) -> str:
    """Peer core address -> pairwise PSK, for each softwire partner."""
    table = {
        str(peer.core_address): keys.ike[frozenset((afbr.name, peer.name))]
        for peer in mesh.partners(afbr)
    }
    return yaml.safe_dump(table)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (afbr refuses key files others can read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def write_afbr_files(
    mesh: DemoMesh,
    afbr: Afbr,
    keys: DemoKeys,
    paths: NodePaths,
    dest: Path,
    *,
    md5: bool = True,
    ipsec: bool = True,
) -> None:
    """Write afbr.yaml and the two key files (0600) of one AFBR into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "afbr.yaml").write_text(render_afbr_yaml(mesh, afbr, paths, md5=md5, ipsec=ipsec))
    write_private(dest / "bgp-keys.yaml", bgp_keys_text(mesh, afbr, keys))
    write_private(dest / "ike-keys.yaml", ike_keys_text(mesh, afbr, keys))
