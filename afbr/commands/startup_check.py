"""Everything `afbr run` reads at start-up, checked without starting anything.

`check_startup(path)` is what `afbr config check` reports and what `afbr run` calls before it
starts: the config file (schema, duplicate YAML keys, duplicate neighbors), the BGP keys file
(safe to hold secrets, every `md5_key` present, ExaBGP's rendered config accepted), the IKE
pre-shared keys file (safe, and with keys named the way the IPsec agent looks them up: the
peer's core address as afbr writes it, or `mesh` with `group_psk`), this AFBR's private key
(safe, parses, an algorithm IKE can sign with) and the ExaBGP program.  Every problem is a
`ConfigProblem` naming the config key, the file or value there, and why; all of them are
raised together as one `ConfigError`, so nothing a config or key file can contain makes
`afbr run` print a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from afbr.bgp.exabgp_config import find_exabgp, render_exabgp_config
from afbr.bgp.keyfile import KeyFileError, KeyRing, load_key_file, read_private_file
from afbr.bgp.session_config import DEFAULT_RESTART_TIME, BgpSessionConfig, SessionConfigError
from afbr.config import AfbrConfig, ConfigError, ConfigProblem, load_config
from afbr.ipsec import public_key_authenticator

# The key types the IKE core signs with (afbr.ipsec.ike_auth.PrivateKey).
SIGNING_KEYS = (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)
GROUP_PSK_NAME = "mesh"  # the key name looked up with ipsec.group_psk


@dataclass(frozen=True)
class StartupCheck:
    """A config that `afbr run` can start with, and what the check found on the way."""

    config: AfbrConfig
    exabgp: str  # the ExaBGP program that would be started
    exabgp_found: bool
    authenticator: bytes | None  # RFC 5566 authenticator of ipsec.private_key (auth: pubkey)


def check_startup(
    path: str | Path,
    *,
    exabgp: str | None = None,
    need_exabgp: bool = True,
    ipsec_agent: bool = True,
) -> StartupCheck:
    """Check everything start-up reads; ConfigError listing every problem if anything is
    wrong.  `need_exabgp=False`: a missing ExaBGP is only reported in the result (the daemon
    keeps retrying to start it, and says so in `afbr status`).  `ipsec_agent=False` (`afbr
    run --no-dataplane`): no IKE agent runs, so its pre-shared keys are not read."""
    config = load_config(path)
    problems: list[ConfigProblem] = []
    bgp_keys = _bgp_keys(config, problems)
    authenticator = _private_key(config, problems)
    if ipsec_agent:
        _psks(config, problems)
    _session(config, bgp_keys, authenticator, problems)
    program = exabgp or find_exabgp()
    found = os.path.isfile(program) and os.access(program, os.X_OK)
    if need_exabgp and not found:
        why = "ExaBGP not found beside this Python nor on PATH"
        if exabgp is not None:
            why = "not an executable file"
        problems.append(
            ConfigProblem("exabgp", program, why + " (pip installs it with afbr: see README)")
        )
    if problems:
        raise ConfigError(str(path), problems)
    return StartupCheck(config, program, found, authenticator)


def _bgp_keys(config: AfbrConfig, problems: list[ConfigProblem]) -> KeyRing | None:
    """The BGP keys file as runtime loads it, and every neighbor's md5_key in it."""
    if config.bgp.keys_file is None:
        return None
    try:
        keys = load_key_file(config.bgp.keys_file)
    except KeyFileError as exc:
        problems.append(ConfigProblem("bgp.keys_file", exc.file, exc.why))
        return None
    for index, neighbor in enumerate(config.bgp.neighbors):
        if neighbor.md5_key is not None and neighbor.md5_key not in keys:
            problems.append(
                ConfigProblem(
                    f"bgp.neighbors[{index}].md5_key",
                    neighbor.md5_key,
                    f"no key of that name in {config.bgp.keys_file} (it has "
                    f"{', '.join(sorted(keys)) or 'none'})",
                )
            )
    return keys


