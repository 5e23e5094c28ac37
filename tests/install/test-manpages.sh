#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The man pages against the programs they describe: what the programs
# accept is read from the programs themselves (--help, and uzramd's answer
# to each option given as a key of a configuration file), and each piece
# must appear where a reader looks for it.
#
#   uzramd(8)       every option in the SYNOPSIS and under OPTIONS; every
#                   key of the file in --config's list of keys
#   uzram.conf(5)   every key under KEYS; every option that is not a key
#                   among those said to have none
#   uzramctl(8)     every option under OPTIONS, every verb in the
#                   SYNOPSIS, every key of `set` and every column
#
#   test-manpages.sh MAN-DIR        (UZRAMD and UZRAMCTL: the programs)

set -euo pipefail
export LC_ALL=C

MAN=${1:?usage: $0 MAN-DIR}
: "${UZRAMD:?}" "${UZRAMCTL:?}"

failures=0
miss() {
    printf 'test-manpages: FAIL: %s\n' "$*" >&2
    failures=$((failures + 1))
}

# section PAGE NAME: the lines of PAGE's section NAME (from "# NAME" to the
# next "# ").
section() {
    awk -v want="# $2" '/^# / { on = ($0 == want); next } on' "$MAN/$1"
}

# has TEXT NEEDLE: whether NEEDLE occurs in TEXT, as a fixed string.
has() { grep -qF -- "$2" <<<"$1"; }

# option_heading TEXT NAME: whether a heading line under OPTIONS names
# --NAME: "*--size* _SIZE_", "*-s*, *--size* _SIZE_", or one heading for
# two ("*--high-watermark* _PCT_, *--low-watermark* _PCT_").
option_heading() { grep -E -- '^\*-' <<<"$1" | grep -qF -- "*--$2*"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- uzramd(8) and uzram.conf(5) -------------------------------------------
d_synopsis=$(section uzramd.8.scd SYNOPSIS)
d_options=$(section uzramd.8.scd OPTIONS)
# --config's paragraph, up to the next option's heading.
d_keys=$(awk '/^\*--config\*/ { on = 1; next } on && /^\*/ { exit } on' \
    <<<"$d_options")
c_keys=$(section uzram.conf.5.scd KEYS)
mapfile -t d_opts < <("$UZRAMD" --help | grep -oE -- '--[a-z][a-z-]*' | sort -u)
((${#d_opts[@]} > 20)) || miss "uzramd --help names only ${#d_opts[@]} options"
keys=0
for o in "${d_opts[@]}"; do
    name=${o#--}
    case $name in help | version) continue ;; esac
    has "$d_synopsis" "*$o*" || miss "uzramd(8) SYNOPSIS lacks $o"
    option_heading "$d_options" "$name" || miss "uzramd(8) OPTIONS lacks $o"

    # A key or not: uzramd names an unknown key as such, and a known one
    # by its bad value (or takes it).
    printf '%s = x\n' "$name" >"$tmp/probe.conf"
    err=$("$UZRAMD" --config "$tmp/probe.conf" 2>&1 >/dev/null </dev/null || true)
    if has "$err" "unknown key '$name'"; then
        has "$c_keys" "*$o*" || miss "uzram.conf(5) does not say that $o has no key"
        continue
    fi
    keys=$((keys + 1))
    grep -qE -- "(^|[ ,])\*$name\* =" <<<"$c_keys" || miss "uzram.conf(5) KEYS lacks $name"
    has "$d_keys" "_${name}_" || miss "uzramd(8) --config's list of keys lacks $name"
done
((keys > 15)) || miss "only $keys of uzramd's options are keys of the file"

# --- uzramctl(8) -------------------------------------------------------------
help=$("$UZRAMCTL" --help)
c_synopsis=$(section uzramctl.8.scd SYNOPSIS)
c_options=$(section uzramctl.8.scd OPTIONS)
page=$(cat "$MAN/uzramctl.8.scd")
for o in $(grep -oE -- '--[a-z][a-z-]*' <<<"$help" | sort -u); do
    option_heading "$c_options" "${o#--}" || miss "uzramctl(8) OPTIONS lacks $o"
done
verbs=$(sed -n 's/^ uzramctl \([a-z]*\) .*/\1/p' <<<"$help")
[[ -n $verbs ]] || miss "uzramctl --help names no verb"
for v in $verbs; do
    has "$c_synopsis" "*$v*" || miss "uzramctl(8) SYNOPSIS lacks $v"
done
settings=$(awk '/^Settings/ { on = 1; next } on && /^$/ { exit } on { print $1 }' <<<"$help" |
    sed 's/=.*//')
[[ -n $settings ]] || miss "uzramctl --help names no setting"
for k in $settings; do
    has "$page" "*$k*" || miss "uzramctl(8) does not name the setting $k"
done
columns=$(awk '/^Available output columns/ { on = 1; next } on && /^See / { exit } on && NF { print $1 }' <<<"$help")
[[ -n $columns ]] || miss "uzramctl --help names no column"
for c in $columns; do
    has "$page" "*$c*" || miss "uzramctl(8) does not name the column $c"
done

((failures == 0)) || exit 1
echo "test-manpages: ${#d_opts[@]} uzramd options ($keys keys), uzramctl's options, verbs, settings and columns: all documented"
