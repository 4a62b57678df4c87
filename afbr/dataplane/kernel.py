"""The kernel adapter of the softwire dataplane: read afbr's objects, apply reconcile actions.

Links and routes go over one NETLINK_ROUTE socket, L2TP over generic netlink, all pipelined
(see rtnl_socket).  Applying is idempotent: "exists" on create and "not found" on delete are
races with an earlier run, not errors.  A create that finds the name taken by a device that is
not afbr's is reported and that device is left alone.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from afbr.dataplane import l2tp_wire
from afbr.dataplane.kernel_plan import (
    ALIAS_PREFIX,
    L2TP_ETH_ADDRESS,
    LinkPlan,
    is_afbr_l2tp_tunnel,
)
from afbr.dataplane.reconcile import (
    Action,
    ConfigureLink,
    CreateLink,
    DeleteL2tpTunnel,
    DeleteLink,
    DeleteRoutes,
    ModifyLink,
    ObservedState,
    ReplaceRoutes,
)
from afbr.dataplane.rtnl_socket import NETLINK_GENERIC, NetlinkPipe
from afbr.dataplane.rtnl_wire import (
    CTRL_ATTR_FAMILY_ID,
    GENL_ID_CTRL,
    GENLMSG,
    NLM_F_CREATE,
    NLM_F_REPLACE,
    RT_TABLE_MAIN,
    RTM_DELROUTE,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    LinkInfo,
    RouteKey,
    change_link,
    del_link,
    dump_links,
    dump_routes,
    get_family,
    iter_messages,
    new_link,
    parse_attrs,
    parse_link,
    parse_routes,
    route_message,
    set_link,
    set_link_no_ipv6_addresses,
)
from afbr.encap.model import NAME_PREFIX

GONE = (errno.ENODEV, errno.ENOENT, errno.ESRCH)
ROUTE_DUMP_SEQ = 0x7FFF0000  # far above what a daemon's requests reach


@dataclass
class ApplyReport:
    """What applying did: failures as (what, errno) pairs."""

    errors: list[tuple[str, int]] = field(default_factory=list)
    conflicts: set[str] = field(default_factory=set)  # names held by devices not afbr's


class KernelSoftwires:
    """afbr's links, L2TP tunnels and routes in one network namespace."""

    def __init__(self, netns: str | None = None, table: int = RT_TABLE_MAIN) -> None:
        self.netns = netns
        self.table = table
        self.rtnl = NetlinkPipe(socket.NETLINK_ROUTE, netns)
        self._genl: NetlinkPipe | None = None
        self._l2tp_family: int | None = None
        self._deleted_l2tp: set[int] = set()
        self._parsed_routes: tuple[bytes, dict[RouteKey, int]] | None = None

    def close(self) -> None:
        self.rtnl.close()
        if self._genl is not None:
            self._genl.close()

    # --- observe ---------------------------------------------------------------------------

    def links(self) -> list[LinkInfo]:
        found: list[LinkInfo] = []
        for buffer in self.rtnl.dump(dump_links):
            for msg_type, _flags, _seq, payload in iter_messages(buffer):
                if msg_type == RTM_NEWLINK:
                    found.append(parse_link(payload))
        return found

    def observe(self) -> ObservedState:
        owned = {
            link.name: link
            for link in self.links()
            if link.name.startswith(NAME_PREFIX) and link.alias.startswith(ALIAS_PREFIX)
        }
        tunnels = frozenset(t for t in self._l2tp_tunnel_ids() if is_afbr_l2tp_tunnel(t))
        return ObservedState(owned, tunnels, self._afbr_routes())

    def _afbr_routes(self) -> dict[RouteKey, int]:
        """afbr's routes.  The dumps use fixed sequence numbers, so an unchanged table gives
        the same bytes: then the last parse is reused (100k routes: the dump is cheap, the
        parse is not)."""
        buffers: list[bytes] = []
        for version in (4, 6):
            build = partial(dump_routes, version=version, table=self.table)
            buffers += self.rtnl.dump(build, seq=ROUTE_DUMP_SEQ + version)
        digest = hashlib.sha256()
        for buffer in buffers:
            digest.update(buffer)
        if self._parsed_routes is not None and self._parsed_routes[0] == digest.digest():
            return dict(self._parsed_routes[1])
        routes: dict[RouteKey, int] = {}
        for buffer in buffers:
            parse_routes(buffer, routes, self.table)
        self._parsed_routes = (digest.digest(), routes)
        return dict(routes)

    def _l2tp(self) -> tuple[NetlinkPipe, int] | None:
        if self._genl is None:
            self._genl = NetlinkPipe(NETLINK_GENERIC, self.netns)
            try:
                buffers = self._genl.dump(lambda s: get_family(s, l2tp_wire.L2TP_GENL_NAME))
            except OSError:
                return None  # no L2TP family in this kernel
            for buffer in buffers:
                for msg_type, _flags, _seq, payload in iter_messages(buffer):
                    if msg_type == GENL_ID_CTRL:  # the family description
                        attrs = parse_attrs(payload[GENLMSG.size :])
                        if CTRL_ATTR_FAMILY_ID in attrs:
                            self._l2tp_family = int.from_bytes(attrs[CTRL_ATTR_FAMILY_ID], "little")
        if self._l2tp_family is None:
            return None
        return self._genl, self._l2tp_family

    def _l2tp_tunnel_ids(self) -> list[int]:
        l2tp = self._l2tp()
        if l2tp is None:
            return []  # no L2TP in this kernel: afbr cannot have made any
        sock, family = l2tp
        buffers = sock.dump(lambda seq: l2tp_wire.tunnel_dump(family, seq))
        return [
            _u32(attrs[l2tp_wire.L2TP_ATTR_CONN_ID])
            for attrs in _genl_items(buffers, family)
            if l2tp_wire.L2TP_ATTR_CONN_ID in attrs
        ]

    # --- apply -----------------------------------------------------------------------------

    def apply(self, actions: Sequence[Action]) -> ApplyReport:
        report = ApplyReport()
        for action in actions:
            if isinstance(action, DeleteLink):
                self._expect(report, f"delete {action.name}", GONE, del_link, action.index)
            elif isinstance(action, DeleteL2tpTunnel):
                self._delete_l2tp(report, action.tunnel_id)
            elif isinstance(action, CreateLink):
                if action.link.l2tp is not None and self._deleted_l2tp:
                    self._wait_l2tp_gone()
                self._create(report, action.link, action.device)
            elif isinstance(action, ModifyLink):
                self._modify(report, action)
            elif isinstance(action, ConfigureLink):
                self._configure(report, action)
            elif isinstance(action, DeleteRoutes):
                self._routes(report, RTM_DELROUTE, 0, [(k, oif) for k, oif in action.routes])
            elif isinstance(action, ReplaceRoutes):
                index = {link.name: link.index for link in self.links()}
                routes = [(key, index.get(name, 0)) for key, name in action.routes]
                self._routes(report, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, routes)
        return report

    def _expect(
        self,
        report: ApplyReport,
        what: str,
        allowed: Sequence[int],
        build: Callable[..., bytes],
        *args: object,
    ) -> int:
        code = self.rtnl.request(lambda seq: build(seq, *args))
        if code and code not in allowed:
            report.errors.append((what, code))
        return code

    def _modify(self, report: ApplyReport, action: ModifyLink) -> None:
        link = action.link
        code = self.rtnl.request(
            lambda seq: change_link(
                seq, action.index, link.kind, link.info_data, mtu=link.mtu, alias=link.alias
            )
        )
        if code:
            report.errors.append((f"change {action.device} for {link.name}", code))
            report.conflicts.add(action.device)

    def _create(self, report: ApplyReport, link: LinkPlan, device: str) -> None:
        if link.l2tp is None:
            code = self._expect(
                report, f"create {device}", (), new_link, device, link.kind,
                link.info_data, link.mtu,
            )  # fmt: skip
            if code:
                report.conflicts.add(device)
            return
        l2tp = self._l2tp()
        if l2tp is None:
            report.errors.append((f"create {device}: no L2TP in this kernel", errno.ENOENT))
            report.conflicts.add(device)
            return
        sock, family = l2tp
        plan = link.l2tp
        code = sock.request(lambda seq: l2tp_wire.tunnel_create(family, seq, plan))
        if code and code != errno.EEXIST:
            report.errors.append((f"create L2TP tunnel {device}", code))
        code = sock.request(lambda seq: l2tp_wire.session_create(family, seq, plan, device))
        if code:
            report.errors.append((f"create L2TP session {device}", code))
            report.conflicts.add(device)

    def _delete_l2tp(self, report: ApplyReport, tunnel_id: int) -> None:
        """Delete an L2TP tunnel: its sessions first (synchronous in the kernel: the session id
        and the l2tpeth device are free when it returns), then the tunnel (whose teardown the
        kernel finishes later, in a work queue)."""
        l2tp = self._l2tp()
        if l2tp is None:
            return
        sock, family = l2tp
        for session_id in self._l2tp_sessions(tunnel_id):
            build = partial(
                l2tp_wire.session_delete, family, tunnel_id=tunnel_id, session_id=session_id
            )
            code = sock.request(build)
            if code and code not in GONE:
                report.errors.append((f"delete L2TP session {tunnel_id:#x}/{session_id}", code))
        code = sock.request(lambda seq: l2tp_wire.tunnel_delete(family, seq, tunnel_id))
        if code and code not in GONE:
            report.errors.append((f"delete L2TP tunnel {tunnel_id:#x}", code))
        self._deleted_l2tp.add(tunnel_id)

    def _l2tp_sessions(self, tunnel_id: int) -> list[int]:
        l2tp = self._l2tp()
        if l2tp is None:
            return []
        sock, family = l2tp
        found: list[int] = []
        for attrs in _genl_items(
            sock.dump(lambda seq: l2tp_wire.session_dump(family, seq)), family
        ):
            conn = attrs.get(l2tp_wire.L2TP_ATTR_CONN_ID)
            session = attrs.get(l2tp_wire.L2TP_ATTR_SESSION_ID)
            if conn is not None and session is not None and _u32(conn) == tunnel_id:
                found.append(_u32(session))
        return found

    def _wait_l2tp_gone(self, timeout: float = 3.0) -> None:
        """Wait until deleted L2TP tunnels have left the kernel (their UDP sockets closed), so a
        new tunnel can bind the same port."""
        deadline = time.monotonic() + timeout
        while self._deleted_l2tp & set(self._l2tp_tunnel_ids()) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._deleted_l2tp.clear()

    def _configure(self, report: ApplyReport, action: ConfigureLink) -> None:
        link, device = action.link, action.device
        if device in report.conflicts:
            return  # never tag a device we did not create
        l2tp = link.l2tp is not None
        address = L2TP_ETH_ADDRESS if l2tp and action.set_address else None
        if action.set_address:  # a fresh device, still down: no IPv6 autoconfiguration
            self.rtnl.request(lambda seq: set_link_no_ipv6_addresses(seq, device))
        code = self.rtnl.request(
            lambda seq: set_link(
                seq, device, alias=link.alias, mtu=link.mtu, noarp=l2tp, address=address
            )
        )
        if code:
            report.errors.append((f"configure {device}", code))

    def _routes(
        self, report: ApplyReport, msg_type: int, flags: int, routes: list[tuple[RouteKey, int]]
    ) -> None:
        first = self.rtnl.reserve(len(routes))
        table = self.table
        messages = [
            route_message(msg_type, flags, first + i, key, oif, table=table)
            for i, (key, oif) in enumerate(routes)
        ]
        for index, code in sorted(self.rtnl.pipeline(messages, first).items()):
            if msg_type == RTM_DELROUTE and code in GONE:
                continue
            report.errors.append((f"route {_show(routes[index][0])}", code))


def _genl_items(buffers: list[bytes], family: int) -> list[dict[int, bytes]]:
    """The attributes of each message of a generic-netlink family in dump buffers."""
    return [
        parse_attrs(payload[GENLMSG.size :])
        for buffer in buffers
        for msg_type, _flags, _seq, payload in iter_messages(buffer)
        if msg_type == family
    ]


def _u32(data: bytes) -> int:
    return int.from_bytes(data[:4], "little")


def _show(key: RouteKey) -> str:
    version, address, plen = key
    shown = ipaddress.IPv4Address(address) if version == 4 else ipaddress.IPv6Address(address)
    return f"{shown}/{plen}"
