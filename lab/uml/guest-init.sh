#!/bin/sh
# PID 1 of afbr's User-Mode-Linux guest.  The root file system is the host's "/" through
# hostfs, read-only; the host folder named by afbr_out= on the kernel command line is
# mounted read-write at /run/out.  It runs /run/out/job.sh, stores its exit status in
# /run/out/rc (the UML process itself always exits 0) and powers off.
# Starting a process is slow in UML (~0.1 s), so this script starts as few as it can:
# one `mount -a` over a generated fstab does every mount after /run.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 AFBR_IN_UML=1
export TMPDIR=/run/tmp
# The kernel hands the command line's unknown name=value words to init as environment.
out=${afbr_out:?afbr_out= missing from the kernel command line}
# Daemons write pid files, sockets and state under /var, /etc and /root: give them a
# writable layer over the read-only host so nothing reaches the host's own files.  /tmp gets
# one too (not a bare tmpfs): a checkout under the host's /tmp must stay visible in the guest.
overlays="/var /etc /root /tmp"
mount -t tmpfs tmp /run
dirs="/run/netns /run/out /run/tmp /dev/pts /dev/shm"
for d in $overlays; do dirs="$dirs /run/ov$d/u /run/ov$d/w"; done
# shellcheck disable=SC2086  # word splitting of the lists is meant
mkdir -p $dirs
{
    echo "proc /proc proc defaults 0 0"
    echo "sys /sys sysfs defaults 0 0"
    [ -c /dev/null ] || echo "dev /dev devtmpfs defaults 0 0"
    echo "devpts /dev/pts devpts defaults 0 0"
    echo "shm /dev/shm tmpfs defaults 0 0"
    echo "hostfs /run/out hostfs $out 0 0"
    for d in $overlays; do
        echo "overlay $d overlay lowerdir=$d,upperdir=/run/ov$d/u,workdir=/run/ov$d/w 0 0"
    done
} > /run/fstab
mount -a -T /run/fstab || echo "guest: some mounts failed (see above)"
[ -e /var/run ] || ln -s /run /var/run
stty -onlcr 2>/dev/null  # plain "\n" line ends on the console, as on the host
ip link set lo up
read -r release < /proc/sys/kernel/osrelease
read -r uptime _ < /proc/uptime
echo "guest: kernel $release up in ${uptime}s"
cd /run/out && sh /run/out/job.sh
rc=$?
echo "$rc" > /run/out/rc
read -r uptime _ < /proc/uptime
echo "guest: job exited $rc after ${uptime}s"
sync
poweroff -f -f
