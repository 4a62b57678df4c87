#!/bin/sh
# PID 1 of afbr's User-Mode-Linux guest.  The root file system is the host's "/" through
# hostfs, read-only; the host folder named by afbr_out= on the kernel command line is
# mounted read-write at /run/out.  It runs /run/out/job.sh, stores its exit status in
# /run/out/rc (the UML process itself always exits 0) and powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 AFBR_IN_UML=1
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /run
mount -t tmpfs tmp /tmp
mkdir -p /run/netns /run/out /run/tmp /dev/pts /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs shm /dev/shm
export TMPDIR=/run/tmp
stty -onlcr 2>/dev/null  # plain "\n" line ends on the console, as on the host
out=$(sed -n 's/.*afbr_out=\([^ ]*\).*/\1/p' /proc/cmdline)
mount -t hostfs -o "$out" hostfs /run/out
# Daemons write pid files, sockets and state under /var, /etc and /root: give them a
# writable layer over the read-only host so nothing reaches the host's own files.
for d in /var /etc /root; do
    mkdir -p "/run/ov$d/u" "/run/ov$d/w"
    mount -t overlay -o "lowerdir=$d,upperdir=/run/ov$d/u,workdir=/run/ov$d/w" overlay "$d" \
        || echo "guest: overlay on $d failed"
done
mkdir -p /var/run && ln -sf /run /var/run 2>/dev/null
ip link set lo up
echo "guest: kernel $(uname -r) up in $(cut -d' ' -f1 /proc/uptime)s"
cd /run/out && sh /run/out/job.sh
rc=$?
echo "$rc" > /run/out/rc
echo "guest: job exited $rc after $(cut -d' ' -f1 /proc/uptime)s"
sync
poweroff -f -f
