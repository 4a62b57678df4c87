#!/bin/sh
# Make UML 6.1 boot on hosts whose XSAVE area is larger than AVX-512's (Intel AMX: about
# 11 KB).  UML keeps each process's FPU state in a fixed buffer (2696 bytes) and hands it to
# the host with PTRACE_SETREGSET NT_X86_XSTATE, which the host refuses with EFAULT unless the
# length is exactly the host's full XSAVE size: the guest dies at boot ("userspace - ptrace
# set fp regs failed, errno = 14", then a kernel panic in init).  host-xstate.patch (ours,
# see its comment) makes the transfers go through a buffer of the host's size.
# Usage: patch-host-xstate.sh SOURCE_DIR.  Idempotent.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$1"
if grep -q "host_fp_len" arch/x86/um/os-Linux/registers.c; then
    exit 0
fi
patch -s -p1 < "$here/host-xstate.patch"
echo "uml: patched for the host's XSAVE size (AMX hosts)" >&2
