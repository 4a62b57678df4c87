#!/bin/sh
# Install afbr for production: a virtualenv of its own (default /opt/afbr) with afbr and its
# Python dependencies (ExaBGP among them), the systemd unit, an example configuration in
# /etc/afbr with safe modes, the man page, bash completion and the documentation.
#
#   scripts/install.sh [--root DIR] [--prefix /opt/afbr] [--wheel FILE] [--python PYTHON]
#                      [--system-site-packages]
#
#   --root DIR      install under DIR instead of / (a staging or scratch root; DESTDIR in the
#                   environment means the same).  The virtualenv is made under DIR and then
#                   relocated: its scripts name PREFIX, where the tree will live.
#   --prefix PATH   where the virtualenv lives on the target system (default /opt/afbr).
#   --wheel FILE    install this afbr wheel instead of the checkout the script belongs to.
#   --python PY     the Python (>= 3.11) that creates the virtualenv (default python3).
#   --system-site-packages  let the virtualenv see the system's Python packages.
#
# What it never does: start, stop, enable or disable any service (it prints the systemctl
# commands to run), install distribution packages, build anything but afbr's own wheel, or
# overwrite a configuration or key file that is already there (the example is put beside it
# as *.example).  pip is run with --no-cache-dir; it reads its index settings (PIP_INDEX_URL,
# PIP_FIND_LINKS, /etc/pip.conf) as usual.  Running it again upgrades afbr in place.
set -eu

say() { echo "install: $*"; }
die() { echo "install: $*" >&2; exit 1; }
usage() { sed -n '2,16s/^# \{0,1\}//p' "$0"; }

ROOT=${DESTDIR:-}
PREFIX=/opt/afbr
PYTHON=python3
WHEEL=""
VENV_ARGS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$2; shift 2 ;;
        --root=*) ROOT=${1#--root=}; shift ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a path"; PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#--prefix=}; shift ;;
        --wheel) [ $# -ge 2 ] || die "--wheel needs a file"; WHEEL=$2; shift 2 ;;
        --wheel=*) WHEEL=${1#--wheel=}; shift ;;
        --python) [ $# -ge 2 ] || die "--python needs a program"; PYTHON=$2; shift 2 ;;
        --python=*) PYTHON=${1#--python=}; shift ;;
        --system-site-packages) VENV_ARGS=--system-site-packages; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; echo "install: unknown argument: $1" >&2; exit 2 ;;
    esac
done

