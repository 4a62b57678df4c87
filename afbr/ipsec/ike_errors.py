"""IKEv2 errors; each carries the notify type RFC 7296 §3.10.1 says to send for it."""

from __future__ import annotations

from afbr.ipsec.ike_constants import NotifyType


class IkeError(Exception):
    """Base of every error the IKEv2 core raises; `notify` is the on-wire code to answer with."""

    notify: NotifyType = NotifyType.INVALID_SYNTAX

    def __init__(self, message: str, notify: NotifyType | None = None, data: bytes = b"") -> None:
        super().__init__(message)
        if notify is not None:
            self.notify = notify
        self.data = data  # notification data to send with it (INVALID_KE_PAYLOAD: the group)


class IkeDecodeError(IkeError):
    """Malformed bytes: truncated, overlong, inconsistent lengths (RFC 7296 §3.10.1)."""

    notify = NotifyType.INVALID_SYNTAX


class IkeIntegrityError(IkeError):
    """An SK payload whose ICV or checksum does not verify: dropped silently (RFC 7296 §2.21.2)."""


class IkeProposalError(IkeError):
    """No acceptable proposal (RFC 7296 §3.10.1 NO_PROPOSAL_CHOSEN)."""

    notify = NotifyType.NO_PROPOSAL_CHOSEN


class IkeAuthenticationError(IkeError):
    """AUTH payload, peer identity, peer key or RFC 5566 authenticator did not check out."""

    notify = NotifyType.AUTHENTICATION_FAILED


class IkeTruncatedError(IkeDecodeError):
    """Shorter than a length field says."""


class IkeOversizedError(IkeDecodeError):
    """Longer than any IKE message afbr accepts."""
