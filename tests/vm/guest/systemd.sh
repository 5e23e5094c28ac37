#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Case 4: systemd as PID 1.  Run by vmtest.service (systemd-job.sh) on a
# guest whose / is the host's under an overlay on the state disk; the host
# boots the same state disk twice (vm-systemd.sh).
#
#   systemd.sh install   first boot: meson install from the build tree,
#                        /etc/uzram/swap0.conf from the installed example
#                        (256M, mem-limit 128M, NBD on /run/uzram/swap0.nbd),
#                        systemctl enable uzramd@swap0 uzram-swap@swap0
#                        uzramd@swap0.socket
#   systemd.sh check     second boot: the boot finishes, without an ordering
#                        cycle, with both services active, swap on the loop
#                        device on the FUSE file and NBD served on systemd's
#                        socket; swap.target was reached only with that swap
#                        on; a reload applies a changed mem-limit; systemctl
#                        stop leaves no swap, loop device, FUSE mount or
#                        uzramd behind; then swap is started again and a
#                        holder puts 48M or more on it, for the poweroff
#                        that follows (the host reads how that went from the
#                        journal and the console)
#
# /vmtest/env (written by the host) names BUILD, the build tree, and
# PREFIX and DATADIR, where meson installs.
. /vmtest/lib.sh
. /vmtest/env

DEV=swap0
FILE=/run/uzram/$DEV.img
CONF=/etc/uzram/$DEV.conf
NBD=/run/uzram/$DEV.nbd
UNITS=(uzramd@$DEV.service uzram-swap@$DEV.service)
SOCKET=uzramd@$DEV.socket
# A stop may wait for swapoff, which reads every page back: bounded, so that
# a hang is a failure with a journal rather than the host's deadline.
STOP_DEADLINE=300

# What systemd and the units said, for a failure's post-mortem.
journal() {
    journalctl -b --no-pager -o short-monotonic -u "${UNITS[0]}" -u "${UNITS[1]}" | tail -n 40
}
fail_journal() {
    journal
    fail "$@"
}

# units_state: each unit's ActiveState, on one line.
units_state() {
    local u
    for u in "${UNITS[@]}"; do
        printf '%s=%s ' "$u" "$(systemctl is-active "$u")"
    done
}

# The loop devices whose backing file is the FUSE file.
loops_on_file() {
    losetup --noheadings --output NAME --associated "$FILE" 2>/dev/null
}

# socket_check: the NBD socket is systemd's (uzramd@NAME.socket), the
# daemon serves the device on it, and holds that very socket (the one
# listening socket bound to the path is open in both PID 1 and uzramd).
socket_check() {
    local size inode pid
    [[ $(systemctl is-active "$SOCKET") == active ]] || fail_journal "$SOCKET is $(systemctl is-active "$SOCKET")"
    size=$(nbdinfo --size "nbd+unix:///?socket=$NBD") || fail_journal "nbdinfo on $NBD"
    [[ $size == $((256 * MiB)) ]] || fail_journal "nbdinfo on $NBD: size $size"
    # /proc/net/unix: flags 00010000 is a listening socket.
    inode=$(awk -v p="$NBD" '$NF == p && $4 == "00010000" {print $7}' /proc/net/unix)
    [[ -n $inode && $inode != *$'\n'* ]] || fail_journal "want one socket listening on $NBD, have '$inode'"
    pid=$(systemctl show -P MainPID "${UNITS[0]}")
    [[ -n $(find /proc/1/fd -lname "socket:\[$inode\]" 2>/dev/null) ]] ||
        fail_journal "systemd does not hold the socket on $NBD"
    [[ -n $(find "/proc/$pid/fd" -lname "socket:\[$inode\]" 2>/dev/null) ]] ||
        fail_journal "uzramd ($pid) does not serve the socket systemd made on $NBD"
}

