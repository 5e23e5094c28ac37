#!/bin/bash
# SPDX-License-Identifier: MIT
#
# `meson install` into a temporary DESTDIR, then what an administrator and a
# library user would find there:
#   - uzramd and uzramctl in sbindir, executable, and nothing else there; no
#     test or benchmark program anywhere;
#   - libzspool with its soname link and development link, the SONAME
#     libzspool.so.0, no build directory left in any RUNPATH;
#   - include/zspool.h as in the source tree, and zspool.pc;
#   - every man page (uzramd.8, uzramctl.8, zspool.3, uzram.7, and
#     uzram.conf.5 once man/uzram.conf.5.scd exists), each rendering with
#     `man -l` and silent under `groff -man -ww -z`;
#   - the bash completions, which parse and register themselves;
#   - the systemd units, in a systemd/system directory, every program they
#     run installed, once systemd/meson.build exists;
#   - `uzramd --version` and `uzramctl --version`, run from DESTDIR against the
#     installed library, print the project's version;
#   - a small C program, compiled and linked with the flags pkg-config gives
#     for the installed zspool.pc, creates a pool, stores and reads back an
#     object and destroys the pool.
#
#   test-install.sh BUILD-DIR SOURCE-DIR
# with MESON, CC, SANITIZE, VERSION, PREFIX, SBINDIR, LIBDIR, INCLUDEDIR,
# MANDIR, MAN_BUILT and COMPLETIONSDIR from tests/install/meson.build.

set -euo pipefail
export LC_ALL=C

BUILD=${1:?usage: $0 BUILD-DIR SOURCE-DIR}
SRC=${2:?usage: $0 BUILD-DIR SOURCE-DIR}
for v in MESON CC SANITIZE VERSION PREFIX SBINDIR LIBDIR INCLUDEDIR MANDIR MAN_BUILT COMPLETIONSDIR; do
    [[ -n ${!v:-} ]] || { echo "test-install: $v is not set (run through meson test)" >&2; exit 1; }
done

failures=0
fail() { printf 'test-install: FAIL: %s\n' "$*" >&2; failures=$((failures + 1)); }
fatal() { printf 'test-install: FAIL: %s\n' "$*" >&2; exit 1; }
note() { printf 'test-install: %s\n' "$*"; }

T=$(mktemp -d /tmp/uzram-install-test.XXXXXX)
trap 'rm -rf "$T"' EXIT
D=$T/dest

"$MESON" install -C "$BUILD" --destdir "$D" --no-rebuild >"$T/install.log" 2>&1 ||
    { cat "$T/install.log" >&2; fatal "meson install failed"; }
note "installed into $D:"
(cd "$D" && find . -mindepth 1 \( -type f -o -type l \) | sort | sed 's/^\./    /')

# --- programs ---------------------------------------------------------------
for p in uzramd uzramctl; do
    [[ -f $D$SBINDIR/$p && -x $D$SBINDIR/$p ]] || fail "$SBINDIR/$p missing or not executable"
