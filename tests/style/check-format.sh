#!/bin/bash
# SPDX-License-Identifier: MIT
#
# check-format.sh SOURCE_ROOT: every line of C changed since .clang-format
# came to the tree is laid out as .clang-format says.
#
# clang-format 14 (Debian 12's) cannot express all of the older code's
# layout (trailing comments kept at a column of the author's choosing,
# hand-wrapped printf arguments), so the tree is not reformatted wholesale:
# git clang-format checks the lines each change touches, from the commit
# that added .clang-format on.  Skips (77) without git, git-clang-format or
# that commit (a tarball, a shallow clone).
set -uo pipefail

root=${1:?usage: check-format.sh SOURCE_ROOT}
cd "$root" || exit 1

skip() { echo "check-format: skipped: $*" >&2; exit 77; }
command -v git >/dev/null || skip "no git"
command -v git-clang-format >/dev/null || skip "no git-clang-format (package clang-format)"
git rev-parse --git-dir >/dev/null 2>&1 || skip "$root is not a git checkout"
base=$(git log --diff-filter=A --format=%H -- .clang-format | tail -n 1)
[[ -n $base ]] || skip "the commit that added .clang-format is not in this clone"

out=$(git clang-format --diff --extensions c,h "$base" -- src include tools tests 2>&1)
case $out in
"no modified files to format" | "clang-format did not modify any files")
    echo "check-format: every C line changed since ${base:0:12} is formatted"
    exit 0 ;;
esac
echo "check-format: lines changed since ${base:0:12} that clang-format would lay out otherwise:" >&2
printf '%s\n' "$out" >&2
echo "check-format: fix with: git clang-format $base" >&2
exit 1
