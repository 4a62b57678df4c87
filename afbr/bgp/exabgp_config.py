"""Render ExaBGP 5.0's configuration (and environment) from afbr's BGP session config.

The rendered file holds the TCP-MD5 keys, so it is written 0600 in a 0700 directory and its
text is never logged; keys never go on a command line (ExaBGP reads them from the file).

ExaBGP 5.0.15 pitfalls this rendering avoids (found in interop trials against GoBGP and BIRD):
- `nexthop { ipv4 unicast ipv6; }` is silently left out of the OPEN unless `family` also
  lists `ipv6 unicast`, so both unicast families are always configured.
- an md5-password made only of [a-f0-9] is read as unpadded base64 by default; afbr always
  writes the key base64-encoded with `md5-base64 true`, so every key means what it says.
- Graceful Restart (RFC 4724): ExaBGP 5.0.15 offers the capability with the Forwarding State
  bit for every configured family, and stops (SIGTERM) without a NOTIFICATION when it was
  negotiated, so its peers keep our routes; End-of-RIB is left to the API (`manual-eor`).
- ExaBGP does not listen unless `exabgp.tcp.bind` is set (see `exabgp_environment`); in a
  full mesh one of two ExaBGPs must accept the other's connection.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from afbr.bgp.keyfile import KeyFileError, KeyRing
from afbr.bgp.session_config import BgpSessionConfig, NeighborConfig, SessionConfigError

_log = logging.getLogger(__name__)

PROCESS_NAME = "afbr"
TCP_MD5SIG_MAXKEYLEN = 80  # Linux include/uapi/linux/tcp.h
_UNSAFE_IN_ARGV = set(" \t\n;{}\"'#")


def check_authentication(
    config: BgpSessionConfig, keys: KeyRing | None, warn: Callable[[str], None] = _log.warning
) -> None:
    """RFC 5565 §13.3: every session authenticated, unless the config explicitly says not.

    Raises SessionConfigError for a neighbor without a key (and without `allow_unauthenticated`), or
    whose key is not in the key file; warns for each explicitly unauthenticated neighbor.
    """
    for index, neighbor in enumerate(config.neighbors):
        where = f"bgp.neighbors[{index}] ({neighbor.address})"
        if neighbor.md5_key is None:
            if not neighbor.allow_unauthenticated:
                raise SessionConfigError(
                    f"{where}: no md5_key; RFC 5565 §13.3 requires an authenticated control "
                    "plane (set allow_unauthenticated: true to run without, not recommended)"
                )
            warn(f"{where}: BGP session without TCP-MD5 (allow_unauthenticated is set)")
            continue
        if keys is None:
            raise SessionConfigError(f"{where}: md5_key {neighbor.md5_key!r} but no key file")
        try:
            secret = keys[neighbor.md5_key].reveal()
        except KeyFileError as exc:
            raise SessionConfigError(f"{where}: {exc}") from None
        if len(secret) > TCP_MD5SIG_MAXKEYLEN:
            raise SessionConfigError(f"{where}: md5 key {neighbor.md5_key!r} longer than 80 octets")


def render_exabgp_config(
    config: BgpSessionConfig,
    keys: KeyRing | None,
    process_argv: Sequence[str],
    warn: Callable[[str], None] = _log.warning,
) -> str:
    """The text of ExaBGP's configuration file (it holds keys: never log it)."""
    check_authentication(config, keys, warn)
    for arg in process_argv:
        if not arg or _UNSAFE_IN_ARGV & set(arg):
            raise SessionConfigError(
                f"API process argument {arg!r} has characters ExaBGP cannot take"
            )
    if not process_argv or not process_argv[0].startswith("/"):
        raise SessionConfigError("the API process must be given by absolute path")
    lines = [
        "# Rendered by afbr; holds TCP-MD5 keys (mode 0600).  Do not edit: afbr rewrites it.",
        f"process {PROCESS_NAME} {{",
        f"    run {' '.join(process_argv)};",
        "    encoder json;",
        "}",
        "",
    ]
    for neighbor in config.neighbors:
        lines += _neighbor_block(config, neighbor, keys)
    return "\n".join(lines) + "\n"


