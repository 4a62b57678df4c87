"""XFRM policies: in/out/fwd with ESP templates, and the route-based layout per remote AFBR.

Route-based (DESIGN.md): each remote AFBR gets one xfrm interface (if_id) and six policies,
in/out/fwd for 0.0.0.0/0 and ::/0, all carrying that if_id and a tunnel-mode template for the
pair of outer addresses.  Routes into the interface choose what is protected; the policies never
grow with the number of prefixes.  Policies with an if_id only match traffic of that interface,
so nothing else on the box is captured; a packet routed into the interface with no SA behind
the template is dropped (RFC 5566 §3: never sent in clear).

Ownership: a policy is afbr's when its if_id is in afbr's range or its template's reqid is.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from afbr.dataplane.xfrm import IF_ID_MAX, IF_ID_MIN, is_afbr_reqid
from afbr.dataplane.xfrm_records import UserPolicyInfo, UserTemplate
from afbr.dataplane.xfrm_socket import (
    NLM_F_CREATE,
    NLM_F_EXCL,
    NetlinkMessage,
    XfrmKernelError,
    XfrmSocket,
    attr,
    parse_attrs,
)
from afbr.dataplane.xfrm_wire import (
    AF_INET,
    AF_INET6,
    MARK,
    USERPOLICY_ID,
    USERPOLICY_INFO,
    IPAddress,
    PolicyAction,
    PolicyDir,
    Selector,
    XfrmAttr,
    XfrmMode,
    XfrmMsgType,
    family_of,
)

ROUTE_BASED_PRIORITY = 0x4000  # below strongSwan's default priorities: no surprise overlap


@dataclass(frozen=True)
class PolicySpec:
    """One policy: a selector, a direction and the SA templates it requires (none: plain)."""

    selector: Selector
    direction: PolicyDir
    templates: tuple[UserTemplate, ...] = ()
    action: PolicyAction = PolicyAction.ALLOW
    priority: int = ROUTE_BASED_PRIORITY
    if_id: int = 0
    mark: tuple[int, int] | None = None


@dataclass(frozen=True)
class PolicyState:
    """A policy as the kernel reports it."""

    selector: Selector
    direction: int
    action: int
    priority: int
    index: int
    if_id: int
    templates: tuple[UserTemplate, ...]

    @property
    def is_afbr(self) -> bool:
        return IF_ID_MIN <= self.if_id <= IF_ID_MAX or any(
            is_afbr_reqid(t.reqid) for t in self.templates
        )


def esp_template(
    src: IPAddress, dst: IPAddress, reqid: int, mode: XfrmMode = XfrmMode.TUNNEL
) -> UserTemplate:
    """An ESP template; tunnel mode names the outer addresses, transport mode needs none."""
    if mode == XfrmMode.TRANSPORT:
        return UserTemplate(family=family_of(dst), daddr=None, saddr=None, reqid=reqid, mode=mode)
    return UserTemplate(family=family_of(dst), daddr=dst, saddr=src, reqid=reqid, mode=mode)


def _policy_payload(spec: PolicySpec) -> bytes:
    info = UserPolicyInfo(
        spec.selector, spec.direction, spec.action, spec.priority, index=0, flags=0, share=0
    )
    out = info.pack()
    if spec.templates:
        out += attr(XfrmAttr.TMPL, b"".join(t.pack() for t in spec.templates))
    if spec.if_id:
        out += attr(XfrmAttr.IF_ID, spec.if_id.to_bytes(4, "little"))
    if spec.mark is not None:
        out += attr(XfrmAttr.MARK, MARK.pack(*spec.mark))
    return out


def _check_owned(spec: PolicySpec) -> None:
    owned = IF_ID_MIN <= spec.if_id <= IF_ID_MAX or any(
        is_afbr_reqid(t.reqid) for t in spec.templates
    )
    if not owned:
        raise ValueError("policy carries neither an afbr if_id nor an afbr reqid")


def add_policy(sock: XfrmSocket, spec: PolicySpec) -> None:
    """XFRM_MSG_NEWPOLICY; EEXIST when the same selector/dir/if_id/mark is there."""
    _check_owned(spec)
    sock.request(XfrmMsgType.NEWPOLICY, _policy_payload(spec), NLM_F_CREATE | NLM_F_EXCL)


def update_policy(sock: XfrmSocket, spec: PolicySpec) -> None:
    """XFRM_MSG_UPDPOLICY: create or replace (idempotent, used by reconcile)."""
    _check_owned(spec)
    sock.request(XfrmMsgType.UPDPOLICY, _policy_payload(spec))


def delete_policy(
    sock: XfrmSocket,
    selector: Selector,
    direction: PolicyDir,
    *,
    if_id: int = 0,
    mark: tuple[int, int] | None = None,
) -> bool:
    """XFRM_MSG_DELPOLICY by selector; True if it existed."""
    payload = USERPOLICY_ID.pack(selector.pack(), 0, direction)
    if if_id:
        payload += attr(XfrmAttr.IF_ID, if_id.to_bytes(4, "little"))
    if mark is not None:
        payload += attr(XfrmAttr.MARK, MARK.pack(*mark))
    try:
        sock.request(XfrmMsgType.DELPOLICY, payload)
    except XfrmKernelError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True


def list_policies(sock: XfrmSocket, *, only_afbr: bool = True) -> list[PolicyState]:
    """Every policy of the namespace (afbr's only unless told otherwise); socket policies
    (direction >= 3) are left out."""
    out = []
    for msg in sock.dump(XfrmMsgType.GETPOLICY):
        state = parse_policy(msg)
        if state.direction <= PolicyDir.FWD and (state.is_afbr or not only_afbr):
            out.append(state)
    return out


def parse_policy(msg: NetlinkMessage) -> PolicyState:
    info = UserPolicyInfo.unpack(msg.payload)
    attrs = parse_attrs(msg.payload[USERPOLICY_INFO.size :])
    templates = tuple(UserTemplate.unpack_all(attrs.get(XfrmAttr.TMPL, b"")))
    if_id = 0
    if len(attrs.get(XfrmAttr.IF_ID, b"")) >= 4:
        if_id = int.from_bytes(attrs[XfrmAttr.IF_ID][:4], "little")
    return PolicyState(
        info.selector, info.direction, info.action, info.priority, info.index, if_id, templates
    )


def route_based_policies(
    local: IPAddress, remote: IPAddress, if_id: int, reqid: int
) -> list[PolicySpec]:
    """The six wildcard policies of one remote AFBR (IPv4 and IPv6 inner, in/out/fwd)."""
    if not IF_ID_MIN <= if_id <= IF_ID_MAX:
        raise ValueError(f"if_id {if_id:#x} is outside afbr's range")
    out_tmpl = esp_template(local, remote, reqid)
    in_tmpl = esp_template(remote, local, reqid)
    specs = []
    for family in (AF_INET, AF_INET6):
        selector = Selector.any_of(family)
        specs.append(PolicySpec(selector, PolicyDir.OUT, (out_tmpl,), if_id=if_id))
        specs.append(PolicySpec(selector, PolicyDir.IN, (in_tmpl,), if_id=if_id))
        specs.append(PolicySpec(selector, PolicyDir.FWD, (in_tmpl,), if_id=if_id))
    return specs


def install_route_based_peer(
    sock: XfrmSocket, local: IPAddress, remote: IPAddress, if_id: int, reqid: int
) -> None:
    """Install (or refresh) the six policies of one remote AFBR; idempotent."""
    for spec in route_based_policies(local, remote, if_id, reqid):
        update_policy(sock, spec)


def remove_route_based_peer(sock: XfrmSocket, if_id: int) -> int:
    """Delete the policies of one remote AFBR; return how many went."""
    removed = 0
    for family in (AF_INET, AF_INET6):
        for direction in (PolicyDir.OUT, PolicyDir.IN, PolicyDir.FWD):
            removed += delete_policy(sock, Selector.any_of(family), direction, if_id=if_id)
    return removed


def flush_afbr_policies(sock: XfrmSocket) -> int:
    """Delete afbr's policies (and nobody else's); return how many went."""
    removed = 0
    for state in list_policies(sock):
        removed += delete_policy(
            sock, state.selector, PolicyDir(state.direction), if_id=state.if_id
        )
    return removed
