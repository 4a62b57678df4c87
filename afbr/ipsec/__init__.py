"""IKEv2 agent: afbr's own sans-IO IKEv2 core (RFC 7296) on `cryptography`.

Public API (the main names are re-exported here):

- `IkeDispatcher(config_for, random)`: the entry point.  `config_for(peer_addr)` returns the
  `IkeConfig` for a peer or None (unknown peers are refused and counted).  It routes datagrams
  to IKE SAs by SPI, answers IKE_SA_INIT as responder (cookies once `cookie_threshold`
  half-open SAs pile up, drops beyond `half_open_limit`), sends the unprotected
  INVALID_MAJOR_VERSION / INVALID_IKE_SPI answers (at most one a second), honours
  INITIAL_CONTACT, and counts every kind of bad input (`counters.totals`, a `BadInputLog`
  that logs one summary line per interval).  `connect(config, local_addr, remote_addr, now)`
  starts an initiator and returns its `IkeSa`.
- Driving, as in aioquic: `receive_datagram(data, addr, now, local_addr)` (pass the local
  address and port the datagram arrived on: NAT detection and the move to 4500 use it; the
  non-ESP marker is stripped by the core), `handle_timer(now)`, `get_timer()`,
  `datagrams_to_send(now)` -> [`Datagram(data, source, destination)`] (send `data` from
  `source` to `destination`; the marker is already in it), `next_event()`.  After calling an
  `IkeSa` command yourself, call `dispatcher.after_command(sa, now)` to collect its output.
  `now` is any monotonic clock in seconds; `random(n)` returns n random bytes (os.urandom).
- `IkeSa`: one IKE SA (also usable alone with the same driving methods).  Commands, each
  taking `now`: `create_child`, `rekey_child(inbound_spi)` (e.g. on an XFRM soft expiry; the
  core also rekeys on its own timers), `rekey()` (IKE SA), `delete_child(inbound_spi)`,
  `delete()`, `check_liveness()`.
- `IkeConfig` (+ `Identity`, `Timers`, `IpsecMode`, `TrafficSelector`); credentials
  `PskCredential` (pairwise; `group=True` logs a warning, RFC 5619 §3.5.2) and `KeyCredential`
  (ECDSA P-256, Ed25519, RSA; sent as an RFC 7670 raw key or a self-signed certificate);
  `PeerTrust` (the peer's PSK, or its pinned key / a key it sends, which must match the RFC 5566
  `authenticator` it advertised in BGP; `public_key_authenticator(key)` computes that value:
  SHA-1, or SHA-256 with `sha256=True`, of the DER SubjectPublicKeyInfo).
- Events (`ike_events`, each names its IKE SA by `IkeSaId`, never carries a live SA):
  `IkeSaEstablished`, `IkeSaRekeyed` (names the successor SA; the dispatcher routes it),
  `IkeSaDeleted`,
  `ChildSaEstablished` / `ChildSaRekeyed` (carry `ChildSaParams`: per-direction SPI, keys and
  addresses, algorithms, mode, selectors, UDP encapsulation ports, lifetimes; a rekey comes
  before the old pair's `ChildSaDeleted`: make-before-break), `ChildSaDeleted`,
  `ChildSaFailed`, `AuthenticationFailed` (nothing installed, RFC 5619 §4.4.2).
- Algorithm suites (`ike_proposals`): `IKE_AES_GCM_128` (ECP-256), `IKE_AES_GCM_256`
  (Curve25519, PRF-SHA512), `IKE_AES_CBC_SHA256` (MODP-2048); `ESP_AES_GCM_128`,
  `ESP_AES_GCM_256`, `ESP_AES_CBC_SHA256`, `ESP_NULL_SHA256` (always offered by default,
  RFC 5619 §4.4.2).  No ESN.  CHILD rekeys offer PFS with the IKE SA's group, optional unless
  `IkeConfig.child_pfs_group` makes it mandatory, and never downgrade encryption to NULL.

Modules, bottom up: ike_constants / ike_errors / ike_buffer / ike_payloads / ike_message
(codec), ike_proposals, ike_dh, ike_crypto (prf+, keys, SK payloads), ike_protect, ike_auth;
ike_sa_state (the SA's data, states and allowed transitions); the exchanges, plain functions over
that record: ike_child_nego, ike_setup, ike_informational, ike_rekey, ike_timers; ike_sa (the
driving class and its request-handler table); ike_dispatcher.

The names below are loaded on first use (module `__getattr__`), so importing a codec module
(`afbr.ipsec.ike_message`) does not load the state machine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from afbr.ipsec.ike_auth import (
        KeyCredential,
        PeerTrust,
        PskCredential,
        public_key_authenticator,
    )
    from afbr.ipsec.ike_config import Address, Identity, IkeConfig, IpsecMode, Timers
    from afbr.ipsec.ike_counters import BadInput, BadInputLog
    from afbr.ipsec.ike_dispatcher import IkeDispatcher
    from afbr.ipsec.ike_errors import IkeError
    from afbr.ipsec.ike_events import (
        AuthenticationFailed,
        ChildSaDeleted,
        ChildSaEstablished,
        ChildSaFailed,
        ChildSaParams,
        ChildSaRekeyed,
        EspSaKeys,
        IkeEvent,
        IkeSaDeleted,
        IkeSaEstablished,
        IkeSaId,
        IkeSaRekeyed,
    )
    from afbr.ipsec.ike_payloads import TrafficSelector
    from afbr.ipsec.ike_proposals import (
        ESP_AES_CBC_SHA256,
        ESP_AES_GCM_128,
        ESP_AES_GCM_256,
        ESP_NULL_SHA256,
        IKE_AES_CBC_SHA256,
        IKE_AES_GCM_128,
        IKE_AES_GCM_256,
        AlgorithmSuite,
        DhGroup,
        EncrId,
        IntegId,
        PrfId,
    )
    from afbr.ipsec.ike_sa import IkeSa
    from afbr.ipsec.ike_sa_state import Datagram, IkeState

# public name -> the module that defines it
_EXPORTS = {
    "Address": "afbr.ipsec.ike_config",
    "AlgorithmSuite": "afbr.ipsec.ike_proposals",
    "AuthenticationFailed": "afbr.ipsec.ike_events",
    "BadInput": "afbr.ipsec.ike_counters",
    "BadInputLog": "afbr.ipsec.ike_counters",
    "ChildSaDeleted": "afbr.ipsec.ike_events",
    "ChildSaEstablished": "afbr.ipsec.ike_events",
    "ChildSaFailed": "afbr.ipsec.ike_events",
    "ChildSaParams": "afbr.ipsec.ike_events",
    "ChildSaRekeyed": "afbr.ipsec.ike_events",
    "Datagram": "afbr.ipsec.ike_sa_state",
    "DhGroup": "afbr.ipsec.ike_proposals",
    "ESP_AES_CBC_SHA256": "afbr.ipsec.ike_proposals",
    "ESP_AES_GCM_128": "afbr.ipsec.ike_proposals",
    "ESP_AES_GCM_256": "afbr.ipsec.ike_proposals",
    "ESP_NULL_SHA256": "afbr.ipsec.ike_proposals",
    "EncrId": "afbr.ipsec.ike_proposals",
    "EspSaKeys": "afbr.ipsec.ike_events",
    "IKE_AES_CBC_SHA256": "afbr.ipsec.ike_proposals",
    "IKE_AES_GCM_128": "afbr.ipsec.ike_proposals",
    "IKE_AES_GCM_256": "afbr.ipsec.ike_proposals",
    "Identity": "afbr.ipsec.ike_config",
    "IkeConfig": "afbr.ipsec.ike_config",
    "IkeDispatcher": "afbr.ipsec.ike_dispatcher",
    "IkeError": "afbr.ipsec.ike_errors",
    "IkeEvent": "afbr.ipsec.ike_events",
    "IkeSa": "afbr.ipsec.ike_sa",
    "IkeSaDeleted": "afbr.ipsec.ike_events",
    "IkeSaEstablished": "afbr.ipsec.ike_events",
    "IkeSaId": "afbr.ipsec.ike_events",
    "IkeSaRekeyed": "afbr.ipsec.ike_events",
    "IkeState": "afbr.ipsec.ike_sa_state",
    "IntegId": "afbr.ipsec.ike_proposals",
    "IpsecMode": "afbr.ipsec.ike_config",
    "KeyCredential": "afbr.ipsec.ike_auth",
    "PeerTrust": "afbr.ipsec.ike_auth",
    "PrfId": "afbr.ipsec.ike_proposals",
    "PskCredential": "afbr.ipsec.ike_auth",
    "Timers": "afbr.ipsec.ike_config",
    "TrafficSelector": "afbr.ipsec.ike_payloads",
    "public_key_authenticator": "afbr.ipsec.ike_auth",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "ESP_AES_CBC_SHA256",
    "ESP_AES_GCM_128",
    "ESP_AES_GCM_256",
    "ESP_NULL_SHA256",
    "IKE_AES_CBC_SHA256",
    "IKE_AES_GCM_128",
    "IKE_AES_GCM_256",
    "Address",
    "AlgorithmSuite",
    "AuthenticationFailed",
    "BadInput",
    "BadInputLog",
    "ChildSaDeleted",
    "ChildSaEstablished",
    "ChildSaFailed",
    "ChildSaParams",
    "ChildSaRekeyed",
    "Datagram",
    "DhGroup",
    "EncrId",
    "EspSaKeys",
    "Identity",
    "IkeConfig",
    "IkeDispatcher",
    "IkeError",
    "IkeEvent",
    "IkeSa",
    "IkeSaDeleted",
    "IkeSaEstablished",
    "IkeSaId",
    "IkeSaRekeyed",
    "IkeState",
    "IntegId",
    "IpsecMode",
    "KeyCredential",
    "PeerTrust",
    "PrfId",
    "PskCredential",
    "Timers",
    "TrafficSelector",
    "public_key_authenticator",
]
