# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# The corpus: sourced, never run.  The one recipe for the data that the
# benchmarks (through lib.sh) and the tests (through tests/lib/common.sh)
# fill devices with.  Only functions: no options set, no traps, nothing
# printed, so that both kinds of script can source it under their own rules
# for messages and failures.
#
# Why real files.  A device's figures depend on how its data compresses:
# random bytes are stored raw and zeros take no memory at all, and neither
# is what a user keeps on a disk or in swap.  /usr/lib and /usr/share (code,
# text, data files) are a mix closer to real use, and every machine that
# builds uzram has them.  A tar keeps them as one file, cut to the size
# wanted.
#
# Building 1 GiB takes longer than some of the tests, so a corpus is cached
# in /var/tmp under a name that says its size, and rebuilt only when it is
# missing or has the wrong size.
#
# zspool-bench (tools/bench/zspool-bench.c) has a recipe of its own, in C,
# for its default corpus: a tar of /usr/lib/x86_64-linux-gnu and
# /usr/share/doc, under the same name as a 256 MiB corpus here.  Either
# recipe's file satisfies the other (both check the size only).

# corpus_path BYTES: where a corpus of BYTES is cached:
# /var/tmp/uzram-corpus-1G.tar for whole GiBs, -256M.tar for MiBs.
corpus_path() {
    local bytes=$1
    if ((bytes % (1 << 30) == 0)); then
        printf '/var/tmp/uzram-corpus-%dG.tar\n' $((bytes >> 30))
    else
        printf '/var/tmp/uzram-corpus-%dM.tar\n' $((bytes >> 20))
    fi
}

# corpus_make FILE BYTES: make FILE the first BYTES of a tar of /usr/lib and
# /usr/share.  It is written beside FILE under a name of this process's own
# and renamed into place, so that a reader never sees half a corpus and two
# scripts building the same one at once do not write into each other's.
# Returns 1, leaving nothing behind, when the two trees hold less than
# BYTES.
corpus_make() {
    local file=$1 bytes=$2 part="$1.part.$$"
    # head closes the pipe once it has BYTES: tar's SIGPIPE is expected.
    tar -C / -cf - usr/lib usr/share 2>/dev/null | head -c "$bytes" >"$part" || true
    if [[ $(stat -c %s "$part" 2>/dev/null) != "$bytes" ]]; then
        rm -f "$part"
        return 1
    fi
    mv -f "$part" "$file"
}
