"""What goes wrong in a Tunnel Encapsulation attribute, and what the RFCs say to do about it.

RFC 9012 §13 refines RFC 7606 for attribute 23.  Each problem the decoder finds carries the
handling those sections prescribe, so the caller (the softwire RIB) applies it without
re-deriving it:

- the attribute cannot be parsed (a TLV or sub-TLV runs past its container, an incomplete
  header, a TLV whose last sub-TLV does not end where the TLV ends), it has no valid TLV, or
  its Transitive flag is clear: **treat-as-withdraw** (RFC 9012 §13, RFC 7606 §2).  Decoding
  fails with :class:`TunnelEncapError`.
- a Tunnel Egress Endpoint sub-TLV is malformed (RFC 9012 §3.1): **discard the TLV** — ignore
  that tunnel and remove it before the route is passed on (RFC 9012 §13).
- any other recognized sub-TLV is malformed, or repeats a sub-TLV that may occur only once:
  **ignore the sub-TLV** — process the TLV as if it were absent, yet keep it when the route is
  passed on (RFC 9012 §13).

The last two do not fail decoding: they come back as :class:`DecodeWarning` values on the
decoded attribute.  RFC 9012 prescribes no "attribute discard" and no session reset for this
attribute, so neither appears here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ErrorHandling(enum.StrEnum):
    """The handling RFC 9012 §13 / RFC 7606 prescribes for a malformation."""

    TREAT_AS_WITHDRAW = "treat-as-withdraw"  # RFC 7606 §2, RFC 9012 §13
    DISCARD_TLV = "discard-tlv"  # RFC 9012 §13: ignore the TLV and remove it before propagating
    IGNORE_SUB_TLV = "ignore-sub-tlv"  # RFC 9012 §13: as if unrecognized; keep it when propagating


RFC_9012_13 = "RFC 9012 §13"


class TunnelEncapError(Exception):
    """A Tunnel Encapsulation attribute that cannot be used at all.

    `offset` counts octets from the start of the attribute value (after the path-attribute
    header); `reason` says what is wrong there; `handling` is what the RFCs prescribe and
    `reference` the section that prescribes it.
    """

    def __init__(
        self,
        offset: int,
        reason: str,
        handling: ErrorHandling = ErrorHandling.TREAT_AS_WITHDRAW,
        reference: str = RFC_9012_13,
    ) -> None:
        self.offset = offset
        self.reason = reason
        self.handling = handling
        self.reference = reference
        super().__init__(f"offset {offset}: {reason} ({reference}: {handling})")


@dataclass(frozen=True, slots=True)
class DecodeWarning:
    """A part of the attribute that decoding set aside while the rest stays usable.

    `tunnel_index` is the position of the Tunnel TLV in the attribute (0-based);
    `sub_tlv_index` the position of the sub-TLV within it, or None when the whole TLV is meant.
    """

    offset: int
    reason: str
    handling: ErrorHandling
    tunnel_index: int
    sub_tlv_index: int | None = None
    reference: str = RFC_9012_13

    def __str__(self) -> str:
        return f"offset {self.offset}: {self.reason} ({self.reference}: {self.handling})"