done
for f in "$D$SBINDIR"/* "$D$SBINDIR"/.[!.]*; do
    [[ -e $f || -L $f ]] || continue
    [[ ${f##*/} == uzramd || ${f##*/} == uzramctl ]] || fail "unexpected file in $SBINDIR: ${f##*/}"
done
strays=$(find "$D" -type f \( -name 'test-*' -o -name '*-bench' -o -name 'fuzz-*' \
    -o -name '*-compare' -o -name 'nbd-raw' -o -name 'nbd-bad' \) | sed "s|^$D||")
[[ -z $strays ]] || fail "tests or benchmarks installed: $strays"

# --- libzspool ----------------------------------------------------------------
L=$D$LIBDIR
[[ -f $L/libzspool.so.$VERSION && ! -L $L/libzspool.so.$VERSION ]] ||
    fail "$LIBDIR/libzspool.so.$VERSION missing"
[[ -L $L/libzspool.so.0 && $(readlink -f "$L/libzspool.so.0") == "$L/libzspool.so.$VERSION" ]] ||
    fail "$LIBDIR/libzspool.so.0 is not a link to libzspool.so.$VERSION"
[[ -L $L/libzspool.so && $(readlink -f "$L/libzspool.so") == "$L/libzspool.so.$VERSION" ]] ||
    fail "$LIBDIR/libzspool.so is not a link to libzspool.so.$VERSION"
if [[ -f $L/libzspool.so.$VERSION ]]; then
    soname=$(objdump -p "$L/libzspool.so.$VERSION" | awk '$1 == "SONAME" { print $2 }')
    [[ $soname == libzspool.so.0 ]] || fail "SONAME is '$soname', expected libzspool.so.0"
fi
for f in "$L/libzspool.so.$VERSION" "$D$SBINDIR/uzramd" "$D$SBINDIR/uzramctl"; do
    [[ -f $f ]] || continue
    if objdump -p "$f" | grep -E 'R(UN)?PATH' | grep -qF "$BUILD"; then
        fail "${f#"$D"} keeps the build directory in its RUNPATH"
    fi
done
if [[ -f $D$INCLUDEDIR/zspool.h ]]; then
    cmp -s "$D$INCLUDEDIR/zspool.h" "$SRC/include/zspool.h" ||
        fail "$INCLUDEDIR/zspool.h differs from include/zspool.h"
else
    fail "$INCLUDEDIR/zspool.h missing"
fi
[[ -f $L/pkgconfig/zspool.pc ]] || fail "$LIBDIR/pkgconfig/zspool.pc missing"

# --- man pages ----------------------------------------------------------------
pages=(man8/uzramd.8 man8/uzramctl.8 man3/zspool.3 man7/uzram.7)
[[ -f $SRC/man/uzram.conf.5.scd ]] && pages+=(man5/uzram.conf.5)
if [[ $MAN_BUILT == 1 ]]; then
    for p in "${pages[@]}"; do
        [[ -f $D$MANDIR/$p ]] || fail "$MANDIR/$p missing"
    done
    # Every page installed, expected or not, must render.
    while IFS= read -r -d '' page; do
        name=${page#"$D$MANDIR/"}
        MANWIDTH=80 MANPAGER=cat man -l "$page" >"$T/man.txt" 2>"$T/man.err" ||
            fail "man -l $name failed: $(cat "$T/man.err")"
        grep -q '^NAME' "$T/man.txt" || fail "man -l $name: no NAME section in the output"
        warn=$(groff -man -ww -z "$page" 2>&1) || fail "groff -man $name failed"
        [[ -z $warn ]] || fail "groff -man -ww -z $name warns: $warn"
    done < <(find "$D$MANDIR" -type f -print0 2>/dev/null)
else
    note "man pages not built (no scdoc, or -Dman=disabled): their checks skipped"
    [[ ! -d $D$MANDIR ]] || fail "man pages installed although not built"
fi

# --- bash completion --------------------------------------------------------
for c in uzramctl uzramd; do
    f=$D$COMPLETIONSDIR/$c
    if [[ ! -f $f ]]; then
        fail "$COMPLETIONSDIR/$c missing"
        continue
    fi
    bash -c 'source "$1" && complete -p "$2"' _ "$f" "$c" >"$T/complete.out" 2>&1 ||
        fail "$COMPLETIONSDIR/$c does not register a completion: $(cat "$T/complete.out")"
done

# --- systemd units ------------------------------------------------------------
if [[ -f $SRC/systemd/meson.build ]]; then
    for u in uzramd@.service uzram-swap@.service uzramd@.socket; do
        found=$(find "$D" -name "$u" | sed "s|^$D||")
        if [[ -z $found ]]; then
            fail "$u not installed"
        elif [[ $(dirname "$found") != */systemd/system ]]; then
            fail "$u installed in $(dirname "$found"), not a systemd/system directory"
        else
            # Every program a unit runs is installed (or is the system's, as
            # /bin/kill), and no @variable@ is left unsubstituted.
            grep -q '@[a-z_]*@' "$D$found" && fail "$u: unsubstituted $(grep -o '@[a-z_]*@' "$D$found" | head -1)"
            while read -r prog; do
                prog=${prog#Exec*=}
                prog=${prog##[-@:+!]}
                prog=${prog##[-@:+!]}
                if [[ -x $D$prog ]]; then
                    :
                elif [[ $prog == "$PREFIX"/* || ! -x $prog ]]; then
                    fail "$u runs $prog, which is not installed"
                fi
            done < <(grep -E '^Exec[A-Za-z]*=' "$D$found" | awk '{ print $1 }')
        fi
    done
else
    note "no systemd/meson.build yet: units not checked"
fi

# --- the installed programs ---------------------------------------------------
export LD_LIBRARY_PATH=$L
if [[ -x $D$SBINDIR/uzramd ]]; then
    lib=$(ldd "$D$SBINDIR/uzramd" | awk '$1 ~ /^libzspool\.so/ { print $3 }')
    [[ $lib == "$L/"* ]] || fail "installed uzramd does not load the installed libzspool (ldd: '$lib')"
    out=$("$D$SBINDIR/uzramd" --version 2>&1) || fail "uzramd --version failed: $out"
    [[ $out == "uzramd $VERSION" ]] || fail "uzramd --version printed '$out', expected 'uzramd $VERSION'"
fi
if [[ -x $D$SBINDIR/uzramctl ]]; then
    out=$("$D$SBINDIR/uzramctl" --version 2>&1) || fail "uzramctl --version failed: $out"
    [[ $out == "uzramctl from uzram $VERSION" ]] ||
        fail "uzramctl --version printed '$out', expected 'uzramctl from uzram $VERSION'"
fi

# --- a program against the installed libzspool ------------------------------
# pkgconf leaves out -I/usr/include and -L/usr/lib...; with a DESTDIR those
# are not system directories, so ask for them.
export PKG_CONFIG_PATH=$L/pkgconfig PKG_CONFIG_LIBDIR=$L/pkgconfig PKG_CONFIG_SYSROOT_DIR=$D
export PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 PKG_CONFIG_ALLOW_SYSTEM_LIBS=1
if [[ -f $L/pkgconfig/zspool.pc ]]; then
    v=$(pkg-config --modversion zspool) || fail "pkg-config --modversion zspool failed"
    [[ $v == "$VERSION" ]] || fail "zspool.pc says version '$v', expected $VERSION"
    flags=$(pkg-config --cflags --libs zspool) || fatal "pkg-config --cflags --libs zspool failed"
    [[ $flags == *"-I$D$INCLUDEDIR"* && $flags == *"-L$L"* && $flags == *-lzspool* ]] ||
        fail "pkg-config --cflags --libs zspool: '$flags' does not point into DESTDIR"
    cat >"$T/prog.c" <<'EOF'
#include <zspool.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    static const char msg[] = "stored by a program outside the tree";
    char back[sizeof(msg)];
    struct zs_pool_stats st;
    struct zs_pool *pool = zs_create(NULL, NULL);
    uint64_t h;

    if (!pool)
        return perror("zs_create"), 1;
    h = zs_malloc(pool, sizeof(msg));
    if (h == 0)
        return perror("zs_malloc"), 1;
    if (zs_write(pool, h, msg, sizeof(msg)) < 0 || zs_read(pool, h, back) < 0 ||
        memcmp(msg, back, sizeof(msg)) != 0)
        return fputs("object did not read back\n", stderr), 1;
    zs_get_stats(pool, &st);
    if (st.objects != 1)
        return fprintf(stderr, "%llu objects, expected 1\n", (unsigned long long)st.objects), 1;
    zs_free(pool, h);
    zs_get_stats(pool, &st);
    if (st.objects != 0)
        return fprintf(stderr, "%llu objects after zs_free\n", (unsigned long long)st.objects), 1;
    zs_destroy(pool);
    puts("ok");
    return 0;
}
EOF
    san=()
    [[ $SANITIZE == none ]] || san=("-fsanitize=$SANITIZE")
    # shellcheck disable=SC2086 # CC and the pkg-config flags are word lists
    if $CC -std=gnu11 -Wall -Wextra -Werror "${san[@]}" -o "$T/prog" "$T/prog.c" $flags \
        >"$T/cc.log" 2>&1; then
        out=$("$T/prog" 2>&1) || fail "the program linked against libzspool failed: $out"
        [[ $out == ok ]] || fail "the program linked against libzspool printed: $out"
        lib=$(ldd "$T/prog" | awk '$1 ~ /^libzspool\.so/ { print $3 }')
        [[ $lib == "$L/"* ]] || fail "the program did not load the installed libzspool (ldd: '$lib')"
    else
        fail "a program did not build against the installed zspool.pc: $(cat "$T/cc.log")"
    fi
fi

((failures == 0)) || fatal "$failures checks failed"
note "all checks passed"