def _neighbor_block(
    config: BgpSessionConfig, neighbor: NeighborConfig, keys: KeyRing | None
) -> list[str]:
    # With Graceful Restart the control plane needs the neighbor's OPEN (its families) to send
    # End-of-RIB only for families the session has: ExaBGP sends it for any family it is told,
    # and a peer resets the session on an UPDATE of a family it did not negotiate.
    receive_open = ["            open;"] if neighbor.graceful_restart else []
    local = neighbor.local_address or config.core_address
    block = [f"neighbor {neighbor.address} {{"]
    if neighbor.description:
        if set(neighbor.description) & _UNSAFE_IN_ARGV - {" "}:
            raise SessionConfigError(f"neighbor {neighbor.address}: description has quotes/braces")
        block.append(f'    description "{neighbor.description}";')
    block += [
        f"    router-id {config.router_id};",
        f"    local-address {local};",
        f"    local-as {config.local_as};",
        f"    peer-as {neighbor.peer_as};",
        f"    hold-time {neighbor.hold_time};",
        "    group-updates true;",
    ]
    if neighbor.md5_key is not None and keys is not None:
        secret = base64.b64encode(keys[neighbor.md5_key].reveal()).decode()
        block += [f'    md5-password "{secret}";', "    md5-base64 true;"]  # RFC 2385
    if neighbor.graceful_restart:
        # afbr's control plane sends End-of-RIB itself once it has announced its routes
        # (BgpControlPlane.announce_to), else ExaBGP would send it before them and a
        # restarting peer's reflector would drop our stale routes too early (RFC 4724 §4.1).
        block.append("    manual-eor true;")
    block += ["    capability {", "        route-refresh;"]
    if neighbor.graceful_restart:
        block.append(f"        graceful-restart {neighbor.graceful_restart};")  # RFC 4724 §3
    if config.core_family == 6:
        block.append("        nexthop true;")  # RFC 8950 §4
    block += ["    }", "    family {", "        ipv4 unicast;", "        ipv6 unicast;", "    }"]
    if config.core_family == 6:
        # RFC 8950: IPv4 NLRI with an IPv6 next hop.  ExaBGP 5.0.15 drops this from its OPEN
        # unless `family` lists ipv6 unicast too (above).
        block += ["    nexthop {", "        ipv4 unicast ipv6;", "    }"]
    block += [
        "    api {",
        f"        processes [ {PROCESS_NAME} ];",
        "        receive {",
        *receive_open,
        "            parsed;",
        "            update;",
        "            refresh;",
        "            notification;",
        "        }",
        "        neighbor-changes;",
        "    }",
        "}",
        "",
    ]
    return block


def exabgp_environment(config: BgpSessionConfig, *, as_root: bool = True) -> dict[str, str]:
    """Environment for `exabgp server CONF` (ExaBGP 5.0 reads `exabgp_<section>_<key>`)."""
    env = {
        "exabgp_api_cli": "false",  # no named pipes for a CLI we do not use
        "exabgp_api_ack": "true",  # each command answered with done/error
        "exabgp_api_encoder": "json",
        "exabgp_tcp_bind": str(config.core_address),  # accept the full mesh's connections
        "exabgp_log_destination": "stdout",
        "exabgp_daemon_daemonize": "false",
    }
    if as_root:
        env["exabgp_daemon_user"] = "root"
        env["exabgp_daemon_drop"] = "false"
    return env


def find_exabgp(executable: str = sys.executable, path: str | None = None) -> str:
    """The exabgp program: beside the interpreter (the virtualenv pip installed it in), else
    on PATH (`path`: instead of $PATH).  Found nowhere: the first place, which the supervisor
    then fails to start, naming it."""
    beside = Path(executable).with_name("exabgp")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("exabgp", path=path) or str(beside)


def exabgp_argv(exabgp: str, config_path: Path) -> list[str]:
    """The command line that starts ExaBGP on a rendered file: no secret on it."""
    return [exabgp, "server", str(config_path)]


def write_private_file(directory: Path, name: str, text: str) -> Path:
    """Write `text` atomically as directory/name, mode 0600, in a 0700 directory."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    target = directory / name
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.")  # created 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def write_exabgp_config(
    directory: Path,
    config: BgpSessionConfig,
    keys: KeyRing | None,
    process_argv: Sequence[str],
    warn: Callable[[str], None] = _log.warning,
) -> Path:
    """Render and write ExaBGP's configuration; returns its path (0600 in a 0700 dir)."""
    text = render_exabgp_config(config, keys, process_argv, warn)
    return write_private_file(directory, "exabgp.conf", text)