def _psks(config: AfbrConfig, problems: list[ConfigProblem]) -> None:
    """The IKE keys file, and key names the IPsec agent can find: `mesh` with group_psk,
    else each peer's core address in the form afbr writes it (str(ip_address))."""
    ipsec = config.ipsec
    if not ipsec.enabled or ipsec.auth != "psk" or ipsec.keys_file is None:
        return
    if config.role != "afbr":
        return  # a side-car runs no IKE: its ipsec section is the policy it audits
    try:
        keys = load_key_file(ipsec.keys_file)
    except KeyFileError as exc:
        problems.append(ConfigProblem("ipsec.keys_file", exc.file, exc.why))
        return
    if ipsec.group_psk:
        if GROUP_PSK_NAME not in keys:
            problems.append(
                ConfigProblem(
                    "ipsec.keys_file",
                    str(ipsec.keys_file),
                    f"group_psk is set but it has no key named {GROUP_PSK_NAME!r}",
                )
            )
        return
    if not keys:
        problems.append(
            ConfigProblem(
                "ipsec.keys_file",
                str(ipsec.keys_file),
                "has no keys: one per remote AFBR, named by its core address",
            )
        )
    for name in sorted(keys):
        why = _psk_name_problem(name, config.core.family)
        if why:
            problems.append(ConfigProblem("ipsec.keys_file", f"{ipsec.keys_file}: {name}", why))


def _psk_name_problem(name: str, family: int) -> str:
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        hint = f" ({GROUP_PSK_NAME!r} is used only with group_psk: true)"
        extra = hint if name == GROUP_PSK_NAME else ""
        return f"key name is not a remote AFBR's core address, so it is never used{extra}"
    if address.version != family:
        return f"key name is not an IPv{family} (core) address, so it is never used"
    if str(address) != name:
        return f"the IPsec agent looks this peer's key up as {str(address)!r}: rename it"
    return ""


def _private_key(config: AfbrConfig, problems: list[ConfigProblem]) -> bytes | None:
    """This AFBR's private key (auth: pubkey, IPsec on): safe file, parses, signs; its
    RFC 5566 authenticator (what BGP advertises)."""
    ipsec = config.ipsec
    if not ipsec.enabled or ipsec.auth != "pubkey" or ipsec.private_key is None:
        return None
    where = "ipsec.private_key"
    try:
        data = read_private_file(ipsec.private_key)
    except KeyFileError as exc:
        problems.append(ConfigProblem(where, exc.file, exc.why))
        return None
    try:
        key: Any = serialization.load_pem_private_key(data, None)
    except TypeError:
        why = "is encrypted; afbr needs it unencrypted (mode 0600 protects it)"
        problems.append(ConfigProblem(where, str(ipsec.private_key), why))
        return None
    except (ValueError, UnsupportedAlgorithm) as exc:
        why = f"not a PEM private key cryptography can load ({exc})"
        problems.append(ConfigProblem(where, str(ipsec.private_key), why))
        return None
    if not isinstance(key, SIGNING_KEYS):
        why = f"a {type(key).__name__}: IKE signs with ECDSA, Ed25519 or RSA keys"
        problems.append(ConfigProblem(where, str(ipsec.private_key), why))
        return None
    return public_key_authenticator(key.public_key())  # RFC 5566 §4


def _session(
    config: AfbrConfig,
    keys: KeyRing | None,
    authenticator: bytes | None,
    problems: list[ConfigProblem],
) -> None:
    """ExaBGP's config rendered as runtime renders it (what the file checks above missed)."""
    if problems:
        return  # the rendering would only repeat what is already listed
    bridge = config.state_dir / "run" / "exabgp-bridge.sock"
    argv = [sys.executable, "-m", "afbr.daemon.exabgp_bridge", str(bridge)]
    try:
        session = BgpSessionConfig.from_afbr_config(
            config, authenticator, graceful_restart=DEFAULT_RESTART_TIME
        )
        render_exabgp_config(session, keys, argv, warn=lambda _message: None)
    except (SessionConfigError, KeyFileError, ValueError) as exc:
        problems.append(ConfigProblem("bgp", "(ExaBGP configuration)", str(exc)))
