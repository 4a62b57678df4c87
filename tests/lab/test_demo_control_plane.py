"""The demo mesh's control plane on any kernel: `afbr run --no-dataplane` in each AFBR namespace
with the real GoBGP reflector, TCP-MD5 on every session.  What the full end-to-end tests
(test_demo_e2e.py, which need the tunnel kernel) build on: every AFBR learns exactly its
partners' islands through the reflector, and the other AFBRs keep an AFBR's routes while its
ExaBGP or the whole afbr restarts (the reflector's graceful restart, RFC 4724)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from demo_e2e_support import MESH_TIMEOUT, RouteWatch, back_to_normal, running_demo, wait_for

from afbr.lab.demo_runner import RunningDemo

pytestmark = [pytest.mark.netns, pytest.mark.interop]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    with running_demo(tmp_path_factory.mktemp("demo-cp"), dataplane=False) as running:
        yield running


@pytest.fixture(autouse=True)
def converged(demo: RunningDemo) -> Iterator[None]:
    demo.wait_mesh(MESH_TIMEOUT)
    yield
    back_to_normal(demo)


def test_each_afbr_learns_exactly_its_partners_islands(demo: RunningDemo) -> None:
    for afbr in demo.mesh.afbrs:
        routes = demo.query(afbr.name, "routes")
        assert isinstance(routes, list)
        learned = {(r["prefix"], r["endpoint"]) for r in routes}
        expected = {(str(p.island), str(p.core_address)) for p in demo.mesh.partners(afbr)}
        assert learned == expected, afbr.name
        status = demo.query(afbr.name, "status")
        assert isinstance(status, dict)
        assert [(n["state"], n["md5"]) for n in status["neighbors"]] == [("up", True)]
    assert demo.reflector is not None
    for afbr in demo.mesh.afbrs:
        assert demo.reflector.session_state(str(afbr.core_address)) == "established"


def test_routes_stay_elsewhere_while_exabgp_restarts(demo: RunningDemo) -> None:
    (old,) = demo.exabgp_pids("a")
    with RouteWatch(demo, "b", "a") as watch:
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: demo.exabgp_pids("a") not in ([], [old]), timeout=30, what="a new ExaBGP")
        demo.wait_mesh(MESH_TIMEOUT)
    assert watch.samples > 5
    assert watch.gaps == [], "b lost a's route while a's ExaBGP restarted"


def test_routes_stay_elsewhere_while_afbr_restarts(demo: RunningDemo) -> None:
    with RouteWatch(demo, "b", "a") as watch:
        demo.stop_afbr("a")
        demo.start_afbr("a")
        demo.wait_mesh(MESH_TIMEOUT)
    assert watch.samples > 5
    assert watch.gaps == [], "b lost a's route while afbr restarted on a"


def test_a_session_without_md5_fails_the_audit_for_that_reason(demo: RunningDemo) -> None:
    assert demo.reflector is not None
    demo.reflector.reload(unauthenticated={"c"})
    demo.stop_afbr("c")
    demo.start_afbr("c", md5=False)
    demo.wait_mesh(MESH_TIMEOUT)
    rows = demo.query("c", "audit")
    assert isinstance(rows, list)
    by_requirement = {row["requirement"]: row for row in rows}
    md5_row = by_requirement["every BGP session is authenticated with TCP-MD5"]
    assert md5_row["status"] == "fail" and "192.0.2.1" in md5_row["why"]
    assert by_requirement["BGP sessions to the route reflectors are Established"]["status"] == (
        "pass"
    )
