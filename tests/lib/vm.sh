# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# The host side of the VM suite: fetch Debian's kernel, build the guest's
# root image from the build tree, boot it in qemu and judge what its serial
# console says.  Sourced by tests/vm/vm-test.sh, tests/vm/vm-systemd.sh and
# tools/bench/vm-swap-compare.
#
# It stands alone, on none of the other libraries here: those are for
# tests that run on this machine under `set -e` with a cleanup stack, while
# this runs qemu, under `set -u` only, and leaves nothing to undo but what
# a deadline kills.  Nor does the guest use them: its scripts are
# tests/vm/guest/, copied onto its root image (or the systemd case's state
# disk), and the busybox guest never sees this tree.
#
# The guest.  A Debian kernel package (the cloud flavour: it has nbd, loop,
# fuse, zram and zsmalloc as modules, and boots to init in about 3 s under
# TCG) unpacked from `apt-get download`, booted with a tiny initramfs that
# loads virtio_blk, mounts the root image read-only and hands over to
# /vmtest/init.  The root image is an ext4 file system made with
# `mkfs.ext4 -d` (no root, no loop device needed) holding busybox, bash,
# util-linux, nbd-client, kmod, the kernel's modules and uzram's binaries
# with every shared library they load.  Keeping them on a disk rather than
# in the initramfs matters under memory pressure: their pages are clean page
# cache the guest may drop and read again, as on a real machine, instead of
# unswappable tmpfs eating a fixed share of a 512 MiB guest.
#
# The console.  The guest prints `VMTEST: ` lines: `VMTEST: RESULT pass`
# (or fail, skip), `VMTEST: FIGURE key=value`.  vm_judge fails a run whose
# console shows a kernel oops, BUG, panic or hung-task report, whatever the
# result line says, and a run that printed no result (a hang: qemu is
# killed at the deadline).
#
# Caches live under $VM_CACHE (the build tree's tests/vm/cache): the
# unpacked kernel per package version, and the root image, rebuilt when any
# file that goes into it is newer than it.

# This file (an input of the guest's image), and the suite's guest scripts.
VM_LIB=$(readlink -f "${BASH_SOURCE[0]}")
VM_GUEST_DIR=$(cd "$(dirname "$VM_LIB")/../vm/guest" && pwd -P)

vm_say() { printf 'vm: %s\n' "$*" >&2; }

