"""`afbr decode`: decode protocol octets an operator pasted, print them as JSON.

A thin adapter over the codecs: parse the hex, call the decoder, print; the codec does the
checking and names the offset and the RFC handling of anything malformed.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from collections.abc import Sequence

from afbr.bgp.tunnel_encap import (
    TunnelEncapError,
    check_tunnel_encap_flags,
    decode_tunnel_encap,
    tunnel_encap_to_json,
)

DECODE_DESCRIPTION = """\
Decode protocol octets copied from a packet capture, a BGP speaker's log or ExaBGP's JSON,
and print what they mean as JSON.  Nothing is sent or changed: the command only reads its
arguments (or standard input).
"""

TUNNEL_ENCAP_DESCRIPTION = """\
Decode the value of a BGP Tunnel Encapsulation attribute (path attribute 23, RFC 9012; the
RFC 5512 forms and the RFC 5566 IPsec tunnel types and IPsec Tunnel Authenticator are read
too) and print it as JSON: one object per Tunnel TLV in the order the originator prefers,
each with its type, name and sub-TLVs.  Unknown tunnel types and sub-TLVs are shown as hex.

HEX is the attribute value only, without the path-attribute flags, type and length octets:
the part ExaBGP shows after "attribute-0x17-0x..": "0x...".  It may start with 0x and may
be split by spaces or over several arguments; "-" reads it from standard input.

A sub-TLV that is malformed but leaves the rest usable is shown with "raw": true and listed
under "warnings" with the handling RFC 9012 section 13 prescribes: "ignore-sub-tlv" (process
the tunnel as if the sub-TLV were absent, keep it when propagating) or "discard-tlv" (ignore
the whole tunnel and remove it before propagating; the tunnel shows "discarded": true).
Each warning is also printed to standard error.
"""

TUNNEL_ENCAP_EPILOG = """\
output:
  {"tunnels": [{"type": 2, "name": "gre", "discarded": false,
                "sub_tlvs": [{"type": 1, "name": "encapsulation", "gre_key": 7}, ...]}],
   "warnings": [{"offset": ..., "reason": ..., "handling": ..., "reference": ...}]}

exit status:
  0  decoded; the attribute is usable (warnings, if any, went to standard error)
  2  bad usage, input that is not hex, or an attribute that cannot be used; one line on
     standard error names the offset (octets from the start of the value), the problem and
     the handling; for 0002000a01040000000702090800 (a sub-TLV claiming 9 octets) it is
       afbr: tunnel-encap: offset 11: sub-TLV length 9 runs past the TLV end (2 left) \
       (RFC 9012 §13: treat-as-withdraw)
     (one line, folded here)

examples:
  afbr decode tunnel-encap 0002000a01040000000702020800
      a GRE tunnel with key 7 carrying IPv4
  afbr decode tunnel-encap --flags 0xe0 "0x0007 0004 0202 86dd"
      an IP-in-IP tunnel carrying IPv6, with the flags ExaBGP reported checked too
  afbr decode tunnel-encap --require-egress-endpoint 0002000a01040000000702020800
      the same GRE tunnel judged as in an IPv4/IPv6 unicast UPDATE: without a Tunnel Egress
      Endpoint sub-TLV it is discarded, so the attribute cannot be used (exit status 2)
"""

PROGRAM = "afbr: tunnel-encap"


class HexInputError(Exception):
    """Operator input that is not an even number of hex digits."""


def parse_hex(words: Sequence[str]) -> bytes:
    """Octets from hex words that may carry a 0x prefix and be split by whitespace."""
    pieces = " ".join(words).split()
    digits = "".join(piece[2:] if piece[:2].lower() == "0x" else piece for piece in pieces)
    bad = next((char for char in digits if char not in string.hexdigits), None)
    if bad is not None:
        raise HexInputError(f"not hexadecimal: {bad!r} in the input")
    if len(digits) % 2:
        raise HexInputError(f"odd number of hex digits ({len(digits)})")
    if not digits:
        raise HexInputError("no hex digits given")
    return bytes.fromhex(digits)


def parse_flags(text: str) -> int:
    """An attribute-flags octet written as 0xNN or a decimal number (for argparse)."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 0xFF:
        raise argparse.ArgumentTypeError(f"flags are one octet, not {text}")
    return value


def run_tunnel_encap(args: argparse.Namespace) -> int:
    words: list[str] = args.hex
    if words == ["-"]:
        words = [sys.stdin.read()]
    try:
        data = parse_hex(words)
        if args.flags is not None:
            check_tunnel_encap_flags(args.flags)
        attribute = decode_tunnel_encap(data, require_egress_endpoint=args.require_egress_endpoint)
    except (HexInputError, TunnelEncapError) as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        return 2
    for warning in attribute.warnings:
        print(f"{PROGRAM}: warning: {warning}", file=sys.stderr)
    print(json.dumps(tunnel_encap_to_json(attribute), indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `decode` and its `tunnel-encap` subcommand to the afbr command line."""
    decode = subparsers.add_parser(
        "decode",
        help="decode protocol octets (e.g. a Tunnel Encapsulation attribute) to JSON",
        description=DECODE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def missing_what(_: argparse.Namespace) -> int:
        decode.print_help(sys.stderr)
        return 2

    decode.set_defaults(func=missing_what)
    kinds = decode.add_subparsers(title="what to decode", metavar="KIND")
    tunnel_encap = kinds.add_parser(
        "tunnel-encap",
        help="a BGP Tunnel Encapsulation attribute value (RFC 9012)",
        description=TUNNEL_ENCAP_DESCRIPTION,
        epilog=TUNNEL_ENCAP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tunnel_encap.add_argument(
        "hex",
        nargs="+",
        metavar="HEX",
        help='the attribute value in hex (0x and spaces allowed); "-" reads standard input',
    )
    tunnel_encap.add_argument(
        "--flags",
        type=parse_flags,
        metavar="FLAGS",
        help="also check the path-attribute flags octet (e.g. 0xc0): Optional and Transitive "
        "must be set (RFC 7606 §3, RFC 9012 §13)",
    )
    tunnel_encap.add_argument(
        "--require-egress-endpoint",
        action="store_true",
        help="discard Tunnel TLVs without exactly one Tunnel Egress Endpoint sub-TLV, as "
        "RFC 9012 §13 prescribes for unicast UPDATEs (default: accept them, as RFC 5512 "
        "speakers send them and mean the BGP next hop)",
    )
    tunnel_encap.set_defaults(func=run_tunnel_encap)
