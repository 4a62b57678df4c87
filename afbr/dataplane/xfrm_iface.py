"""The xfrm interface of one remote AFBR (rtnetlink link kind `xfrm`, through netlink.py).

Route-based IPsec: packets routed into the interface are matched against the policies that
carry its if_id (xfrm_policy.route_based_policies); packets decrypted by an SA with that if_id
come out of it.  Interfaces are named `afx<if_id low 16 bits as hex>` so afbr finds its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from afbr.dataplane.netlink import IPRoute, NetlinkError
from afbr.dataplane.xfrm import IF_ID_MAX, IF_ID_MIN

IFNAME_PREFIX = "afx"


@dataclass(frozen=True)
class XfrmInterface:
    name: str
    index: int
    if_id: int


def interface_name(if_id: int) -> str:
    return f"{IFNAME_PREFIX}{if_id & 0xFFFF:04x}"


def _ipr(netns: str | None) -> IPRoute:
    if netns is None:
        return IPRoute()
    return IPRoute(netns=netns, flags=os.O_RDONLY)  # never create a namespace by accident


def create_xfrm_interface(
    if_id: int, *, underlying: str | None = None, netns: str | None = None, mtu: int = 1400
) -> XfrmInterface:
    """Create (or adopt, if it exists with this if_id) the interface and bring it up."""
    if not IF_ID_MIN <= if_id <= IF_ID_MAX:
        raise ValueError(f"if_id {if_id:#x} is outside afbr's range")
    name = interface_name(if_id)
    with _ipr(netns) as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            extra: dict[str, int] = {"xfrm_if_id": if_id}
            if underlying is not None:
                extra["xfrm_link"] = ipr.link_lookup(ifname=underlying)[0]
            ipr.link("add", ifname=name, kind="xfrm", mtu=mtu, **extra)
            found = ipr.link_lookup(ifname=name)
        index = int(found[0])
        ipr.link("set", index=index, state="up")
    return XfrmInterface(name, index, if_id)


def delete_xfrm_interface(if_id: int, *, netns: str | None = None) -> bool:
    """Remove the interface; True if it existed."""
    with _ipr(netns) as ipr:
        found = ipr.link_lookup(ifname=interface_name(if_id))
        if not found:
            return False
        try:
            ipr.link("del", index=found[0])
        except NetlinkError:
            return False
    return True