# swap_on_check: the units are active and swap is on one loop device on
# the FUSE file, at priority 100, the size of the device.  Sets LOOP.
swap_on_check() {
    local u
    for u in "${UNITS[@]}"; do
        [[ $(systemctl is-active "$u") == active ]] || fail_journal "$u is $(systemctl is-active "$u")"
    done
    swapon --show
    LOOP=$(loops_on_file)
    [[ -n $LOOP && $LOOP != *$'\n'* ]] || fail_journal "want one loop device on $FILE, have '$LOOP'"
    swapon --show=NAME,PRIO --noheadings --raw | awk -v d="$LOOP" '$1 == d && $2 == 100 {f = 1} END {exit !f}' ||
        fail_journal "swapon --show has no $LOOP at priority 100"
    [[ $(findmnt --noheadings --output FSTYPE --mountpoint "$FILE") == fuse* ]] ||
        fail_journal "$FILE is not a FUSE mount"
}

phase_install() {
    local example=$PREFIX/$DATADIR/doc/uzram/examples/swap0.conf u
    say "meson install -C $BUILD"
    meson install -C "$BUILD" --no-rebuild >/tmp/install.log 2>&1 ||
        { tail -n 30 /tmp/install.log; fail "meson install failed"; }
    grep -E 'uzramd|uzram-swap|\.service|\.socket' /tmp/install.log
    # libzspool under a prefix other than /usr is found through ld.so.cache
    # only, as with any library installed by hand.
    ldconfig || fail "ldconfig"
    [[ -f $example ]] || fail "meson install put no example at $example"
    mkdir -p /etc/uzram
    sed -e 's/^size = .*/size = 256M/' -e 's/^mem-limit = .*/mem-limit = 128M/' \
        -e "s|^#nbd-unix = .*|nbd-unix = $NBD|" "$example" >"$CONF"
    grep -q '^size = 256M$' "$CONF" && grep -q '^mem-limit = 128M$' "$CONF" &&
        grep -q "^nbd-unix = $NBD\$" "$CONF" ||
        fail "the example has no 'size =', 'mem-limit =' or '#nbd-unix =' line to change"
    # The NBD socket too: systemd makes it, the daemon serves on it.
    systemctl enable "${UNITS[@]}" "$SOCKET" || fail "systemctl enable ${UNITS[*]} $SOCKET"
    for u in "${UNITS[@]}" "$SOCKET"; do
        [[ $(systemctl is-enabled "$u") == enabled ]] || fail "$u is $(systemctl is-enabled "$u") after enable"
    done
}

