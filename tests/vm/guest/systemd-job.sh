#!/bin/bash
# SPDX-License-Identifier: MIT
#
# What vmtest.service runs in the systemd case: /vmtest/CASE.sh with the
# arguments from the kernel command line (vmtest.case=CASE
# vmtest.args=A,B,...), its verdict on the console as init.sh prints it for
# the other cases.  The unit powers the machine off when this exits.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

case_name= case_args=
for word in $(cat /proc/cmdline); do
    case $word in
        vmtest.case=*) case_name=${word#vmtest.case=} ;;
        vmtest.args=*) case_args=${word#vmtest.args=} ;;
    esac
done
echo "VMTEST: BOOT $(uname -r) mem_kb=$(awk '/MemTotal/ {print $2}' /proc/meminfo) case=$case_name args=$case_args"

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
exit 0
