#!/bin/sh
# The whole test suite: quality gates, then every test, the kernel ones inside the
# User-Mode-Linux kernel when this host's kernel lacks tunnels/ESP.  Exits non-zero when
# any gate or test fails.  Extra arguments go to pytest (e.g. -k codec).
set -eu
cd "$(dirname "$0")/.."
say() { echo "test: $*"; }
export AFBR_STRICT=1
VENV=.venv/bin
start=$(date +%s)

say "ruff check"; $VENV/ruff check .
say "ruff format --check"; $VENV/ruff format --check .
say "mypy --strict afbr"; $VENV/mypy --strict afbr

rc=0
if $VENV/python -c 'import sys; sys.path.insert(0, "tests"); import conftest; sys.exit(bool(conftest.missing_kernel_features()))' 2>/dev/null; then
    say "pytest (all tests, this kernel has tunnels and ESP)"
    $VENV/python -m pytest "$@" || rc=$?
else
    say "pytest on the host (everything but the kernel tests)"
    $VENV/python -m pytest -m "not kernel" "$@" || rc=$?
    say "pytest inside the UML kernel (kernel tests)"
    AFBR_UML_PASS="AFBR_STRICT" lab/uml/run.sh --timeout 1800 --shards auto -- \
        $VENV/python -m pytest -p no:cacheprovider -m kernel "$@" || rc=$?
fi
say "finished in $(( $(date +%s) - start ))s, exit status $rc"
exit $rc
