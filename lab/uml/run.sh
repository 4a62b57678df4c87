#!/bin/sh
# Run a command inside afbr's User-Mode-Linux kernel and return its exit status.
#   usage: lab/uml/run.sh [--timeout SECONDS] [--shards N|auto] -- COMMAND [ARG...]
# The command runs as root in the guest, in the current directory (seen read-only
# through hostfs), with the host's environment variables named in AFBR_UML_PASS.
# Guest console output goes to stdout.  Environment: AFBR_UML_MEM (default 2G),
# AFBR_UML_CACHE (kernel cache, see build-kernel.sh), AFBR_UML_KERNEL_LOG=1 (show the
# kernel's boot messages; by default only errors reach the console).
#
# --timeout S   each guest is stopped after S seconds (default 1800); status 124.
# --shards N    boot N guests side by side (auto: one per core, at most 4), each running
#               COMMAND with the pytest plugin afbr_uml_shard loaded (PYTEST_PLUGINS), which
#               gives each guest its share of the selected tests, split by module.  Meant
#               for a pytest COMMAND.  Guest i's lines are prefixed "[uml i]".
# Exit status: the command's (the first non-zero one of the guests); 124 when a guest was
# stopped by the timeout; 1 when a guest ended without writing a status (a crash).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
timeout_s=1800
shards=1
while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) timeout_s=$2; shift 2 ;;
        --shards) shards=$2; shift 2 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--timeout S] [--shards N|auto] -- COMMAND [ARG...]" >&2; exit 2; }
if [ "$shards" = auto ]; then
    shards=$(nproc)
    [ "$shards" -le 4 ] || shards=4
fi
case "$shards" in ''|*[!0-9]*|0) echo "uml: --shards wants a positive number or auto" >&2; exit 2 ;; esac
log() { echo "uml: $*" >&2; }
quote() { printf "'%s'" "$(printf %s "$1" | sed "s/'/'\\\\''/g")"; }

quiet=quiet  # kernel messages below "error" stay off the console, unless asked for
[ "${AFBR_UML_KERNEL_LOG:-0}" = 0 ] || quiet=

kernel=$("$here/build-kernel.sh")
timings="$(dirname "$kernel")/timings.json"  # per-module test times, for the shard split
work=$(mktemp -d /tmp/afbr-uml.XXXXXX)
# UML keeps guest memory in a file under TMPDIR, which must allow exec mappings.
mem=$(mktemp -d /dev/shm/afbr-uml-mem.XXXXXX 2>/dev/null || mktemp -d)
pids=""
trap 'rm -rf "$work" "$mem"' EXIT
# `timeout` runs each guest in a process group of its own, so a Ctrl-C or a TERM sent to
# this script does not reach it: pass it on, so no guest outlives us.
stop_guests() {
    for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
    wait || true
    exit 130
}
trap stop_guests INT TERM HUP

write_job() {  # guest folder, shard index, command...
    job="$1/job.sh" index=$2
    shift 2
    {
        echo "cd $(quote "$(pwd)")"
        if [ -t 1 ]; then  # colours only when our own output is a terminal
            echo "export TERM=$(quote "${TERM:-linux}")"
        else
            echo "export TERM=dumb NO_COLOR=1"
        fi
        for var in ${AFBR_UML_PASS:-}; do
            eval "val=\${$var:-}"
            echo "export $var=$(quote "$val")"
        done
        if [ "$shards" -gt 1 ]; then
            echo "export AFBR_UML_SHARD=$index AFBR_UML_SHARDS=$shards"
            echo "export PYTEST_PLUGINS=afbr_uml_shard\${PYTEST_PLUGINS:+,\$PYTEST_PLUGINS}"
            echo "export PYTHONPATH=$(quote "$here")\${PYTHONPATH:+:\$PYTHONPATH}"
            echo "export AFBR_UML_TIMINGS_IN=$(quote "$timings") AFBR_UML_TIMINGS_OUT=/run/out/timings.json"
        fi
        printf 'exec'
        for arg in "$@"; do printf ' %s' "$(quote "$arg")"; done
        echo
    } > "$job"
}

start=$(date +%s)
i=0
while [ "$i" -lt "$shards" ]; do
    guest="$work/guest$i"
    mkdir "$guest"
    write_job "$guest" "$i" "$@"
    if [ "$shards" -gt 1 ]; then  # console lines through a FIFO that prefixes them
        mkfifo "$guest/console"
        sed -u "s/^/[uml $i] /" < "$guest/console" &
        exec 3>"$guest/console"
    else
        exec 3>&1
    fi
    TMPDIR=$mem timeout -k 10 "$timeout_s" "$kernel" \
        mem="${AFBR_UML_MEM:-2G}" root=/dev/root rootfstype=hostfs rootflags=/ ro $quiet \
        init="$here/guest-init.sh" afbr_out="$guest" con0=fd:0,fd:1 con=null \
        ubd0=/dev/null uml_dir="$work/umid" umid="guest$i" </dev/null >&3 2>"$guest/uml.stderr" &
    pids="$pids $!"
    exec 3>&-
    i=$((i + 1))
done

status=0
i=0
for pid in $pids; do
    guest="$work/guest$i"
    uml_status=0
    wait "$pid" || uml_status=$?
    if [ -f "$guest/rc" ]; then
        rc=$(cat "$guest/rc")
        case "$rc" in ''|*[!0-9]*) log "guest $i wrote a bad exit status '$rc'"; rc=1 ;; esac
    elif [ "$uml_status" -eq 124 ] || [ "$uml_status" -eq 137 ]; then
        log "guest $i was stopped by the timeout (${timeout_s}s)"
        rc=124
    else
        log "guest $i ended without an exit status (kernel status $uml_status): it crashed"
        sed "s/^/uml: guest $i: /" "$guest/uml.stderr" >&2
        rc=1
    fi
    [ "$rc" -eq 0 ] || [ "$status" -ne 0 ] || status=$rc
    i=$((i + 1))
done
wait || true  # the console prefixers
trap - INT TERM HUP

if [ "$shards" -gt 1 ] && command -v python3 >/dev/null; then
    python3 - "$timings" "$work"/guest*/timings.json <<'EOF' 2>/dev/null || true
import json, os, sys
merged = {}
for path in sys.argv[1:]:
    try:
        merged.update(json.load(open(path)))
    except (OSError, ValueError):
        pass
tmp = sys.argv[1] + ".tmp%d" % os.getpid()
json.dump(merged, open(tmp, "w"), indent=1, sort_keys=True)
os.replace(tmp, sys.argv[1])
EOF
fi
log "$shards guest(s) done in $(( $(date +%s) - start ))s, exit status $status"
exit "$status"
