"""The smallest set of prefixes covering the same addresses (for the decapsulation filter).

An AFBR's advertised client prefixes are often adjacent (a site's /25s, /24s): the filter that
checks inner sources against them (RFC 5619 §3.3) needs the addresses, not the prefixes, and
nftables loads a few aggregates much faster than 100k entries.  Works on route keys (IP version,
network address as an int, prefix length), which the encap manager computes anyway.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from afbr.encap.model import IPNetwork

BITS = {4: 32, 6: 128}


def aggregate(keys: Iterable[tuple[int, int, int]]) -> tuple[IPNetwork, ...]:
    """The minimal CIDR cover of the union of the prefixes `keys`, IPv4 first, in order."""
    by_version: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
    for version, value, length in keys:
        by_version[version].append((value, value + (1 << (BITS[version] - length))))
    out: list[IPNetwork] = []
    for version, intervals in by_version.items():
        for start, end in _merged(sorted(intervals)):
            out.extend(_cidrs(version, start, end))
    return tuple(out)


def _merged(intervals: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Overlapping or touching [start, end) intervals joined (input sorted by start)."""
    if not intervals:
        return
    start, end = intervals[0]
    for next_start, next_end in intervals[1:]:
        if next_start <= end:
            end = max(end, next_end)
        else:
            yield start, end
            start, end = next_start, next_end
    yield start, end


def _cidrs(version: int, start: int, end: int) -> Iterator[IPNetwork]:
    """[start, end) as the fewest aligned blocks, largest first where alignment allows."""
    bits = BITS[version]
    network = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    while start < end:
        size = (start & -start).bit_length() - 1 if start else bits  # the alignment of start
        while 1 << size > end - start:
            size -= 1
        yield network((start, bits - size))
        start += 1 << size
