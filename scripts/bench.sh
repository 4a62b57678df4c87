#!/bin/sh
# Every benchmark, each against its baseline in the same run (see bench/README.md).
# Run on an otherwise idle machine: they measure time.  Results go to stdout as tables;
# AFBR_BENCH_JSON=1 makes each print JSON instead.  One benchmark: scripts/bench.sh NAME.
set -eu
cd "$(dirname "$0")/.."
py=.venv/bin/python
json=""
[ "${AFBR_BENCH_JSON:-0}" = 1 ] && json="--json"
in_uml() {  # the dataplane benchmarks need tunnels: the UML kernel unless this one has them
    if $py -c 'import sys; sys.path.insert(0, "tests"); import conftest; sys.exit(bool(conftest.missing_kernel_features()))' 2>/dev/null; then
        "$@"
    else
        AFBR_UML_MEM=${AFBR_UML_MEM:-4G} lab/uml/run.sh --timeout 3600 -- "$@"
    fi
}
only=${1:-}
rc=0
if [ -z "$only" ] || [ "$only" = bgp_feed ]; then
    echo "bench: bgp_feed — wire to softwire RIB vs bare ExaBGP (issue 3)"
    $py bench/bgp_feed.py $json || rc=$?
fi
if [ -z "$only" ] || [ "$only" = dataplane_scale ]; then
    echo "bench: dataplane_scale — 1,000 tunnels + 100k routes vs ip -batch (issue 4)"
    in_uml $py bench/dataplane_scale.py $json || rc=$?
fi
if [ -z "$only" ] || [ "$only" = ike_setup ]; then
    echo "bench: ike_setup — IKE+CHILD SA establishments vs strongSwan (issue 5)"
    $py bench/ike_setup.py $json || rc=$?
fi
if [ -z "$only" ] || [ "$only" = wire_to_forwarding ]; then
    echo "bench: wire_to_forwarding — wire to kernel FIB vs ExaBGP, FRR, BIRD (issue 6)"
    in_uml $py bench/wire_to_forwarding.py $json || rc=$?
fi
if [ -z "$only" ] || [ "$only" = ipsec_recovery ]; then
    echo "bench: ipsec_recovery — traffic gap after SA flushes, IKE outages, restarts (issue 10)"
    in_uml $py bench/ipsec_recovery.py $json || rc=$?
fi
exit $rc
