#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The bash completions of tools/completion, called as bash calls them: the
# line split into COMP_WORDS the way bash splits it (at blanks and at '='),
# COMP_CWORD on the word being completed, and the answer read from
# COMPREPLY.  Device names come from sockets made in a temporary directory:
# through --dir, through $XDG_RUNTIME_DIR/uzram as a user other than root,
# and through /run/uzram as root (inside a mount namespace of its own, with a
# tmpfs on /run, so that no running uzramd sees them).
#
#   test-completion.sh COMPLETION-DIR

set -euo pipefail
export LC_ALL=C

DIR=${1:?usage: $0 COMPLETION-DIR}
DIR=$(cd "$DIR" && pwd -P)
SELF=$(readlink -f "${BASH_SOURCE[0]}")

fail() { printf 'test-completion: FAIL: %s\n' "$*" >&2; exit 1; }

# complete_line FUNC WORD...: complete the last WORD (give '' for a new,
# empty word); prints COMPREPLY sorted, space-separated.
complete_line() {
    local func=$1
    shift
    COMP_WORDS=("$@")
    COMP_CWORD=$(($# - 1))
    COMP_LINE="$*"
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    "$func"
    # Not xargs: its echo would take a lone --help or --version for itself.
    printf '%s\n' "${COMPREPLY[@]}" | sort | paste -sd ' '
}

# expect WANT FUNC WORD...
expect() {
    local want=$1 got
    shift
    got=$(complete_line "$@")
    [[ $got == "$want" ]] || fail "$(printf "'%s' " "${@:2}")-> '$got', expected '$want'"
}

# make_sockets DIR NAME...: a listening-or-not Unix socket DIR/NAME for each.
make_sockets() {
    local d=$1
    shift
    mkdir -p "$d"
    python3 - "$d" "$@" <<'EOF'
import os, socket, sys
for name in sys.argv[2:]:
    s = socket.socket(socket.AF_UNIX)
    s.bind(os.path.join(sys.argv[1], name))
    s.close()
EOF
}

# Phases run in a child of this script (as another user, in a namespace).
case ${2:-} in
    --user-phase)
        # Not root: the run directory is $XDG_RUNTIME_DIR/uzram.
        # shellcheck source=/dev/null
        source "$DIR/uzramctl"
        expect 'alpha beta' _uzramctl uzramctl stat ''
        expect 'beta' _uzramctl uzramctl list alpha ''
        unset XDG_RUNTIME_DIR
        expect '' _uzramctl uzramctl stat ''
        exit 0 ;;
    --root-phase)
        mount -t tmpfs -o size=1M,mode=0755 uzram-completion-test /run
        make_sockets /run/uzram r0.sock r1.sock
        # shellcheck source=/dev/null
        source "$DIR/uzramctl"
        XDG_RUNTIME_DIR=/nonexistent expect 'r0 r1' _uzramctl uzramctl compact ''
        exit 0 ;;
esac

T=$(mktemp -d /tmp/uzram-completion-test.XXXXXX)
trap 'rm -rf "$T"' EXIT

for f in uzramctl uzramd; do
    bash -n "$DIR/$f" || fail "$f: syntax error"
done
# shellcheck source=/dev/null
source "$DIR/uzramctl"
# shellcheck source=/dev/null
source "$DIR/uzramd"
[[ $(complete -p uzramctl) == *'-F _uzramctl'* ]] || fail "uzramctl: no completion registered"
[[ $(complete -p uzramd) == *'-F _uzramd'* ]] || fail "uzramd: no completion registered"

# --- uzramctl ---------------------------------------------------------------
make_sockets "$T/run" uzram0.sock uzram1.sock swap0.sock .hidden.sock
touch "$T/run/notasocket.sock" "$T/run/uzram9.img"

expect 'compact idle list recompress set stat stop writeback' _uzramctl uzramctl ''
expect 'set stat stop' _uzramctl uzramctl s
expect 'compact' _uzramctl uzramctl --bytes c
expect '--bytes' _uzramctl uzramctl --b
expect '--version' _uzramctl uzramctl --vers
expect '--output --output-all' _uzramctl uzramctl --ou
opts=$(complete_line _uzramctl uzramctl --)
for o in --bytes --json --noheadings --output --output-all --raw --dir --help --version; do
    [[ " $opts " == *" $o "* ]] || fail "uzramctl --<TAB> lacks $o: $opts"
