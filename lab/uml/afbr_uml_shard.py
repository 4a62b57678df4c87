"""pytest plugin behind `lab/uml/run.sh --shards N`: each guest keeps its share of the tests.

run.sh boots N guests and loads this plugin in each (PYTEST_PLUGINS=afbr_uml_shard) with
AFBR_UML_SHARD=i (0-based) and AFBR_UML_SHARDS=N.  Every guest collects the same tests and
computes the same split, so together they run each selected test exactly once.

Tests are split by module, so a module-scoped lab is built in one guest only.  Modules go,
longest first, to the least loaded guest; a module's cost is its measured time from earlier
runs (AFBR_UML_TIMINGS_IN, a JSON file run.sh keeps in the kernel cache), else an estimate
from its number of tests.  Each guest writes the times it measured to AFBR_UML_TIMINGS_OUT.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

ESTIMATE_PER_TEST_S = 1.5  # a namespace test inside UML, when nothing was measured yet
ESTIMATE_PER_MODULE_S = 4.0  # the module's own fixtures (namespace set-up)

_started: dict[str, float] = {}
_measured: dict[str, float] = {}
_had_tests = pytest.StashKey[bool]()  # this run selected tests before the split


def _module_of(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def _known_times() -> dict[str, float]:
    path = os.environ.get("AFBR_UML_TIMINGS_IN", "")
    try:
        data = json.loads(Path(path).read_text()) if path else {}
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float)}


def assign_modules(costs: dict[str, float], shards: int) -> dict[str, int]:
    """Longest-processing-time-first: each module to the currently least loaded shard."""
    load = [0.0] * shards
    owner: dict[str, int] = {}
    for module in sorted(costs, key=lambda m: (-costs[m], m)):
        target = min(range(shards), key=lambda s: (load[s], s))
        owner[module] = target
        load[target] += costs[module]
    return owner


@pytest.hookimpl(trylast=True)  # after -m/-k deselection: split only what will run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    shards = int(os.environ.get("AFBR_UML_SHARDS", "1"))
    index = int(os.environ.get("AFBR_UML_SHARD", "0"))
    if shards <= 1 or not items:
        return
    counts: dict[str, int] = {}
    for item in items:
        counts[_module_of(item)] = counts.get(_module_of(item), 0) + 1
    known = _known_times()
    costs = {
        module: known.get(module, ESTIMATE_PER_MODULE_S + ESTIMATE_PER_TEST_S * count)
        for module, count in counts.items()
    }
    owner = assign_modules(costs, shards)
    keep = [item for item in items if owner[_module_of(item)] == index]
    drop = [item for item in items if owner[_module_of(item)] != index]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep
    config.stash[_had_tests] = True


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    _started.setdefault(nodeid.split("::", 1)[0], time.monotonic())


def pytest_runtest_logfinish(nodeid: str, location: object) -> None:
    module = nodeid.split("::", 1)[0]
    _measured[module] = time.monotonic() - _started[module]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A guest whose share is empty while the others have tests has passed, not "no tests".
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and session.config.stash.get(
        _had_tests, False
    ):
        session.exitstatus = pytest.ExitCode.OK
    out = os.environ.get("AFBR_UML_TIMINGS_OUT", "")
    if out and _measured:
        Path(out).write_text(json.dumps({k: round(v, 2) for k, v in _measured.items()}))
