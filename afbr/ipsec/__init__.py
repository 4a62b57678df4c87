"""IKEv2 agent: afbr's own sans-IO IKEv2 core (RFC 7296) on `cryptography`.

Public API (everything re-exported here):

- `IkeDispatcher(config_for, random)`: the entry point.  Routes UDP datagrams to IKE SAs by
  SPI, answers IKE_SA_INIT as responder (with cookies once `cookie_threshold` half-open SAs
  pile up, dropping beyond `half_open_limit`), counts bad input (`counters.totals`).
  `connect(config, local_addr, remote_addr, now)` starts an initiator and returns its `IkeSa`.
  Drive it like aioquic: `receive_datagram(data, addr, now, local_addr)`, `handle_timer(now)`,
  `get_timer()`, `datagrams_to_send(now)` -> [`Datagram(data, source, destination)`]
  (send `data` from `source` to `destination`; the non-ESP marker is already in it),
  `next_event()` -> events below.  After calling an `IkeSa` command directly, call
  `dispatcher.after_command(sa, now)`.
- `IkeSa`: one IKE SA.  Commands: `create_child`, `rekey_child(inbound_spi)`, `rekey()`,
  `delete_child(inbound_spi)`, `delete()`, `check_liveness()`, each taking `now`.
- `IkeConfig` (+ `Identity`, `Timers`, `IpsecMode`), credentials `PskCredential` (pairwise;
  `group=True` warns, RFC 5619 §3.5.2) and `KeyCredential` (ECDSA P-256, Ed25519, RSA; raw key
  or self-signed certificate), `PeerTrust` (peer PSK, pinned key, RFC 5566 `authenticator`
  from BGP; `public_key_authenticator(key)` computes the value to advertise).
- Events (`ike_events`): `IkeSaEstablished`, `IkeSaRekeyed`, `IkeSaDeleted`,
  `ChildSaEstablished` / `ChildSaRekeyed` (carry `ChildSaParams`: SPIs, keys per direction,
  algorithms, mode, selectors, UDP encapsulation ports, lifetimes), `ChildSaDeleted`,
  `ChildSaFailed`, `AuthenticationFailed`.
- Algorithm suites (`ike_proposals`): `IKE_AES_GCM_128`, `IKE_AES_GCM_256`,
  `IKE_AES_CBC_SHA256`, `ESP_AES_GCM_128`, `ESP_AES_GCM_256`, `ESP_AES_CBC_SHA256`,
  `ESP_NULL_SHA256`.
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