case "$PREFIX" in
    /*) PREFIX=${PREFIX%/} ;;
    *) die "--prefix must be an absolute path (got $PREFIX)" ;;
esac
if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT"
    ROOT=$(cd "$ROOT" && pwd)
    [ "$ROOT" != / ] || ROOT=""
fi
if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
    die "run as root to install into /, or give --root DIR"
fi
SRC=$(cd "$(dirname "$0")/.." && pwd)
VENV="$ROOT$PREFIX"
if [ -n "$WHEEL" ]; then
    [ -f "$WHEEL" ] || die "no such wheel: $WHEEL"
    WHEEL=$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")
fi
for file in contrib/systemd/afbr.service contrib/afbr.8 contrib/afbr.bash-completion \
        examples/afbr.yaml examples/bgp-keys.yaml examples/ike-keys.yaml; do
    [ -f "$SRC/$file" ] || die "$SRC/$file is missing: run this script from an afbr checkout"
done

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || die "afbr needs Python >= 3.11 ($PYTHON: $("$PYTHON" --version 2>&1 || echo not found))"

# -- the virtualenv ------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    say "creating the virtualenv $VENV"
    mkdir -p "$(dirname "$VENV")"
    # shellcheck disable=SC2086
    "$PYTHON" -m venv $VENV_ARGS "$VENV"
fi
pip_install() {
    "$VENV/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check \
        --upgrade "$@"
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "$WHEEL" ]; then
    say "installing $(basename "$WHEEL") and its dependencies into $VENV"
    pip_install "$WHEEL"
else
    # Build from a copy: pip would leave build/ and *.egg-info behind in the checkout.
    mkdir "$work/afbr-src"
    cp -R "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/LICENSE" "$SRC/afbr" "$work/afbr-src/"
    find "$work/afbr-src" -name __pycache__ -prune -exec rm -rf {} +
    say "installing afbr from $SRC and its dependencies into $VENV"
    pip_install "$work/afbr-src"
fi
[ -x "$VENV/bin/afbr" ] || die "pip did not install the afbr program into $VENV/bin"
[ -x "$VENV/bin/exabgp" ] || die "pip did not install ExaBGP into $VENV/bin"
if [ -n "$ROOT" ]; then
    # The scripts pip wrote name the staging path; on the target system the tree is PREFIX.
    for file in "$VENV"/bin/* "$VENV/pyvenv.cfg"; do
        if [ -f "$file" ] && [ ! -L "$file" ] && grep -qI "$VENV" "$file"; then
            sed -i "s|$VENV|$PREFIX|g" "$file"
        fi
    done
    say "relocated the virtualenv's scripts to $PREFIX"
fi

# -- files around it -----------------------------------------------------------------------
put() {  # mode source target: install, replacing what is there
    install -d -m 0755 "$(dirname "$3")"
    install -m "$1" "$2" "$3"
}
keep() {  # mode source target: install unless the target exists (then as target.example)
    if [ -e "$3" ] || [ -L "$3" ]; then
        install -m "$1" "$2" "$3.example"
        say "kept $3 (the shipped example is $3.example)"
    else
        install -m "$1" "$2" "$3"
        say "installed $3 (mode $1): edit it"
    fi
}

sed "s|/usr/local/bin/afbr|$PREFIX/bin/afbr|g" "$SRC/contrib/systemd/afbr.service" \
    > "$work/afbr.service"
put 0644 "$work/afbr.service" "$ROOT/etc/systemd/system/afbr.service"
say "installed $ROOT/etc/systemd/system/afbr.service"

install -d -m 0750 "$ROOT/etc/afbr"
chmod 0750 "$ROOT/etc/afbr"
keep 0640 "$SRC/examples/afbr.yaml" "$ROOT/etc/afbr/afbr.yaml"
keep 0600 "$SRC/examples/bgp-keys.yaml" "$ROOT/etc/afbr/bgp-keys.yaml"
keep 0600 "$SRC/examples/ike-keys.yaml" "$ROOT/etc/afbr/ike-keys.yaml"
if [ "$(id -u)" = 0 ]; then
    chown -R root:root "$ROOT/etc/afbr"
fi

put 0644 "$SRC/contrib/afbr.8" "$ROOT/usr/share/man/man8/afbr.8"
put 0644 "$SRC/contrib/afbr.bash-completion" "$ROOT/usr/share/bash-completion/completions/afbr"
for doc in README.md LICENSE docs/operator-guide.md docs/DESIGN.md examples/afbr.yaml; do
    put 0644 "$SRC/$doc" "$ROOT/usr/share/doc/afbr/$(basename "$doc")"
done
say "installed the man page, bash completion and documentation under $ROOT/usr/share"

link="$ROOT/usr/local/bin/afbr"
install -d -m 0755 "$ROOT/usr/local/bin"
if [ -L "$link" ] || [ ! -e "$link" ]; then
    ln -sfn "$PREFIX/bin/afbr" "$link"
    say "linked $link -> $PREFIX/bin/afbr"
else
    say "left $link alone (not a symbolic link)"
fi

cat <<EOF
install: done.  Next, on the target system:
  \$EDITOR /etc/afbr/afbr.yaml /etc/afbr/bgp-keys.yaml /etc/afbr/ike-keys.yaml
  afbr config check /etc/afbr/afbr.yaml     # keys files, private key, ExaBGP: every problem
  afbr check-kernel -c /etc/afbr/afbr.yaml  # does this kernel have the tunnels and ESP?
  systemctl daemon-reload && systemctl enable --now afbr
EOF