phase_check() {
    local state t_swap t_target want i have u cg held
    # The boot is done when no job is left (vmtest.service is Type=simple,
    # so its own start job is not one of them).
    state=$(timeout 600 systemctl is-system-running --wait)
    say "after boot: system $state; $(units_state)"
    case $state in
        running) ;;
        degraded)
            # Someone else's unit may fail on this borrowed root; ours may not.
            systemctl --failed --no-legend --plain
            ;;
        *) fail_journal "the boot did not finish: '$state'" ;;
    esac
    # systemd breaks an ordering cycle by dropping a job, and boots on.
    journalctl -b --no-pager | grep -E 'ordering cycle' &&
        fail "systemd found an ordering cycle at boot"
    swap_on_check
    say "swap on $LOOP, on $FILE"
    socket_check
    say "NBD on $NBD: systemd's socket, served by uzramd"
    # For the record: how systemd orders what it made of the FUSE mount and
    # the swap, which the units cannot name (the loop device's number).
    for u in "$(systemd-escape --path --suffix=mount "$FILE")" \
        "$(systemd-escape --path --suffix=swap "$LOOP")"; do
        say "$u: before $(systemctl show -P Before "$u" | tr ' ' '\n' | grep -E '\.target$' | sort | xargs)"
    done
    t_swap=$(systemctl show -P ActiveEnterTimestampMonotonic "${UNITS[1]}")
    t_target=$(systemctl show -P ActiveEnterTimestampMonotonic swap.target)

    # A changed mem-limit, applied by a reload.  ExecReload only signals
    # the daemon, so wait (bounded) for the figure.
    [[ $(stat mem_limit) == $((128 * MiB)) ]] || fail_journal "mem_limit at boot: $(stat mem_limit)"
    sed -i 's/^mem-limit = .*/mem-limit = 96M/' "$CONF"
    systemctl reload "${UNITS[0]}" || fail_journal "systemctl reload ${UNITS[0]}"
    want=$((96 * MiB))
    for i in $(seq 1 300); do
        have=$(stat mem_limit)
        [[ $have == "$want" ]] && break
        sleep 0.1
    done
    [[ $have == "$want" ]] || fail_journal "mem_limit after reload: $have, want $want"
    say "reload: mem_limit $have (checked $i times)"
    swap_on_check

    # Stop undoes everything.
    timeout "$STOP_DEADLINE" systemctl stop "${UNITS[1]}" "${UNITS[0]}" ||
        fail_journal "systemctl stop: exit $?"
    say "after stop: $(units_state)"
    for u in "${UNITS[@]}"; do
        [[ $(systemctl is-active "$u") == inactive ]] || fail_journal "$u is $(systemctl is-active "$u") after stop"
    done
    [[ -z $(swapon --show --noheadings) ]] || fail_journal "swap left after stop: $(swapon --show --noheadings)"
    [[ -z $(losetup --list --noheadings) ]] || fail_journal "loop devices left after stop: $(losetup --list --noheadings)"
    [[ -z $(findmnt --noheadings --list --output TARGET,FSTYPE | awk '$2 ~ /^fuse($|\.)/') ]] ||
        fail_journal "FUSE mounts left after stop: $(findmnt --list --types fuse,fuse.uzramd)"
    pgrep -a -x uzramd && fail_journal "uzramd still runs after stop"

    # Swap again, left on for the poweroff, with pages on it that stay
    # there until systemd-shutdown kills what is left: the holder has no
    # default dependencies, so no stop job.  The swapoff at shutdown then
    # has pages to read back from uzramd, which must still serve them.
    timeout "$STOP_DEADLINE" systemctl start "${UNITS[1]}" || fail_journal "systemctl start ${UNITS[1]}"
    swap_on_check
    socket_check
    # No memory limit on it (swapoff must be able to bring its pages
    # back): memory.reclaim pushes them out.
    systemd-run --quiet --unit=vmtest-holder --property=DefaultDependencies=no \
        /usr/bin/python3 -c '
import os, signal
held = bytearray(os.urandom(1 << 20)) * 96
print("holding", len(held) >> 20, "MiB", flush=True)
signal.pause()' || fail "systemd-run the holder"
    cg=/sys/fs/cgroup$(systemctl show -P ControlGroup vmtest-holder.service)
    held=0
    for i in $(seq 1 300); do
        journalctl -b -u vmtest-holder.service -o cat | grep -q '^holding' && break
        sleep 0.2
    done
    for i in $(seq 1 100); do
        echo 96M >"$cg/memory.reclaim" 2>/dev/null
        held=$(cat "$cg/memory.swap.current" 2>/dev/null) || held=0
        ((held >= 48 * MiB)) && break
        sleep 0.2
    done
    ((held >= 48 * MiB)) || fail "the holder has $held bytes on swap, want 48M"
    say "swap on $LOOP again, with $((held / MiB))M of the holder's on it, left on for the poweroff"

    # swap.target means "swap is on": reached only once ours was.
    say "active since (monotonic us): ${UNITS[1]} $t_swap, swap.target $t_target"
    ((t_swap > 0 && t_swap <= t_target)) ||
        fail "swap.target was reached before ${UNITS[1]} had swap on"
    check_no_hung_task
}

case ${1:-} in
    install) phase_install ;;
    check) phase_check ;;
    *) fail "usage: systemd.sh install|check" ;;
esac
exit 0
