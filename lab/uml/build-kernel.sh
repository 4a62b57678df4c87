#!/bin/sh
# Build afbr's User-Mode-Linux test kernel from Debian's linux-source package and
# cache it outside the repository, keyed by kernel.config and the recipe version below.
#   usage: build-kernel.sh            -> prints the path of the cached kernel binary
# Environment: AFBR_UML_CACHE (default /var/cache/afbr/uml).
# Concurrent callers are serialised by a lock in the cache: the first builds, the others
# wait for it and then use its result (each build also works in a folder of its own).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${AFBR_UML_CACHE:-/var/cache/afbr/uml}
# Bump RECIPE when a change to the steps below changes the binary they produce.
RECIPE=2
key=$( (cat "$here/kernel.config"; echo "recipe=$RECIPE source=linux-source-6.1") | sha256sum | cut -c1-16)
out="$cache/$key/linux"
if [ -x "$out" ]; then
    echo "$out"
    exit 0
fi
log() { echo "uml: $*" >&2; }
# One build at a time: a second caller waits for the first and then uses its result.
mkdir -p "$cache"
exec 9>"$cache/$key.lock"
if ! flock -n 9; then
    log "another build of this kernel is running; waiting for it"
    flock 9
fi
if [ -x "$out" ]; then
    echo "$out"
    exit 0
fi
mkdir -p "$cache/$key"
for tool in flex bison bc make gcc patch; do
    command -v "$tool" >/dev/null || { log "missing build tool '$tool' (make setup installs it)"; exit 1; }
done
work=$(mktemp -d "$cache/$key/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
log "downloading Debian's linux-source-6.1 (about 140 MB, not installed)"
apt-get download -q -o APT::Sandbox::User=root linux-source-6.1 >&2
dpkg-deb --fsys-tarfile linux-source-6.1_*_all.deb | tar -x --wildcards './usr/src/linux-source-6.1.tar.xz'
rm -f linux-source-6.1_*_all.deb
log "unpacking the source"
tar -xJf usr/src/linux-source-6.1.tar.xz
cd linux-source-6.1
"$here/patch-host-xstate.sh" . >&2
log "configuring (ARCH=um defconfig + kernel.config)"
make -s ARCH=um defconfig >&2
./scripts/kconfig/merge_config.sh -m -O . .config "$here/kernel.config" >/dev/null
make -s ARCH=um olddefconfig >&2
missing=$(grep -v '^#' "$here/kernel.config" | grep '=y$' | while read -r opt; do
    grep -qx "$opt" .config || echo "${opt%=y}"; done)
[ -z "$missing" ] || { log "options the kernel refused: $missing"; exit 1; }
log "compiling on $(nproc) cores (about 5 minutes)"
start=$(date +%s)
make -s ARCH=um -j"$(nproc)" linux >&2
strip -o "$cache/$key/linux.tmp" linux
mv "$cache/$key/linux.tmp" "$out"
log "built in $(( $(date +%s) - start ))s: $out"
echo "$out"
