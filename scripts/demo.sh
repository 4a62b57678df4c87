#!/bin/sh
# afbr's main job on its built-in default: the demo mesh.  Until the demo mesh lab lands,
# this runs the largest end-to-end thing that works: the real-kernel softwire and IPsec
# smoke tests (inside the UML kernel when this host's kernel lacks tunnels).
set -eu
cd "$(dirname "$0")/.."
echo "demo: afbr $(.venv/bin/afbr --version | cut -d' ' -f2)"
echo "demo: softwires and ESP in a real kernel, between network namespaces"
if .venv/bin/python -c 'import sys; sys.path.insert(0, "tests"); import conftest; sys.exit(bool(conftest.missing_kernel_features()))' 2>/dev/null; then
    exec .venv/bin/python -m pytest -q -m kernel tests/kernel
fi
AFBR_UML_PASS="" exec lab/uml/run.sh --timeout 900 -- \
    .venv/bin/python -m pytest -p no:cacheprovider -q -m kernel tests/kernel