# vm_kernel FLAVOUR: unpack the kernel package that linux-image-FLAVOUR-amd64
# depends on into $VM_CACHE/kernel-PKG (once) and set VM_KVER, VM_KERNEL and
# VM_MODULES.  FLAVOUR generic means linux-image-amd64, Debian's kernel for
# real machines (it has 9p, virtiofs and overlayfs as modules, which the
# cloud flavour lacks).  Fails (1) with a message when the package cannot
# be had.
vm_kernel() {
    local flavour=$1 meta pkg dir suffix=$1-
    [[ $flavour == generic ]] && suffix=
    meta=linux-image-${suffix}amd64
    pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    if [[ -z $pkg ]] && ((EUID == 0)); then
        vm_say "apt-cache does not know $meta: running apt-get update"
        apt-get update -q >/dev/null 2>&1 || true
        pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    fi
    if [[ -z $pkg ]]; then
        # Offline, with a kernel unpacked earlier: use the newest one.
        dir=$(ls -d "$VM_CACHE"/kernel-linux-image-* 2>/dev/null |
            grep -E -- "/kernel-linux-image-[0-9.]+-[0-9]+-${suffix}amd64\$" | sort -V | tail -n 1)
        [[ -n $dir ]] || { vm_say "cannot find the package behind $meta"; return 1; }
        pkg=${dir##*/kernel-}
    fi
    dir=$VM_CACHE/kernel-$pkg
    (
        flock 9
        [[ -f $dir/.done ]] && exit 0
        rm -rf "$dir" "$dir.tmp" && mkdir -p "$dir.tmp" || exit 1
        vm_say "downloading $pkg"
        (cd "$dir.tmp" && apt-get download "$pkg" >/dev/null 2>&1) ||
            { vm_say "apt-get download $pkg failed"; exit 1; }
        dpkg-deb -x "$dir.tmp"/*.deb "$dir.tmp/root" && rm -f "$dir.tmp"/*.deb || exit 1
        mv "$dir.tmp" "$dir" && touch "$dir/.done"
    ) 9>"$VM_CACHE/kernel.lock" || return 1
    VM_KVER=${pkg#linux-image-}
    VM_KERNEL=$dir/root/boot/vmlinuz-$VM_KVER
    VM_MODULES=$dir/root/lib/modules/$VM_KVER
    [[ -f $VM_KERNEL && -d $VM_MODULES ]] || { vm_say "$pkg has no kernel in it"; return 1; }
}

# Copy the ELF file $2 and every shared library it loads into the staging
# root $1, each at its own absolute path (so RUNPATH and the loader's
# search work unchanged in the guest).
vm_copy_elf() {
    local root=$1 file=$2 lib
    install -D -m 0755 "$file" "$root$file"
    while read -r lib; do
        [[ -e $root$lib ]] && continue
        install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    done < <(ldd "$file" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
}

# The host programs the guest runs, besides busybox.
VM_HOST_PROGRAMS=(
    /bin/bash
    /sbin/mkswap /sbin/swapon /sbin/swapoff /sbin/losetup
    /bin/mount /bin/umount
    /usr/sbin/nbd-client
    /bin/kmod
    /bin/fusermount3
    /usr/bin/timeout
)

# vm_module_order MODULE...: the .ko files of MODULEs and of everything
# they depend on, each after its dependencies, one path a line.
vm_module_order() {
    local -A seen=()
    _vm_module_visit() {
        local m=$1 ko dep
        [[ -n ${seen[$m]:-} ]] && return 0
        seen[$m]=1
        ko=$(find "$VM_MODULES/kernel" -name "$m.ko" -print -quit)
        [[ -n $ko ]] || return 0       # built in
        for dep in $(modinfo -F depends "$ko" | tr ',' ' '); do
            _vm_module_visit "$dep"
        done
        echo "$ko"
    }
    local m
    for m in "$@"; do
        _vm_module_visit "$m"
    done
}

# vm_stage BUILD_ROOT DIR: lay out the guest's root file system in DIR.
vm_stage() {
    local build=$1 stage=$2 f
    mkdir -p "$stage" && cd "$stage" || return 1
    mkdir -p bin sbin usr/bin usr/sbin lib64 proc sys dev run tmp mnt etc root var/tmp \
        opt/uzram vmtest lib/modules || return 1
    install -m 0755 "$(command -v busybox)" bin/busybox || return 1
    # busybox for everything the host's programs below do not cover.
    for f in $(bin/busybox --list-full); do
        [[ -e $f ]] || ln -s /bin/busybox "$f" || return 1
    done
    for f in "${VM_HOST_PROGRAMS[@]}"; do
        [[ -x $f ]] || { vm_say "missing $f"; return 1; }
        rm -f ".$f"
        vm_copy_elf "$stage" "$f" || return 1
    done
    for f in modprobe insmod rmmod lsmod modinfo depmod; do
        rm -f "sbin/$f" && ln -s /bin/kmod "sbin/$f" || return 1
    done
    # uzram's binaries, laid out as in the build tree for their RUNPATH.
    for f in "${VM_BUILD_FILES[@]}"; do
        install -D -m 0755 "$build/$f" "opt/uzram/$f" || return 1
    done
    for f in "${VM_BUILD_PROGRAMS[@]}"; do
        ln -sf "/opt/uzram/$f" "usr/bin/${f##*/}" || return 1
        vm_copy_elf "$stage" "$build/$f" || return 1
    done
    rm -rf "./${build#/}"
    # The kernel's modules, indexed for modprobe (zram asks for its
    # compressor through request_module).
    cp -a "$VM_MODULES" lib/modules/ && depmod -b "$stage" "$VM_KVER" || return 1
    printf 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/:/bin/false\n' >etc/passwd
    printf 'root:x:0:\nnogroup:x:65534:\n' >etc/group
    : >etc/fstab
    cp "$VM_GUEST_DIR"/* vmtest/ && chmod 0755 vmtest/*.sh
}

# The build tree's files the guest gets (under /opt/uzram), and which of
# them are programs (linked into /usr/bin).
VM_BUILD_PROGRAMS=(src/daemon/uzramd tools/uzramctl/uzramctl tests/integration/swap-fill)
VM_BUILD_FILES=("${VM_BUILD_PROGRAMS[@]}" src/zspool/libzspool.so.0)

# vm_image BUILD_ROOT: build (or reuse) $VM_CACHE/root-$VM_KVER.img from the
# build tree's binaries, this folder's guest/ scripts and the kernel's
# modules.  Sets VM_IMAGE.
vm_image() {
    local build=$1 img f newest kib
    local -a inputs=("$VM_GUEST_DIR"/* "$VM_LIB")
    for f in "${VM_BUILD_FILES[@]}"; do
        [[ -f $build/$f ]] || { vm_say "$build/$f is not built"; return 1; }
        inputs+=("$build/$f")
    done
    img=$VM_CACHE/root-$VM_KVER.img
    VM_IMAGE=$img
    if [[ -f $img ]]; then
        newest=$(ls -t "${inputs[@]}" "$img" | head -n 1)
        [[ $newest == "$img" ]] && return 0
    fi
    for f in busybox mkfs.ext4 depmod modinfo; do
        command -v "$f" >/dev/null || { vm_say "building the guest image needs $f"; return 1; }
    done
    rm -rf "$VM_CACHE/stage"
    (vm_stage "$build" "$VM_CACHE/stage") || { vm_say "staging the guest root failed"; return 1; }
    # Room for the files and little else: the guest mounts it read-only.
    kib=$(du -sk "$VM_CACHE/stage" | awk '{print int($1 * 1.2) + 16384}')
    rm -f "$img.tmp"
    mkfs.ext4 -q -F -L vmroot -d "$VM_CACHE/stage" "$img.tmp" "${kib}k" >/dev/null 2>&1 ||
        { vm_say "mkfs.ext4 -d failed"; return 1; }
    mv "$img.tmp" "$img" && rm -rf "$VM_CACHE/stage"
}

# vm_initramfs: build (or reuse) the initramfs that mounts the root image.
# Sets VM_INITRD.
vm_initramfs() {
    local dir=$VM_CACHE/initramfs ko
    VM_INITRD=$VM_CACHE/initrd-$VM_KVER.cpio.gz
    [[ -f $VM_INITRD && $VM_INITRD -nt $VM_GUEST_DIR/initramfs-init ]] && return 0
    rm -rf "$dir" && mkdir -p "$dir"/{bin,dev,proc,sys,newroot,lib/modules} || return 1
    install -m 0755 "$(command -v busybox)" "$dir/bin/busybox" &&
        install -m 0755 "$VM_GUEST_DIR/initramfs-init" "$dir/init" || return 1
    # virtio_blk and what it needs, in load order.
    for ko in $(vm_module_order virtio_pci virtio_blk); do
        cp "$ko" "$dir/lib/modules/" && basename "$ko" .ko >>"$dir/lib/modules/order" || return 1
    done
    (cd "$dir" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$VM_INITRD.tmp" &&
        mv "$VM_INITRD.tmp" "$VM_INITRD"
}

# Whether KVM works here: nested KVM on these machines exists but dies on
# the first cmpxchg16b, so try a boot to the initramfs's first line.
# Cached per build tree.  Prints the accelerator options for qemu.
vm_accel() {
    local probe=$VM_CACHE/accel
    if [[ ! -f $probe ]]; then
        local accel=tcg
        if [[ -r /dev/kvm && -w /dev/kvm ]] &&
            timeout 30 qemu-system-x86_64 -accel kvm -cpu host -m 256 -nographic \
                -no-reboot -kernel "$VM_KERNEL" -initrd "$VM_INITRD" \
                -append "console=ttyS0 panic=-1 vmtest.probe=1" 2>/dev/null </dev/null |
            grep -q 'VMTEST: PROBE ok'; then
            accel=kvm
        fi
        echo "$accel" >"$probe"
    fi
    case $(cat "$probe") in
        kvm) echo "-accel kvm -cpu host" ;;
        *) echo "-accel tcg,thread=multi -cpu max" ;;
    esac
}

# vm_prepare BUILD_ROOT [FLAVOUR]: everything a boot needs.
vm_prepare() {
    local build flavour=${2:-cloud}
    build=$(cd "$1" && pwd -P) || return 1
    VM_CACHE=${VM_CACHE:-$build/tests/vm/cache}
    mkdir -p "$VM_CACHE" || return 1
    command -v qemu-system-x86_64 >/dev/null || { vm_say "qemu-system-x86_64 is not installed"; return 1; }
    vm_kernel "$flavour" || return 1
    (
        flock 9
        vm_initramfs && vm_image "$build"
    ) 9>"$VM_CACHE/image.lock" || return 1
    VM_INITRD=$VM_CACHE/initrd-$VM_KVER.cpio.gz
    VM_IMAGE=$VM_CACHE/root-$VM_KVER.img
    VM_ACCEL=$(vm_accel)
}

# vm_boot LOG DEADLINE MEM_MIB CASE [ARGS...]: boot the guest on the root
# image and run /vmtest/CASE.sh ARGS, with the serial console in LOG.  qemu
# is killed at DEADLINE seconds.  Returns qemu's status (124 on the
# deadline).  For a look inside a hang: VM_LOGLEVEL=7 lets the kernel's
# stack traces through to the console, VM_SYSRQ=SECONDS has the guest
# dump every task's stack (sysrq t) after that long, and VM_MONITOR=SECONDS
# has it print free memory and uzramd's reserve figures that often.
vm_boot() {
    local log=$1 deadline=$2 mem=$3 case=$4
    shift 4
    local args="$*" rc=0 mon=
    # The arguments travel on the kernel command line, spaces as commas.
    args=${args// /,}
    local -a accel monitor
    vm_qemu_prepare
    timeout -k 10 "$deadline" qemu-system-x86_64 "${accel[@]}" -smp 2 -m "$mem" \
        -nographic -no-reboot "${monitor[@]}" -serial stdio \
        -kernel "$VM_KERNEL" -initrd "$VM_INITRD" \
        -drive "file=$VM_IMAGE,format=raw,if=virtio,readonly=on" \
        -append "console=ttyS0 panic=-1 oops=panic loglevel=${VM_LOGLEVEL:-4} vmtest.case=$case vmtest.args=$args${VM_MONITOR:+ vmtest.monitor=$VM_MONITOR}${VM_UZRAMD_ENV:+ vmtest.env=$VM_UZRAMD_ENV}" \
        </dev/null >"$log" 2>&1 || rc=$?
    [[ -n $mon ]] && rm -f "$mon"
    return "$rc"
}

# vm_qemu_prepare: for vm_boot and vm_sd_boot, which declare them local:
# accel, qemu's accelerator arguments, and monitor, its monitor; with
# VM_SYSRQ, mon, the monitor's socket, and vm_sysrq_later started on it.
vm_qemu_prepare() {
    read -r -a accel <<<"$VM_ACCEL"
    monitor=(-monitor none)
    if [[ -n ${VM_SYSRQ:-} ]]; then
        mon=$VM_CACHE/monitor.$$
        monitor=(-monitor "unix:$mon,server=on,wait=off")
        vm_sysrq_later "$mon" "$VM_SYSRQ" &
    fi
}

# vm_sysrq_later MONITOR SECONDS: after SECONDS, press SysRq-8 (every
# message to the console: the dumps are KERN_INFO), SysRq-w (blocked
# tasks), SysRq-t (every task) and SysRq-m (memory) on the guest's keyboard
# through qemu's monitor, and SysRq-w once more a minute later, to tell a
# deadlock (the same stacks) from a livelock: the kernel answers even when
# nothing in user space can run any more.
vm_sysrq_later() {
    sleep "$2"
    /usr/bin/python3 - "$1" <<'PY' 2>/dev/null || true
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
for key in ("8", "w", "t", "m", 60, "w"):
    if isinstance(key, int):
        time.sleep(key)
        continue
    s.sendall(("sendkey alt-sysrq-%s\n" % key).encode())
    time.sleep(2)
PY
}

# vm_judge LOG: 0 if the console says pass and shows no kernel trouble, 77
# if the guest skipped, 1 otherwise (with the reason on stderr).
vm_judge() {
    local log=$1 result
    if grep -Eq 'blocked for more than [0-9]+ seconds' "$log"; then
        vm_say "the guest kernel reported a hung task:"
        grep -E -A 12 'blocked for more than' "$log" | head -n 40 >&2
        return 1
    fi
    if grep -Eq 'Oops|BUG:|Kernel panic|general protection fault|WARNING: CPU' "$log"; then
        vm_say "the guest kernel reported trouble:"
        grep -E -B 2 -A 20 'Oops|BUG:|Kernel panic|general protection fault|WARNING: CPU' "$log" |
            head -n 60 >&2
        return 1
    fi
    result=$(sed -n 's/.*VMTEST: RESULT \([a-z]*\).*/\1/p' "$log" | tail -n 1)
    case $result in
        pass) return 0 ;;
        skip) return 77 ;;
        fail) vm_say "the guest's test failed"; return 1 ;;
        *) vm_say "the guest printed no result (a hang, or it died)"; return 1 ;;
    esac
}

