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
- Events (`ike_events`, each names its IKE SA by `IkeSaId`): `IkeSaEstablished`,
  `IkeSaRekeyed` (successor SA; the dispatcher routes it), `IkeSaDeleted`,
  `ChildSaEstablished` / `ChildSaRekeyed` (carry `ChildSaParams`: per-direction SPI, keys and
  addresses, algorithms, mode, selectors, UDP encapsulation ports, lifetimes; a rekey comes
  before the old pair's `ChildSaDeleted`: make-before-break), `ChildSaDeleted`,
  `ChildSaFailed`, `AuthenticationFailed` (nothing installed, RFC 5619 §4.4.2).
- Algorithm suites (`ike_proposals`): `IKE_AES_GCM_128` (ECP-256), `IKE_AES_GCM_256`
  (Curve25519, PRF-SHA512), `IKE_AES_CBC_SHA256` (MODP-2048); `ESP_AES_GCM_128`,
  `ESP_AES_GCM_256`, `ESP_AES_CBC_SHA256`, `ESP_NULL_SHA256` (always offered by default,
  RFC 5619 §4.4.2).  No ESN.  CHILD rekeys offer PFS with the IKE SA's group, optional unless
  `IkeConfig.child_pfs_group` makes it mandatory, and never downgrade encryption to NULL.

Modules: ike_buffer / ike_payloads / ike_message (codec), ike_proposals, ike_dh, ike_crypto
(prf+, keys, SK payloads), ike_auth, ike_sa (state machine; handlers in ike_setup, ike_rekey,
ike_informational; timers in ike_timers), ike_dispatcher.
"""

from __future__ import annotations

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
from afbr.ipsec.ike_sa import Datagram, IkeSa, IkeState

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
