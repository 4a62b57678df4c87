#!/bin/sh
# Build afbr's User-Mode-Linux test kernel from Debian's linux-source package and
# cache it outside the repository, keyed by kernel.config and this script.
#   usage: build-kernel.sh            -> prints the path of the cached kernel binary
# Environment: AFBR_UML_CACHE (default /var/cache/afbr/uml).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${AFBR_UML_CACHE:-/var/cache/afbr/uml}
key=$(cat "$here/kernel.config" "$here/build-kernel.sh" | sha256sum | cut -c1-16)
out="$cache/$key/linux"
if [ -x "$out" ]; then
    echo "$out"
    exit 0
fi
log() { echo "uml: $*" >&2; }
for tool in flex bison bc make gcc; do
    command -v "$tool" >/dev/null || { log "missing build tool '$tool' (make setup installs it)"; exit 1; }
done
work="$cache/$key/build"
rm -rf "$work"
mkdir -p "$work"
cd "$work"
log "downloading Debian's linux-source-6.1 (about 140 MB, not installed)"
apt-get download -q linux-source-6.1 >&2
dpkg-deb --fsys-tarfile linux-source-6.1_*_all.deb | tar -x --wildcards './usr/src/linux-source-6.1.tar.xz'
log "unpacking the source"
tar -xJf usr/src/linux-source-6.1.tar.xz
cd linux-source-6.1
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
cd "$cache/$key"
rm -rf "$work"
log "built in $(( $(date +%s) - start ))s: $out"
echo "$out"
