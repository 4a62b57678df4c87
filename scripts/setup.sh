#!/bin/sh
# Install everything afbr and its tests need on a Debian/Ubuntu machine, idempotently:
# the Debian packages (iproute2, nftables, the real BGP and IKE peers, kernel build tools),
# a virtualenv in .venv with afbr and its test tools, and — when this kernel lacks
# tunnels/ESP — afbr's User-Mode-Linux test kernel (cached, built once).
set -eu
cd "$(dirname "$0")/.."
say() { echo "setup: $*"; }

APT_PACKAGES="iproute2 nftables iputils-ping procps tcpdump kmod
gobgpd bird2
charon-systemd strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins
libstrongswan-standard-plugins
python3-venv gcc make flex bison bc xz-utils patch prometheus groff-base"
# The benchmarks' baselines (bench/README.md): FRR receives the same feed as afbr.
[ "${AFBR_BENCH:-0}" = 1 ] && APT_PACKAGES="$APT_PACKAGES frr"
missing=""
for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    [ "$(id -u)" = 0 ] || { say "run as root to install:$missing"; exit 1; }
    say "installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
    say "Debian packages present"
fi
# The distribution's own units would start charon and bird on the host: keep them off.
for unit in strongswan-starter strongswan bird frr; do
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
done

PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { say "afbr needs Python >= 3.11 ($PY is $("$PY" --version))"; exit 1; }
stamp=.venv/.afbr-installed
if [ ! -x .venv/bin/python ]; then
    say "creating the virtualenv .venv"
    "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    say "installing afbr and its test tools into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
    touch "$stamp"
else
    say "virtualenv up to date"
fi

if .venv/bin/python -c 'import sys; sys.path.insert(0, "tests"); import conftest; sys.exit(bool(conftest.missing_kernel_features()))' 2>/dev/null; then
    say "this kernel has tunnels and ESP: no UML kernel needed"
else
    say "this kernel lacks tunnels/ESP: preparing the User-Mode-Linux test kernel"
    lab/uml/build-kernel.sh >/dev/null
    say "UML kernel ready: $(lab/uml/build-kernel.sh)"
fi
