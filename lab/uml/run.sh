#!/bin/sh
# Run a command inside afbr's User-Mode-Linux kernel and return its exit status.
#   usage: lab/uml/run.sh [--timeout SECONDS] -- COMMAND [ARG...]
# The command runs as root in the guest, in the current directory (seen read-only
# through hostfs), with the host's environment variables named in AFBR_UML_PASS.
# Guest console output goes to stdout.  Environment: AFBR_UML_MEM (default 2G),
# AFBR_UML_CACHE (kernel cache, see build-kernel.sh).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
timeout_s=1800
while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) timeout_s=$2; shift 2 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--timeout S] -- COMMAND [ARG...]" >&2; exit 2; }
kernel=$("$here/build-kernel.sh")
out=$(mktemp -d /tmp/afbr-uml.XXXXXX)
trap 'rm -rf "$out"' EXIT
{
    echo "cd $(pwd | sed "s/'/'\\\\''/g; s/^/'/; s/$/'/")"
    for var in ${AFBR_UML_PASS:-}; do
        eval "val=\${$var:-}"
        printf "export %s='%s'\n" "$var" "$(printf %s "$val" | sed "s/'/'\\\\''/g")"
    done
    printf 'exec'
    for arg in "$@"; do printf " '%s'" "$(printf %s "$arg" | sed "s/'/'\\\\''/g")"; done
    echo
} > "$out/job.sh"
# UML keeps guest memory in a file under TMPDIR, which must allow exec mappings.
tmp=$(mktemp -d /dev/shm/afbr-uml-mem.XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$out" "$tmp"' EXIT
TMPDIR=$tmp timeout -k 10 "$timeout_s" "$kernel" \
    mem="${AFBR_UML_MEM:-2G}" root=/dev/root rootfstype=hostfs rootflags=/ ro \
    init="$here/guest-init.sh" afbr_out="$out" con0=fd:0,fd:1 con=null </dev/null \
    || echo "uml: the guest was stopped (timeout ${timeout_s}s or crash)" >&2
if [ -f "$out/rc" ]; then
    exit "$(cat "$out/rc")"
fi
echo "uml: the guest wrote no exit status" >&2
exit 1
