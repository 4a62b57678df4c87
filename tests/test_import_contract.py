"""The layering contract, checked on what Python actually loads and on the source.

Codecs import nothing of afbr but codecs and constants; the pure cores load no pyroute2, asyncio,
subprocess or socket-using adapter of ours; only afbr/dataplane/netlink.py imports pyroute2; no
import cycles between afbr's subpackages.  Each import runs in a fresh interpreter so that
nothing imported by another test hides a dependency.  The graph and the floors come from
scripts/import_graph.py (read from the source with ast).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_import_graph() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", REPO / "scripts/import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


graph = _load_import_graph()
MODULES = graph.read_modules(REPO)
FLOORS: dict[str, int] = graph.floors(MODULES)
PACKAGE_INITS = {name for name, m in MODULES.items() if m.path.name == "__init__.py"}


def _names(pattern: str) -> list[str]:
    return sorted(n for n in MODULES if n not in PACKAGE_INITS and graph._matches(n, [pattern]))


CODECS = [
    *_names("afbr.bgp.tunnel_encap*"),
    "afbr.ipsec.ike_message",
    "afbr.ipsec.ike_payloads",
    "afbr.ipsec.ike_crypto",
    "afbr.dataplane.xfrm_wire",
    "afbr.dataplane.rtnl_wire",
]
IKE_CORE = [
    "afbr.ipsec.ike_sa_state",
    "afbr.ipsec.ike_child_nego",
    "afbr.ipsec.ike_setup",
    "afbr.ipsec.ike_rekey",
    "afbr.ipsec.ike_informational",
    "afbr.ipsec.ike_timers",
    "afbr.ipsec.ike_sa",
    "afbr.ipsec.ike_dispatcher",
]
PURE_CORES = [
    *_names("afbr.encap.*"),
    "afbr.dataplane.reconcile",
    "afbr.dataplane.kernel_plan",
    "afbr.bgp.softwire_rib",
    *IKE_CORE,
    "afbr.daemon.sync_scheduler",
    "afbr.daemon.ipsec_keeper",
]
IO_MODULES = ("pyroute2", "asyncio", "subprocess")


def _loaded_after_import(module: str, *flags: str) -> set[str]:
    """sys.modules after importing `module` in a fresh interpreter."""
    code = (
        "import importlib, json, sys; "
        f"importlib.import_module({module!r}); "
        "print(json.dumps(sorted(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, *flags, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def _ours(loaded: set[str]) -> set[str]:
    return {m for m in loaded if m == "afbr" or m.startswith("afbr.")}


@pytest.mark.parametrize("module", CODECS)
def test_codecs_load_only_codecs(module: str) -> None:
    ours = _ours(_loaded_after_import(module)) - PACKAGE_INITS
    assert {m: FLOORS.get(m) for m in ours if FLOORS.get(m) != 1} == {}


@pytest.mark.parametrize("module", PURE_CORES)
def test_pure_cores_load_no_io(module: str) -> None:
    loaded = _loaded_after_import(module)
    io = sorted(m for m in loaded if m.split(".")[0] in IO_MODULES)
    adapters = sorted(m for m in _ours(loaded) if FLOORS.get(m, 0) >= 3)
    assert (io, adapters) == ([], [])


def test_ike_codec_does_not_load_the_state_machine() -> None:
    ours = _ours(_loaded_after_import("afbr.ipsec.ike_message"))
    assert not ours & {"afbr.ipsec.ike_sa", "afbr.ipsec.ike_dispatcher", "afbr.ipsec.ike_sa_state"}


def test_ipsec_package_names_load_on_first_use() -> None:
    from afbr import ipsec

    assert set(ipsec._EXPORTS) == set(ipsec.__all__)
    for name in ipsec.__all__:
        assert getattr(ipsec, name) is not None
    with pytest.raises(AttributeError):
        _ = ipsec.no_such_name


def test_only_the_netlink_adapter_imports_pyroute2() -> None:
    by_ast = sorted(name for name, m in MODULES.items() if "pyroute2" in m.external)
    by_text = sorted(
        str(path.relative_to(REPO))
        for path in (REPO / "afbr").rglob("*.py")
        if any(
            line.lstrip().startswith(("import pyroute2", "from pyroute2"))
            for line in path.read_text().splitlines()
        )
    )
    assert by_ast == ["afbr.dataplane.netlink"]
    assert by_text == ["afbr/dataplane/netlink.py"]


# -- cycles --------------------------------------------------------------------------------------
PACKAGE_GRAPH = graph.package_graph(MODULES)
PACKAGE_CYCLE_NODES = {node for cycle in graph.cycles(PACKAGE_GRAPH) for node in cycle}


@pytest.mark.parametrize("package", sorted(PACKAGE_GRAPH))
def test_no_import_cycle_between_packages(package: str) -> None:
    assert package not in PACKAGE_CYCLE_NODES, graph.cycles(PACKAGE_GRAPH)


MODULE_CYCLES = graph.cycles(graph.module_graph(MODULES))


@pytest.mark.parametrize("package", sorted(PACKAGE_GRAPH))
def test_no_import_cycle_between_modules(package: str) -> None:
    inside = [c for c in MODULE_CYCLES if graph.package_of(c[0]) == package]
    assert inside == []


def test_ike_core_has_no_function_local_or_type_checking_imports() -> None:
    local = [
        i for name, m in MODULES.items() if name.startswith("afbr.ipsec") for i in m.local_imports
    ]
    assert local == []
    for path in (REPO / "afbr/ipsec").glob("ike_*.py"):
        assert "TYPE_CHECKING" not in path.read_text(), path


def test_ike_core_floors() -> None:
    for module in IKE_CORE:
        below = {t for t in MODULES[module].imports if t.startswith("afbr.")}
        assert all(FLOORS.get(t, 2) <= 2 for t in below), module
    # the exchanges are plain functions over the record: nothing above ike_sa_state
    for module in IKE_CORE[:6]:
        assert not MODULES[module].imports & {"afbr.ipsec.ike_sa", "afbr.ipsec.ike_dispatcher"}


@pytest.mark.parametrize("module", CODECS)
def test_codecs_check_without_assert(module: str) -> None:
    """`python -O` drops asserts: a codec's module-level checks must raise explicitly."""
    tree = ast.parse(MODULES[module].path.read_text())
    assert not [node.lineno for node in tree.body if isinstance(node, ast.Assert)]
    _loaded_after_import(module, "-O")
