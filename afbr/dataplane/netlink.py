"""The one module of afbr that imports pyroute2.

Everything else in afbr reaches the kernel's netlink through the names re-exported here (or
through typed functions defined here), so a pyroute2 upgrade touches one file.  NETLINK_XFRM
messages are not in pyroute2's API: afbr.dataplane.xfrm defines them on the base classes below.
"""

from __future__ import annotations

from pyroute2 import IPRoute, NetlinkError, NetNS
from pyroute2.netlink import NETLINK_XFRM, nla, nlmsg
from pyroute2.netlink.nlsocket import NetlinkSocket

__all__ = ["NETLINK_XFRM", "IPRoute", "NetNS", "NetlinkError", "NetlinkSocket", "nla", "nlmsg"]