# vm_figure LOG KEY: the value of the last `VMTEST: FIGURE KEY=value`.
vm_figure() {
    sed -n "s/.*VMTEST: FIGURE $2=\([^[:space:]]*\).*/\1/p" "$1" | tail -n 1
}

# ---- A guest that boots into systemd ---------------------------------------
#
# The systemd case (vm-systemd.sh) needs a whole Debian system, not the
# busybox root above.  It takes the host's: the host's / is shared with the
# guest read-only over 9p, as the lower layer of an overlayfs whose upper
# layer is a small ext4 disk of the case's own (the state disk).  The
# initramfs mounts both and switch_roots into the host's /lib/systemd/systemd.
# So the guest runs the host's systemd, udev, meson and build tree (at the
# same paths), and everything it writes (meson install into the prefix,
# systemctl enable, /etc/uzram) lands on the state disk, which survives a
# "reboot": the host boots qemu again on the same disk.  The cloud kernel
# has no 9p, so this guest runs Debian's generic kernel; its modules are
# reached through a symlink in the upper layer to the cached package, over
# 9p, since the host's /lib/modules has nothing for it.

# The modules the initramfs loads, each after what it depends on:
# virtio_blk for the state disk, ext4 on it (crc32c for its checksums, a
# request_module that the initramfs cannot answer), 9p over virtio for the
# host's /, overlay for the two together.
VM_SD_INITRD_MODULES=(virtio_pci virtio_blk crc32c_generic ext4 9pnet_virtio 9p overlay)

