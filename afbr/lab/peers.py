"""Real third-party BGP speakers as lab peers: GoBGP, BIRD 2 and ExaBGP in a namespace.

Each launcher writes its daemon's configuration into a work folder the caller owns (a test's
`tmp_path`), starts the daemon inside a `Host` of `afbr.lab.netns` with `host.popen` (so the
lab ends it, pass or fail), waits until it answers on its own control channel, and offers the
few queries the interop tests need (session state, received routes), always through the
daemon's own CLI: `gobgp -j`, `birdc -s SOCK`, `exabgp cli`.

Every neighbor may carry a TCP-MD5 key (RFC 2385); the interop tests use one on every session.
strongSwan's charon lives in `afbr.lab.charon` and is re-exported here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from afbr.lab.charon import Charon, CharonError
from afbr.lab.daemon_base import BgpNeighbor, Daemon, PeerError, wait_until, write_private
from afbr.lab.exabgp_peer import ExaBgp, exabgp_binary
from afbr.lab.netns import Host

__all__ = [
    "BgpNeighbor",
    "Bird",
    "Charon",
    "CharonError",
    "ExaBgp",
    "GoBgp",
    "PeerError",
    "exabgp_binary",
    "tcp_md5_rejections",
    "wait_until",
]

# GoBGP's API enum PeerState.SessionState, as `gobgp -j neighbor` prints it (a number).
_GOBGP_STATES: dict[object, str] = {
    0: "unknown",
    1: "idle",
    2: "connect",
    3: "active",
    4: "opensent",
    5: "openconfirm",
    6: "established",
}


def tcp_md5_rejections(host: Host) -> int:
    """Segments the namespace's kernel dropped for a wrong or missing TCP-MD5 signature
    (TcpExtTCPMD5Failure + TcpExtTCPMD5NotFound, RFC 2385 §2.0)."""
    text = host.run("nstat", "-asz", "TcpExtTCPMD5Failure", "TcpExtTCPMD5NotFound")
    return sum(int(n) for n in re.findall(r"^TcpExtTCPMD5\w+\s+(\d+)", text, re.MULTILINE))


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


class GoBgp(Daemon):
    """gobgpd (Debian `gobgpd`), TOML config, queried with `gobgp -j`."""

    kind = "gobgpd"

    def __init__(
        self,
        host: Host,
        workdir: Path,
        *,
        asn: int,
        router_id: str,
        local_address: str,
        neighbors: Sequence[BgpNeighbor],
        cluster_id: str | None = None,
        graceful_restart: bool = False,
    ) -> None:
        super().__init__(host, workdir)
        self.asn = asn
        self.router_id = router_id
        self.local_address = local_address
        self.neighbors = list(neighbors)
        self.cluster_id = cluster_id or router_id
        self.graceful_restart = graceful_restart  # RFC 4724, as helper for restarting peers
        self.config = workdir / "gobgpd.toml"

    def config_text(self) -> str:
        out = [
            "[global.config]",
            f"  as = {self.asn}",
            f"  router-id = {_toml_str(self.router_id)}",
            "  port = 179",
            f"  local-address-list = [{_toml_str(self.local_address)}]",
        ]
        for nbr in self.neighbors:
            out += [
                "[[neighbors]]",
                "  [neighbors.config]",
                f"    neighbor-address = {_toml_str(nbr.address)}",
                f"    peer-as = {nbr.peer_as}",
            ]
            if nbr.md5_password is not None:
                out.append(f"    auth-password = {_toml_str(nbr.md5_password)}")
            out += [
                "  [neighbors.transport.config]",
                f"    local-address = {_toml_str(self.local_address)}",
                f"    passive-mode = {str(nbr.passive).lower()}",
                "  [neighbors.timers.config]",
                "    connect-retry = 1",
            ]
            if self.graceful_restart:
                out += ["  [neighbors.graceful-restart.config]", "    enabled = true"]
            if nbr.rr_client:
                out += [
                    "  [neighbors.route-reflector.config]",
                    "    route-reflector-client = true",
                    f"    route-reflector-cluster-id = {_toml_str(self.cluster_id)}",
                ]
            for family in ("ipv4-unicast", "ipv6-unicast"):
                out += [
                    "  [[neighbors.afi-safis]]",
                    "    [neighbors.afi-safis.config]",
                    f"      afi-safi-name = {_toml_str(family)}",
                ]
                if self.graceful_restart:
                    out += [
                        "    [neighbors.afi-safis.mp-graceful-restart.config]",
                        "      enabled = true",
                    ]
        return "\n".join(out) + "\n"

    def start(self, timeout: float = 15.0) -> GoBgp:
        write_private(self.config, self.config_text())  # it holds the MD5 keys
        self._spawn(
            "gobgpd",
            "-f",
            str(self.config),
            "-t",
            "toml",
            "-p",
            "--api-hosts",
            "127.0.0.1:50051",
            "--pprof-disable",
        )
        self._wait(self._answers, timeout, "gobgpd's gRPC API")
        return self

    def _answers(self) -> bool:
        return self.host.ok("gobgp", "-u", "127.0.0.1", "global")

    def cli_json(self, *args: str) -> Any:
        """Run `gobgp -j ARGS` in the namespace and return the decoded JSON."""
        text = self.host.run("gobgp", "-u", "127.0.0.1", "-j", *args)
        return json.loads(text) if text.strip() else None

    def session_state(self, address: str) -> str:
        """The BGP FSM state of one neighbor as GoBGP names it (e.g. "established")."""
        for peer in self.cli_json("neighbor") or []:
            if peer.get("conf", {}).get("neighbor_address") == address:
                state = peer.get("state", {}).get("session_state", 0)
                return _GOBGP_STATES.get(state, str(state)).lower()
        raise self._failed(f"no neighbor {address}")

    def wait_established(self, address: str, timeout: float = 20.0) -> None:
        self._wait(
            lambda: self.session_state(address) == "established",
            timeout,
            f"session with {address} Established",
        )

    def rib(self, family: str = "ipv4") -> dict[str, Any]:
        """`gobgp global rib -a FAMILY -j`: prefix -> list of paths with decoded attributes."""
        result = self.cli_json("global", "rib", "-a", family)
        return dict(result or {})

    def adj_in(self, address: str, family: str = "ipv4") -> dict[str, Any]:
        result = self.cli_json("neighbor", address, "adj-in", "-a", family)
        return dict(result or {})


class Bird(Daemon):
    """BIRD 2 (`bird -f`) with a private control socket, queried with `birdc -s SOCK`."""

    kind = "bird"

    def __init__(
        self,
        host: Host,
        workdir: Path,
        *,
        asn: int,
        router_id: str,
        local_address: str,
        neighbors: Sequence[BgpNeighbor],
        cluster_id: str | None = None,
        extra_config: str = "",
        export: str = "all",
        graceful_restart: bool = False,
    ) -> None:
        super().__init__(host, workdir)
        self.graceful_restart = graceful_restart  # RFC 4724, as helper for restarting peers
        self.export = export  # BIRD's channel export clause, e.g. "where source = RTS_BGP"
        self.asn = asn
        self.router_id = router_id
        self.local_address = local_address
        self.neighbors = list(neighbors)
        self.cluster_id = cluster_id or router_id
        self.extra_config = extra_config
        self.config = workdir / "bird.conf"
        self.socket = workdir / "bird.ctl"

    def _protocol(self, nbr: BgpNeighbor) -> list[str]:
        out = [
            f"protocol bgp {nbr.label} {{",
            f"  local {self.local_address} as {self.asn};",
            f"  neighbor {nbr.address} as {nbr.peer_as};",
            "  strict bind yes;",
            "  connect retry time 1;",
            "  connect delay time 1;",
            "  error wait time 1, 5;",
        ]
        if nbr.md5_password is not None:
            out.append(f"  password {json.dumps(nbr.md5_password)};")
        if nbr.passive:
            out.append("  passive on;")
        if self.graceful_restart:
            out.append("  graceful restart on;")
        if nbr.rr_client:
            out += ["  rr client;", f"  rr cluster id {self.cluster_id};"]
        for channel, igp in (
            ("ipv4", "master4; igp table master6"),
            ("ipv6", "master6; igp table master4"),
        ):
            out += [
                f"  {channel} {{",
                f"    import all; export {self.export};",
                "    extended next hop on;",  # RFC 8950 IPv4 NLRI with IPv6 next hop
                f"    igp table {igp};",
                "  };",
            ]
        out.append("}")
        return out

    def config_text(self) -> str:
        out = [
            f'log "{self.log}" all;',
            f"router id {self.router_id};",
            "protocol device { scan time 1; }",
            "protocol direct { ipv4; ipv6; }",
            self.extra_config,
        ]
        for nbr in self.neighbors:
            out += self._protocol(nbr)
        return "\n".join(out) + "\n"

    def start(self, timeout: float = 15.0) -> Bird:
        write_private(self.config, self.config_text())  # it holds the MD5 keys
        self._spawn("bird", "-f", "-c", str(self.config), "-s", str(self.socket))
        self._wait(lambda: self.socket.exists() and self._answers(), timeout, "birdc")
        return self

    def _answers(self) -> bool:
        return self.host.ok("birdc", "-s", str(self.socket), "show", "status")

    def cli(self, *args: str) -> str:
        """Run `birdc -s SOCK ARGS` and return its output."""
        return self.host.run("birdc", "-s", str(self.socket), *args)

    def neighbor(self, address: str) -> BgpNeighbor:
        for nbr in self.neighbors:
            if nbr.address == address:
                return nbr
        raise self._failed(f"no neighbor {address}")

    def session_state(self, address: str) -> str:
        """The BGP state BIRD reports for one neighbor, lower-cased (e.g. "established")."""
        text = self.cli("show", "protocols", "all", self.neighbor(address).label)
        found = re.search(r"BGP state:\s+(\S+)", text)
        return found.group(1).lower() if found else "unknown"

    def wait_established(self, address: str, timeout: float = 20.0) -> None:
        self._wait(
            lambda: self.session_state(address) == "established",
            timeout,
            f"session with {address} Established",
        )

    def routes(self, table: str = "master4") -> dict[str, list[str]]:
        """`show route all table T`: prefix -> the lines BIRD prints for its paths."""
        text = self.cli("show", "route", "all", "table", table)
        result: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in text.splitlines():
            head = re.match(r"^([0-9a-fA-F:.]+/\d+)\s", line)
            if head:
                current = result.setdefault(head.group(1), [])
            if current is not None and line.strip():
                current.append(line.strip())
        return result