done
# Every long option in --help is offered (--limit, --threshold and --force
# after their verb), and nothing that is not there.
if [[ -n ${UZRAMCTL:-} ]]; then
    help_opts=$("$UZRAMCTL" --help | grep -oE -- '--[a-z-]+' | sort -u | paste -sd ' ')
    opts="$(complete_line _uzramctl uzramctl writeback x --) $(complete_line _uzramctl uzramctl recompress x --)"
    opts+=" $(complete_line _uzramctl uzramctl stop x --)"
    [[ $help_opts == "$(tr ' ' '\n' <<<"$opts" | sort -u | paste -sd ' ')" ]] ||
        fail "options offered ($opts) differ from --help ($help_opts)"
fi

# Devices: from --dir (either spelling), sockets only, no hidden ones.
expect 'swap0 uzram0 uzram1' _uzramctl uzramctl --dir "$T/run" stat ''
expect 'uzram0 uzram1' _uzramctl uzramctl stat --dir = "$T/run" uz
expect 'uzram0 uzram1' _uzramctl uzramctl --dir "$T/run" compact u
expect 'uzram0 uzram1' _uzramctl uzramctl --dir "$T/run" stop u
expect 'uzram0 uzram1' _uzramctl uzramctl --dir "$T/run" --reset u
expect '--force' _uzramctl uzramctl stop uzram0 --f
# list takes several, each once; stat and compact take one.
expect 'swap0 uzram1' _uzramctl uzramctl --dir "$T/run" list uzram0 ''
expect '' _uzramctl uzramctl --dir "$T/run" stat uzram0 ''
expect '--json' _uzramctl uzramctl --dir "$T/run" stat uzram0 --j
# A device given as its socket's path.
expect "$T/run/swap0.sock" _uzramctl uzramctl compact "$T/run/sw"
# An option argument is not taken for the verb.
expect 'compact idle list recompress set stat stop writeback' _uzramctl uzramctl --dir "$T/run" -o name ''

# set: a device, then keys, each once.
expect 'uzram0 uzram1' _uzramctl uzramctl --dir "$T/run" set uz
expect 'cold-after= compact-threshold= high-watermark= low-watermark= mem-limit= mem-used-max=' _uzramctl uzramctl --dir "$T/run" set uzram0 ''
expect 'mem-limit= mem-used-max=' _uzramctl uzramctl --dir "$T/run" set uzram0 mem
expect 'cold-after= compact-threshold= high-watermark= low-watermark= mem-used-max=' \
    _uzramctl uzramctl --dir "$T/run" set uzram0 mem-limit = 1G ''
expect '0' _uzramctl uzramctl --dir "$T/run" set uzram0 mem-used-max =
expect '' _uzramctl uzramctl --dir "$T/run" set uzram0 mem-limit =

# idle, writeback, recompress: a device, then which pages; --limit and
# --threshold only after their verb.
expect 'uzram0 uzram1' _uzramctl uzramctl --dir "$T/run" writeback uz
expect 'all' _uzramctl uzramctl --dir "$T/run" idle uzram0 ''
expect 'all huge huge_idle idle' _uzramctl uzramctl --dir "$T/run" writeback uzram0 ''
expect 'huge huge_idle' _uzramctl uzramctl --dir "$T/run" recompress uzram0 h
expect '' _uzramctl uzramctl --dir "$T/run" writeback uzram0 idle ''
expect '--limit' _uzramctl uzramctl writeback uzram0 idle --li
expect '' _uzramctl uzramctl stat uzram0 --li
expect '--threshold' _uzramctl uzramctl recompress uzram0 idle --thr
expect '' _uzramctl uzramctl writeback uzram0 idle --limit ''

# --output: column names, comma lists, '+', each column once.
cols='algorithm backing compr data disksize mem-limit mem-used migrated mountpoint name total written-back zero-pages'
expect "$cols" _uzramctl uzramctl --output ''
expect "$cols" _uzramctl uzramctl -o ''
expect "$cols" _uzramctl uzramctl --output =
expect 'mem-limit mem-used migrated mountpoint' _uzramctl uzramctl --output = m
expect 'name,data,mem-limit name,data,mem-used' _uzramctl uzramctl -o name,data,mem
expect 'data,disksize' _uzramctl uzramctl -o data,d
expect '+mem-limit +mem-used' _uzramctl uzramctl list -o +mem
expect '+name,data' _uzramctl uzramctl -o +name,da
# --dir completes directories.
mkdir "$T/somedir"
expect "$T/somedir" _uzramctl uzramctl --dir "$T/som"