# vm_sd_prepare BUILD_ROOT: the generic kernel, its modules indexed for
# modprobe, and the initramfs.  Sets VM_CACHE, VM_KVER, VM_KERNEL,
# VM_MODULES, VM_INITRD and VM_ACCEL.
vm_sd_prepare() {
    local build
    build=$(cd "$1" && pwd -P) || return 1
    VM_CACHE=${VM_CACHE:-$build/tests/vm/cache}
    mkdir -p "$VM_CACHE" || return 1
    command -v qemu-system-x86_64 >/dev/null || { vm_say "qemu-system-x86_64 is not installed"; return 1; }
    command -v depmod >/dev/null || { vm_say "indexing the guest's modules needs depmod"; return 1; }
    # The guest runs the host's systemd and udev (without udev, no device
    # units: systemd's view of loop devices and swap is not a real machine's).
    [[ -x /lib/systemd/systemd ]] || { vm_say "the host has no systemd for the guest to run"; return 1; }
    [[ -x /lib/systemd/systemd-udevd ]] || { vm_say "the host has no udev for the guest to run"; return 1; }
    vm_kernel generic || return 1
    # The package ships no modules.dep: its postinst makes it.
    (
        flock 9
        [[ -f $VM_MODULES/modules.dep.bin ]] || depmod -b "${VM_MODULES%/lib/modules/*}" "$VM_KVER"
    ) 9>"$VM_CACHE/kernel.lock" || { vm_say "depmod for $VM_KVER failed"; return 1; }
    (
        flock 9
        vm_sd_initramfs
    ) 9>"$VM_CACHE/image.lock" || return 1
    VM_INITRD=$VM_CACHE/initrd-overlay-$VM_KVER.cpio.gz
    VM_ACCEL=$(vm_accel)
}

