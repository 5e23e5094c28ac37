#!/bin/bash
# SPDX-License-Identifier: MIT
#
# PID 1 of a VM suite guest: set up a minimal system on the read-only root
# image, run /vmtest/CASE.sh with the arguments from the kernel command line
# (vmtest.case=CASE vmtest.args=A,B,...), print its verdict on the console
# and power off.  The host reads the verdict from the serial console.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs -o mode=0755,size=64m tmpfs /run
mount -t tmpfs -o mode=1777,size=64m tmpfs /tmp
mount -t tmpfs -o mode=0700,size=16m tmpfs /root
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
echo /sbin/modprobe >/proc/sys/kernel/modprobe
# SysRq from the host (VM_SYSRQ): the way to see inside a hung guest.
echo 1 >/proc/sys/kernel/sysrq

case_name= case_args= monitor=
for word in $(cat /proc/cmdline); do
    case $word in
        vmtest.case=*) case_name=${word#vmtest.case=} ;;
        vmtest.args=*) case_args=${word#vmtest.args=} ;;
        vmtest.monitor=*) monitor=${word#vmtest.monitor=} ;;
        vmtest.env=*) export UZRAMD_ENV=${word#vmtest.env=} ;;
    esac
done
echo "VMTEST: BOOT $(uname -r) mem_kb=$(awk '/MemTotal/ {print $2}' /proc/meminfo) case=$case_name"

# Diagnostics asked for by the host (VM_MONITOR): a line of figures now and then.
if [[ -n $monitor ]]; then
    (
        while sleep "$monitor"; do
            m=$(awk '/^(MemFree|SwapFree|SwapCached|SwapTotal):/ {printf "%s%s ", $1, $2}' /proc/meminfo)
            u=$(uzramctl stat vm0 2>/dev/null | awk '$1 ~ /^(orig_data_size|mem_used_total|reserve_free|reserve_misses|reserve_released|failed_writes|discard_bytes|pages_compacted)$/ {printf "%s=%s ", $1, $2}')
            [[ -r /sys/block/zram0/mm_stat ]] && u="$u zram_mm_stat=$(tr -s ' ' , </sys/block/zram0/mm_stat)"
            echo "vmtest-monitor: ${SECONDS}s $m $u"
        done
    ) &
fi

rc=0
if [[ -x /vmtest/$case_name.sh ]]; then
    # shellcheck disable=SC2086
    /vmtest/$case_name.sh ${case_args//,/ } || rc=$?
else
    echo "vmtest: no case called '$case_name'"
    rc=1
fi
case $rc in
    0) echo "VMTEST: RESULT pass" ;;
    77) echo "VMTEST: RESULT skip" ;;
    *) echo "VMTEST: RESULT fail (exit $rc)" ;;
esac
sync
poweroff -f
