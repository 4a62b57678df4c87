#!/bin/sh
# afbr's main job: the demo mesh (`afbr lab demo`): three AFBR sites with IPv4 islands over an
# IPv6 core and IPv6 islands over an IPv4 core, a GoBGP route reflector, TCP-MD5, IPsec, and
# traffic between all islands; it prints the mesh status and the traffic results and tears
# everything down.  It runs inside afbr's User-Mode-Linux kernel when this host's kernel lacks
# the tunnels and ESP it needs (lab/uml/run.sh), and directly otherwise.
# Extra arguments go to `afbr lab demo` (e.g. --json).
set -eu
cd "$(dirname "$0")/.."
echo "demo: afbr $(.venv/bin/afbr --version | cut -d' ' -f2)"
if [ "$(id -u)" -ne 0 ]; then
    echo "demo: needs root (network namespaces)" >&2
    exit 1
fi
if missing=$(.venv/bin/afbr lab demo --check-kernel); then
    echo "demo: this kernel has GRE, IP-in-IP, ESP and xfrm interfaces: running in network namespaces here"
    exec .venv/bin/afbr lab demo "$@"
fi
echo "demo: $missing"
echo "demo: running it inside afbr's User-Mode-Linux kernel (lab/uml/run.sh; the first run builds the kernel)"
start=$(date +%s)
status=0
lab/uml/run.sh --timeout 600 -- .venv/bin/afbr lab demo "$@" || status=$?
echo "demo: finished in $(( $(date +%s) - start ))s (including the UML boot), exit status $status"
exit "$status"