# vm_sd_initramfs: build (or reuse) the initramfs that mounts the overlay
# root.  Sets VM_INITRD.
vm_sd_initramfs() {
    local dir=$VM_CACHE/initramfs-overlay init=$VM_GUEST_DIR/initramfs-overlay ko
    VM_INITRD=$VM_CACHE/initrd-overlay-$VM_KVER.cpio.gz
    [[ -f $VM_INITRD && $VM_INITRD -nt $init && $VM_INITRD -nt $VM_LIB ]] && return 0
    rm -rf "$dir" && mkdir -p "$dir"/{bin,dev,proc,sys,newroot,lower,disk,lib/modules} || return 1
    install -m 0755 "$(command -v busybox)" "$dir/bin/busybox" &&
        install -m 0755 "$init" "$dir/init" || return 1
    for ko in $(vm_module_order "${VM_SD_INITRD_MODULES[@]}"); do
        cp "$ko" "$dir/lib/modules/" && basename "$ko" .ko >>"$dir/lib/modules/order" || return 1
    done
    (cd "$dir" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$VM_INITRD.tmp" &&
        mv "$VM_INITRD.tmp" "$VM_INITRD"
}

# vm_sd_state IMAGE STAGE: make IMAGE, a fresh state disk whose upper layer
# starts as the directory STAGE (laid out as the guest's /).  The files may
# belong to any user here: the initramfs gives them to root at the first
# boot.  Room for meson install, the journal and what the units write.
vm_sd_state() {
    local img=$1 stage=$2 top
    top=$(mktemp -d "${img%/*}/state.XXXXXX") || return 1
    mkdir -m 0755 "$top/work" && cp -a "$stage" "$top/upper" && chmod 0755 "$top/upper" &&
        rm -f "$img" &&
        mkfs.ext4 -q -F -L vmstate -d "$top" "$img" 512M >/dev/null 2>&1 ||
        { vm_say "making the state disk $img failed"; rm -rf "$top"; return 1; }
    rm -rf "$top"
}

# vm_sd_boot LOG DEADLINE MEM_MIB STATE CASE [ARGS...]: boot the generic
# kernel on the host's / with the state disk STATE as the overlay's upper
# layer, into systemd; the case (a unit on STATE) reads vmtest.case and
# vmtest.args from the kernel command line.  As vm_boot otherwise
# (VM_LOGLEVEL, VM_SYSRQ; 124 on the deadline).  The machine's reboot ends
# qemu (-no-reboot): a second boot is a second call.
vm_sd_boot() {
    local log=$1 deadline=$2 mem=$3 state=$4 case=$5
    shift 5
    local args="$*" rc=0 mon=
    args=${args// /,}
    local -a accel monitor
    vm_qemu_prepare
    # multidevs=remap: the host's / spans several file systems (/proc,
    # /dev...), whose inode numbers would collide in one 9p export.
    timeout -k 10 "$deadline" qemu-system-x86_64 "${accel[@]}" -smp 2 -m "$mem" \
        -nographic -no-reboot "${monitor[@]}" -serial stdio -nic none \
        -kernel "$VM_KERNEL" -initrd "$VM_INITRD" \
        -drive "file=$state,format=raw,if=virtio" \
        -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
        -append "console=ttyS0 panic=-1 oops=panic loglevel=${VM_LOGLEVEL:-4} vmtest.case=$case vmtest.args=$args" \
        </dev/null >"$log" 2>&1 || rc=$?
    [[ -n $mon ]] && rm -f "$mon"
    return "$rc"
}
