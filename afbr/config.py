"""afbr's configuration: one YAML file, validated with errors that name key, value and why.

`load_config(path)` returns an `AfbrConfig` or raises `ConfigError` listing every problem.
A minimal config for an AFBR is about a dozen lines (see examples/afbr.yaml for every key).
The checks here are the ones an operator can get wrong in the file itself; the RFC 5565 /
RFC 5619 audit of the running state is `afbr audit`.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from afbr.config_reader import (
    ConfigError,
    ConfigProblem,
    DuplicateKeyError,
    IPAddress,
    IPNetwork,
    Reader,
    duplicate_problems,
    load_yaml,
    to_address,
    to_bool,
    to_choice,
    to_hex_bytes,
    to_int,
    to_network,
    to_router_id,
    to_str,
)

log = logging.getLogger(__name__)

ENCAPSULATIONS = ("gre", "ip-in-ip", "l2tpv3")
ESP_PROPOSALS = ("aes-gcm-16-128", "aes-gcm-16-256", "aes-cbc-256-sha256", "null-sha256")
IKE_PROPOSALS: tuple[str, ...] = (
    "aes-gcm-16-128-prf-sha256-ecp256",
    "aes-gcm-16-256-prf-sha512-x25519",
    "aes-cbc-256-sha256-modp2048",
)

__all__ = ["AfbrConfig", "ConfigError", "ConfigProblem", "load_config", "parse_config"]


@dataclass(frozen=True)
class NeighborConfig:
    address: IPAddress
    asn: int
    role: str  # "route-reflector" or "peer"
    md5_key: str | None  # the name of a key in bgp.keys_file
    allow_unauthenticated: bool = False
    hold_time: int = 90


@dataclass(frozen=True)
class BgpConfig:
    neighbors: tuple[NeighborConfig, ...]
    keys_file: Path | None
    hold_time: int = 90


@dataclass(frozen=True)
class CoreConfig:
    family: int  # 4 or 6: the transit core's address family
    address: IPAddress  # this AFBR's core address: BGP next hop and tunnel endpoint
    interface: str | None = None
    mtu: int = 1500


@dataclass(frozen=True)
class EncapConfig:
    preference: tuple[str, ...] = ("gre", "ip-in-ip")
    gre_key: int | None = None
    l2tpv3_session_id: int | None = None
    l2tpv3_cookie: bytes = b""


@dataclass(frozen=True)
class IpsecConfig:
    enabled: bool = True
    auth: str = "psk"  # "psk" or "pubkey"
    keys_file: Path | None = None  # pairwise PSKs by peer core address
    group_psk: bool = False  # RFC 5619 §3.5.2 / §4.4.2: only when set explicitly
    private_key: Path | None = None
    esp: tuple[str, ...] = ("aes-gcm-16-128", "null-sha256")
    ike: tuple[str, ...] = ("aes-gcm-16-128-prf-sha256-ecp256",)
    rekey_seconds: int = 3600
    dpd_seconds: int = 30


@dataclass(frozen=True)
class AfbrConfig:
    role: str  # "afbr" or "sidecar"
    router_id: ipaddress.IPv4Address
    asn: int
    core: CoreConfig
    client_prefixes: tuple[IPNetwork, ...]
    bgp: BgpConfig
    encap: EncapConfig = field(default_factory=EncapConfig)
    ipsec: IpsecConfig = field(default_factory=IpsecConfig)
    control_socket: Path = Path("/run/afbr/afbr.sock")
    state_dir: Path = Path("/var/lib/afbr")
    log_format: str = "text"
    log_level: str = "info"
    metrics_listen: str | None = None

    @property
    def client_family(self) -> int:
        return 6 if self.core.family == 4 else 4


TOP_KEYS: tuple[str, ...] = ("role", "router_id", "asn", "core", "clients", "bgp", "encap", "ipsec")
TOP_KEYS += ("control_socket", "state_dir", "log", "metrics")


def load_config(path: str | Path) -> AfbrConfig:
    """Read and validate a config file."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(
            source, [ConfigProblem("(file)", source, exc.strerror or str(exc))]
        ) from None
    return parse_config(text, source)