# --- uzramd -------------------------------------------------------------------
expect 'lz4 lz4hc zstd' _uzramd uzramd --algorithm ''
expect 'lz4 lz4hc' _uzramd uzramd -a lz
expect 'zstd' _uzramd uzramd --algorithm = z
expect '--fuse --fuse-transport' _uzramd uzramd --fu
expect 'auto dev uring' _uzramd uzramd --fuse-transport ''
expect '--max-connections --mem-limit' _uzramd uzramd --m
opts=$(complete_line _uzramd uzramd --)
for o in --name --size --algorithm --level --fuse --nbd-unix --nbd-tcp --read-only \
    --max-connections --handshake-timeout --send-timeout --idle-timeout --control --control-group --group --admin-group --mem-limit \
    --compact-threshold --pidfile --foreground --threads --config --help --version; do
    [[ " $opts " == *" $o "* ]] || fail "uzramd --<TAB> lacks $o: $opts"
done
if [[ -n ${UZRAMD:-} ]]; then
    for o in $("$UZRAMD" --help | grep -oE -- '--[a-z-]+' | sort -u); do
        [[ " $opts " == *" $o "* ]] || fail "uzramd --help has $o, the completion does not"
    done
fi
expect 'compressed raw' _uzramd uzramd --backing-format ''
expect 'lru zspage' _uzramd uzramd --evict-policy ''
expect 'off on require' _uzramd uzramd --tls ''
expect 'require' _uzramd uzramd --tls = r
expect 'zstd' _uzramd uzramd --recompress-algorithm z
expect '' _uzramd uzramd --high-watermark ''
expect '' _uzramd uzramd --handshake-timeout ''
expect '' _uzramd uzramd --send-timeout ''
expect '' _uzramd uzramd --idle-timeout ''
touch "$T/disk.img" "$T/daemon.pid" "$T/swap0.conf"
for o in --fuse -F --pidfile -p --control -c --nbd-unix --config --backing; do
    expect "$T/daemon.pid $T/disk.img" _uzramd uzramd --size 1G "$o" "$T/d"
done
expect "$T/swap0.conf" _uzramd uzramd --config = "$T/sw"
# A name with a blank is one completion, not two.
touch "$T/a file.img"
# (called directly, outside a completion, compopt fails: not a test failure)
COMP_WORDS=(uzramd --fuse "$T/a"); COMP_CWORD=2; _uzramd || true
[[ ${#COMPREPLY[@]} == 1 && ${COMPREPLY[0]} == "$T/a file.img" ]] ||
    fail "--fuse '$T/a': got ${#COMPREPLY[@]} completions: ${COMPREPLY[*]}"
expect 'root' _uzramd uzramd --group roo
expect 'root' _uzramd uzramd --control-group roo
expect 'root' _uzramd uzramd --admin-group roo
expect '' _uzramd uzramd --size ''
expect '' _uzramd uzramd --name u

# --- the run directory ------------------------------------------------------
if ((EUID == 0)); then
    # As nobody, with $XDG_RUNTIME_DIR pointing at a directory it can read.
    if command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
        make_sockets "$T/xdg/uzram" alpha.sock beta.sock
        chmod -R a+rX "$T"
        XDG_RUNTIME_DIR=$T/xdg setpriv --reuid=nobody --regid=nogroup --clear-groups \
            bash "$SELF" "$DIR" --user-phase || fail "the run directory of a user"
    else
        echo "test-completion: no setpriv or no user nobody: the user's run directory not checked"
    fi
    # As root: /run/uzram, seen in a mount namespace of its own.
    if unshare --mount --propagation private true 2>/dev/null; then
        unshare --mount --propagation private bash "$SELF" "$DIR" --root-phase ||
            fail "root's run directory"
    else
        echo "test-completion: cannot unshare a mount namespace: root's run directory not checked"
    fi
else
    make_sockets "$T/xdg/uzram" alpha.sock beta.sock
    XDG_RUNTIME_DIR=$T/xdg bash "$SELF" "$DIR" --user-phase || fail "the run directory of a user"
fi

echo "test-completion: all checks passed"
