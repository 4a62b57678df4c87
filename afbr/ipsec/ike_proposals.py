"""Transforms, proposals and proposal matching for IKE and ESP SAs (RFC 7296 §3.3, §2.7).

The algorithms are the ones RFC 8247 (IKE) and RFC 8221 (ESP) require or recommend that afbr
supports: AES-GCM-16 (128/256), AES-CBC + HMAC-SHA2-256-128, ESP NULL + HMAC-SHA2-256-128
(RFC 5619 §4.4.2), PRF HMAC-SHA2-256/512, DH groups 19, 31 and 14.  ESN is never offered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from afbr.ipsec.ike_constants import NotifyType, ProtocolId
from afbr.ipsec.ike_errors import IkeProposalError


class TransformType(IntEnum):
    ENCR = 1
    PRF = 2
    INTEG = 3
    DH = 4
    ESN = 5


class EncrId(IntEnum):
    ENCR_NULL = 11
    ENCR_AES_CBC = 12
    ENCR_AES_GCM_16 = 20


class PrfId(IntEnum):
    PRF_HMAC_SHA2_256 = 5
    PRF_HMAC_SHA2_384 = 6
    PRF_HMAC_SHA2_512 = 7


class IntegId(IntEnum):
    NONE = 0
    AUTH_HMAC_SHA2_256_128 = 12
    AUTH_HMAC_SHA2_512_256 = 14


class DhGroup(IntEnum):
    NONE = 0
    MODP_2048 = 14
    ECP_256 = 19
    CURVE25519 = 31


class EsnId(IntEnum):
    NO_ESN = 0
    ESN = 1


KEY_LENGTH_ATTRIBUTE = 14  # RFC 7296 §3.3.5
AEAD_ENCRYPTION = frozenset({EncrId.ENCR_AES_GCM_16})
SALT_LENGTH = {EncrId.ENCR_AES_GCM_16: 4}  # RFC 4106 §8.1 / RFC 5282 §7.1
INTEG_KEY_LENGTH = {IntegId.AUTH_HMAC_SHA2_256_128: 32, IntegId.AUTH_HMAC_SHA2_512_256: 64}
INTEG_ICV_LENGTH = {IntegId.AUTH_HMAC_SHA2_256_128: 16, IntegId.AUTH_HMAC_SHA2_512_256: 32}


@dataclass(frozen=True, slots=True)
class Transform:
    """One transform substructure (RFC 7296 §3.3.2); key_length in bits, when it has one."""

    transform_type: int
    transform_id: int
    key_length: int | None = None


@dataclass(frozen=True, slots=True)
class Proposal:
    """One proposal substructure (RFC 7296 §3.3.1)."""

    number: int
    protocol: int
    spi: bytes
    transforms: tuple[Transform, ...]


@dataclass(frozen=True, slots=True)
class AlgorithmSuite:
    """One chosen algorithm of each type: what a proposal settles on."""

    encryption: EncrId
    key_length: int  # bits, 0 for NULL
    integrity: IntegId = IntegId.NONE
    prf: PrfId | None = None  # IKE only
    dh_group: DhGroup = DhGroup.NONE

    def transforms(self, protocol: ProtocolId) -> tuple[Transform, ...]:
        items = [Transform(TransformType.ENCR, self.encryption, self.key_length or None)]
        if self.prf is not None:
            items.append(Transform(TransformType.PRF, self.prf))
        if self.integrity != IntegId.NONE:
            items.append(Transform(TransformType.INTEG, self.integrity))
        if self.dh_group != DhGroup.NONE:
            items.append(Transform(TransformType.DH, self.dh_group))
        if protocol == ProtocolId.ESP:
            items.append(Transform(TransformType.ESN, EsnId.NO_ESN))  # RFC 7296 §3.3.2: no ESN
        return tuple(items)

    def proposal(self, number: int, protocol: ProtocolId, spi: bytes) -> Proposal:
        return Proposal(number, protocol, spi, self.transforms(protocol))

    def with_dh(self, group: DhGroup) -> AlgorithmSuite:
        return AlgorithmSuite(self.encryption, self.key_length, self.integrity, self.prf, group)

    @property
    def is_aead(self) -> bool:
        return self.encryption in AEAD_ENCRYPTION

    @property
    def encryption_key_bytes(self) -> int:
        """Keying material for encryption, salt included (RFC 5282 §7.1, RFC 4106 §8.1)."""
        return self.key_length // 8 + SALT_LENGTH.get(self.encryption, 0)

    @property
    def integrity_key_bytes(self) -> int:
        return INTEG_KEY_LENGTH.get(self.integrity, 0)

    def describe(self) -> str:
        parts = [f"{self.encryption.name}_{self.key_length}" if self.key_length else "NULL"]
        if self.integrity != IntegId.NONE:
            parts.append(self.integrity.name)
        if self.prf is not None:
            parts.append(self.prf.name)
        if self.dh_group != DhGroup.NONE:
            parts.append(self.dh_group.name)
        return "/".join(parts)


GCM128 = (EncrId.ENCR_AES_GCM_16, 128)
IKE_AES_GCM_128 = AlgorithmSuite(*GCM128, prf=PrfId.PRF_HMAC_SHA2_256, dh_group=DhGroup.ECP_256)
IKE_AES_GCM_256 = AlgorithmSuite(
    EncrId.ENCR_AES_GCM_16, 256, prf=PrfId.PRF_HMAC_SHA2_512, dh_group=DhGroup.CURVE25519
)
IKE_AES_CBC_SHA256 = AlgorithmSuite(
    EncrId.ENCR_AES_CBC,
    256,
    IntegId.AUTH_HMAC_SHA2_256_128,
    PrfId.PRF_HMAC_SHA2_256,
    DhGroup.MODP_2048,
)
ESP_AES_GCM_128 = AlgorithmSuite(*GCM128)
ESP_AES_GCM_256 = AlgorithmSuite(EncrId.ENCR_AES_GCM_16, 256)
ESP_AES_CBC_SHA256 = AlgorithmSuite(EncrId.ENCR_AES_CBC, 256, IntegId.AUTH_HMAC_SHA2_256_128)
ESP_NULL_SHA256 = AlgorithmSuite(EncrId.ENCR_NULL, 0, IntegId.AUTH_HMAC_SHA2_256_128)

DEFAULT_IKE_PROPOSALS = (IKE_AES_GCM_128, IKE_AES_GCM_256, IKE_AES_CBC_SHA256)
# RFC 5619 §4.4.2: integrity-only ESP is always offered
DEFAULT_ESP_PROPOSALS = (ESP_AES_GCM_128, ESP_AES_GCM_256, ESP_AES_CBC_SHA256, ESP_NULL_SHA256)


def build_proposals(
    suites: Sequence[AlgorithmSuite], protocol: ProtocolId, spi: bytes
) -> tuple[Proposal, ...]:
    return tuple(suite.proposal(i + 1, protocol, spi) for i, suite in enumerate(suites))


def _suite_offered(
    suite: AlgorithmSuite, proposal: Proposal, protocol: ProtocolId, ignore_dh: bool
) -> bool:
    """True when every transform `suite` needs is among those `proposal` offers and the
    proposal asks for nothing more (RFC 7296 §3.3.6: all types must match)."""
    if any(t.transform_type not in set(TransformType) for t in proposal.transforms):
        return False  # RFC 7296 §3.3.6: unknown transform type -> reject that proposal
    offered = set(proposal.transforms)
    needed = suite.transforms(protocol)
    types_needed = {t.transform_type for t in needed}
    extra = {t.transform_type for t in proposal.transforms} - types_needed
    if TransformType.DH in extra and (
        ignore_dh or Transform(TransformType.DH, DhGroup.NONE) in offered
    ):
        extra.discard(TransformType.DH)  # RFC 7296 §1.2: DH in an IKE_AUTH SA is ignored
    if TransformType.INTEG in extra and (
        suite.is_aead and Transform(TransformType.INTEG, IntegId.NONE) in offered
    ):
        extra.discard(TransformType.INTEG)
    return not extra and all(t in offered for t in needed)


def select_proposal(
    received: Iterable[Proposal],
    acceptable: Sequence[AlgorithmSuite],
    protocol: ProtocolId,
    dh_group: DhGroup | None = None,
) -> tuple[Proposal, AlgorithmSuite]:
    """The responder's choice (RFC 7296 §2.7): the first received proposal we accept.

    Returns the one-transform-per-type proposal to send back and the chosen suite.  For ESP,
    `dh_group` is the group of the KE payload of a CREATE_CHILD_SA (PFS) or None without KE;
    for IKE the group comes with the suite.
    """
    for proposal in received:
        if proposal.protocol != protocol:
            continue
        for suite in acceptable:
            candidate = suite
            if protocol == ProtocolId.ESP and dh_group is not None:
                candidate = suite.with_dh(dh_group)
            ignore_dh = protocol == ProtocolId.ESP and dh_group is None
            if _suite_offered(candidate, proposal, protocol, ignore_dh):
                chosen = candidate.proposal(proposal.number, protocol, proposal.spi)
                return chosen, candidate
    raise IkeProposalError("no acceptable proposal", NotifyType.NO_PROPOSAL_CHOSEN)


def suite_of_reply(
    reply: Sequence[Proposal], offered: Sequence[AlgorithmSuite], protocol: ProtocolId
) -> tuple[Proposal, AlgorithmSuite]:
    """The initiator's check of the responder's answer: exactly one proposal, one we offered."""
    if len(reply) != 1:
        raise IkeProposalError(f"reply carries {len(reply)} proposals", NotifyType.INVALID_SYNTAX)
    proposal = reply[0]
    types = [t.transform_type for t in proposal.transforms]
    if len(types) != len(set(types)) or proposal.protocol != protocol:
        raise IkeProposalError("reply is not one transform per type", NotifyType.INVALID_SYNTAX)
    chosen = {t for t in proposal.transforms if t != Transform(TransformType.DH, DhGroup.NONE)}
    for suite in offered:
        candidates = [suite]
        if protocol == ProtocolId.ESP:  # PFS was offered optional: with our group, or without
            candidates = [suite, suite.with_dh(DhGroup.NONE)]
        for candidate in candidates:
            if set(candidate.transforms(protocol)) == chosen:
                return proposal, candidate
    raise IkeProposalError("reply chose a proposal we did not offer", NotifyType.NO_PROPOSAL_CHOSEN)