def parse_config(text: str, source: str = "<config>") -> AfbrConfig:
    try:
        raw = load_yaml(text)
    except DuplicateKeyError as exc:
        raise ConfigError(source, duplicate_problems(exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        raise ConfigError(source, [ConfigProblem(where, "", f"not valid YAML: {exc}")]) from None
    reader = Reader()
    top = reader.mapping(raw, "", TOP_KEYS)
    config = _read_top(reader, top)
    if reader.problems or config is None:
        raise ConfigError(source, reader.problems)
    for neighbor in config.bgp.neighbors:
        if neighbor.md5_key is None:
            log.warning(  # RFC 5565 §13.3: allowed only because the config says so
                "bgp neighbor %s has no TCP-MD5 key (allow_unauthenticated is set)",
                neighbor.address,
            )
    if config.ipsec.enabled and config.ipsec.group_psk:
        log.warning("ipsec.group_psk is set: one key for the whole mesh (RFC 5619 §3.5.2)")
    return config


def _read_top(r: Reader, top: Mapping[str, object]) -> AfbrConfig | None:
    role = r.get(top, "", "role", to_choice("afbr", "sidecar"), "afbr")
    router_id = r.get(top, "", "router_id", to_router_id, required=True)
    asn = r.get(top, "", "asn", to_int(1, 4294967295), required=True)
    core = _read_core(
        r, r.mapping(top.get("core"), "core", ("family", "address", "interface", "mtu"))
    )
    prefixes = _read_clients(r, top, core, role == "sidecar")
    bgp = _read_bgp(r, top, core)
    encap = _read_encap(r, r.mapping(top.get("encap"), "encap", _ENCAP_KEYS))
    ipsec = _read_ipsec(r, r.mapping(top.get("ipsec"), "ipsec", _IPSEC_KEYS), role == "sidecar")
    logs = r.mapping(top.get("log"), "log", ("format", "level"))
    metrics = r.mapping(top.get("metrics"), "metrics", ("listen",))
    if router_id is None or asn is None or core is None or bgp is None:
        return None
    return AfbrConfig(
        role=role or "afbr",
        router_id=router_id,
        asn=asn,
        core=core,
        client_prefixes=prefixes,
        bgp=bgp,
        encap=encap,
        ipsec=ipsec,
        control_socket=Path(r.get(top, "", "control_socket", to_str, "/run/afbr/afbr.sock") or ""),
        state_dir=Path(r.get(top, "", "state_dir", to_str, "/var/lib/afbr") or ""),
        log_format=r.get(logs, "log", "format", to_choice("text", "json"), "text") or "text",
        log_level=r.get(logs, "log", "level", to_choice(*_LEVELS), "info") or "info",
        metrics_listen=r.get(metrics, "metrics", "listen", _to_listen),
    )


_LEVELS = ("debug", "info", "warning", "error")
_ENCAP_KEYS = ("preference", "gre_key", "l2tpv3_session_id", "l2tpv3_cookie")
_IPSEC_KEYS: tuple[str, ...] = (
    "enabled",
    "auth",
    "keys_file",
    "group_psk",
    "private_key",
    "esp",
    "ike",
)
_IPSEC_KEYS += ("rekey_seconds", "dpd_seconds")


def _read_core(r: Reader, core: Mapping[str, object]) -> CoreConfig | None:
    family = r.get(core, "core", "family", _to_family, required=True)
    address = r.get(core, "core", "address", to_address, required=True)
    if family is None or address is None:
        return None
    if address.version != family:
        r.problem("core.address", str(address), f"is not an IPv{family} address (core.family)")
    return CoreConfig(
        family=family,
        address=address,
        interface=r.get(core, "core", "interface", to_str),
        mtu=r.get(core, "core", "mtu", to_int(1280, 65535), 1500) or 1500,
    )


def _read_clients(
    r: Reader, top: Mapping[str, object], core: CoreConfig | None, sidecar: bool
) -> tuple[IPNetwork, ...]:
    clients = r.mapping(top.get("clients"), "clients", ("prefixes",))
    prefixes: list[IPNetwork] = []
    seen: set[IPNetwork] = set()  # large prefix sets: no quadratic duplicate check
    for path, item in r.items(clients, "clients", "prefixes"):
        try:
            prefix = to_network(item)
        except ValueError as exc:
            r.problem(path, item, str(exc))
            continue
        if core is not None and prefix.version == core.family:
            # RFC 5565 §1: the client islands are of the other address family than the core.
            r.problem(
                path, str(prefix), f"client prefixes must not be IPv{core.family} (the core's)"
            )
        elif prefix in seen:
            r.problem(path, str(prefix), "listed twice")
        else:
            seen.add(prefix)
            prefixes.append(prefix)
    if not prefixes and not sidecar and not r.problems:
        r.problem("clients.prefixes", [], "an AFBR needs at least one client prefix to announce")
    return tuple(prefixes)


def _read_bgp(r: Reader, top: Mapping[str, object], core: CoreConfig | None) -> BgpConfig | None:
    bgp = r.mapping(top.get("bgp"), "bgp", ("neighbors", "keys_file", "hold_time"))
    hold_time = r.get(bgp, "bgp", "hold_time", _to_hold_time, 90) or 90
    keys_file = r.get(bgp, "bgp", "keys_file", to_str)
    neighbors: list[NeighborConfig] = []
    first_path: dict[IPAddress, str] = {}
    for path, item in r.items(bgp, "bgp", "neighbors"):
        n = r.mapping(item, path, _NEIGHBOR_KEYS)
        address = r.get(n, path, "address", to_address, required=True)
        asn = r.get(n, path, "asn", to_int(1, 4294967295), required=True)
        key = r.get(n, path, "md5_key", to_str)
        unauthenticated = r.get(n, path, "allow_unauthenticated", to_bool, False) or False
        if key is None and not unauthenticated:
            # RFC 5565 §13.3: the control plane is authenticated.
            r.problem(f"{path}.md5_key", why=_NO_KEY)
        if key is not None and keys_file is None:
            r.problem("bgp.keys_file", why=f"{path}.md5_key names a key but no keys_file is set")
        if address is not None and core is not None and address.version != core.family:
            r.problem(f"{path}.address", str(address), f"BGP runs over the IPv{core.family} core")
        if address is None or asn is None:
            continue
        if address in first_path:  # ExaBGP would get two blocks for one session
            r.problem(f"{path}.address", str(address), f"listed twice (also {first_path[address]})")
            continue
        first_path[address] = path
        role = r.get(n, path, "role", to_choice("route-reflector", "peer"), "route-reflector")
        n_hold = r.get(n, path, "hold_time", _to_hold_time, hold_time) or hold_time
        neighbors.append(NeighborConfig(address, asn, role or "", key, unauthenticated, n_hold))
    if not neighbors:
        r.problem("bgp.neighbors", [], "at least one BGP neighbor (a route reflector) is needed")
        return None
    return BgpConfig(tuple(neighbors), Path(keys_file) if keys_file else None, hold_time)


_NEIGHBOR_KEYS = ("address", "asn", "role", "md5_key", "allow_unauthenticated", "hold_time")
_NO_KEY = "missing: every BGP session needs a TCP-MD5 key (RFC 5565 §13.3); set "
_NO_KEY += "allow_unauthenticated: true to run without one"


def _read_encap(r: Reader, encap: Mapping[str, object]) -> EncapConfig:
    preference: list[str] = []
    for path, item in r.items(encap, "encap", "preference"):
        if item not in ENCAPSULATIONS:
            r.problem(path, item, "must be one of " + ", ".join(ENCAPSULATIONS))
        elif item in preference:
            r.problem(path, item, "listed twice")
        else:
            preference.append(str(item))
    default = EncapConfig()
    session_id = r.get(encap, "encap", "l2tpv3_session_id", to_int(1, 0xFFFFFFFF))
    if "l2tpv3" in preference and encap.get("l2tpv3_session_id") is None:
        # RFC 3931 §4.1: the session id the remote AFBRs put in the packets they send us.
        r.problem("encap.l2tpv3_session_id", why=_NO_SESSION_ID)
    return EncapConfig(
        preference=tuple(preference) or default.preference,
        gre_key=r.get(encap, "encap", "gre_key", to_int(0, 0xFFFFFFFF)),
        l2tpv3_session_id=session_id,
        l2tpv3_cookie=r.get(encap, "encap", "l2tpv3_cookie", to_hex_bytes(0, 4, 8), b"") or b"",
    )


_NO_SESSION_ID = "missing: encap.preference has l2tpv3, which needs this AFBR's non-zero "
_NO_SESSION_ID += "session id (RFC 3931 §4.1)"


def _read_ipsec(r: Reader, ipsec: Mapping[str, object], sidecar: bool) -> IpsecConfig:
    """For a side-car this section is the mesh's policy to audit against: no keys needed."""
    d = IpsecConfig()
    auth = r.get(ipsec, "ipsec", "auth", to_choice("psk", "pubkey"), d.auth) or d.auth
    enabled = r.get(ipsec, "ipsec", "enabled", to_bool, d.enabled)
    keys_file = r.get(ipsec, "ipsec", "keys_file", to_str)
    private_key = r.get(ipsec, "ipsec", "private_key", to_str)
    if enabled and not sidecar and auth == "psk" and keys_file is None:
        r.problem("ipsec.keys_file", why="auth: psk needs a keys_file of pairwise keys")
    if enabled and not sidecar and auth == "pubkey" and private_key is None:
        r.problem("ipsec.private_key", why="auth: pubkey needs this AFBR's private key file")
    return IpsecConfig(
        enabled=bool(enabled),
        auth=auth,
        keys_file=Path(keys_file) if keys_file else None,
        group_psk=r.get(ipsec, "ipsec", "group_psk", to_bool, False) or False,
        private_key=Path(private_key) if private_key else None,
        esp=_read_list(r, ipsec, "ipsec", "esp", ESP_PROPOSALS) or d.esp,
        ike=_read_list(r, ipsec, "ipsec", "ike", IKE_PROPOSALS) or d.ike,
        rekey_seconds=r.get(ipsec, "ipsec", "rekey_seconds", to_int(10, 86400), 3600) or 3600,
        dpd_seconds=r.get(ipsec, "ipsec", "dpd_seconds", to_int(1, 3600), 30) or 30,
    )


def _read_list(
    r: Reader, section: Mapping[str, object], path: str, key: str, allowed: tuple[str, ...]
) -> tuple[str, ...]:
    out: list[str] = []
    for where, item in r.items(section, path, key):
        if item not in allowed:
            r.problem(where, item, "must be one of " + ", ".join(allowed))
        else:
            out.append(str(item))
    if key == "esp" and out and "null-sha256" not in out:
        # RFC 5619 §4.4.2: ESP with NULL encryption (integrity only) MUST be offered.
        r.problem(f"{path}.{key}", out, "must include null-sha256 (RFC 5619 §4.4.2)")
    return tuple(out)


def _to_family(raw: object) -> int:
    if raw in (4, 6, "ipv4", "ipv6"):
        return 4 if raw in (4, "ipv4") else 6
    raise ValueError("must be ipv4 or ipv6")


def _to_hold_time(raw: object) -> int:
    value = to_int(0, 65535)(raw)
    if 0 < value < 3:  # RFC 4271 §4.2: zero or at least three seconds
        raise ValueError("must be 0 or at least 3 seconds (RFC 4271 §4.2)")
    return value


def _to_listen(raw: object) -> str:
    text = to_str(raw)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be ADDRESS:PORT, e.g. 127.0.0.1:9479 or [::1]:9479")
    to_address(host.strip("[]"))
    return text
