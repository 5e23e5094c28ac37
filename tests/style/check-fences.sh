#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Every Markdown file of the tree has its code fences in pairs: an opening
# fence (``` with an optional language word), then a closing fence that is
# ``` alone on its line.  Text after a closing fence makes a renderer take
# it for an opening one, and everything after it shows as code (the README
# had that once, before "Installing and uninstalling").
#
#   check-fences.sh SOURCE-DIR

set -euo pipefail
export LC_ALL=C

cd "${1:?usage: $0 SOURCE-DIR}"
mapfile -t files < <(git ls-files '*.md' 2>/dev/null || find . -name '*.md' -not -path './build*')
((${#files[@]} > 0)) || { echo "check-fences: no Markdown file found" >&2; exit 1; }

bad=0
for f in "${files[@]}"; do
    awk -v f="$f" '
        /^ ? ? ?```/ {
            line = $0
            sub(/^[ ]*```/, "", line)
            if (!open) {
                if (line !~ /^[A-Za-z0-9_+-]*[ \t]*$/) {
                    printf "%s:%d: an opening fence with more than a language word: %s\n", f, NR, $0
                    bad = 1
                }
                open = NR
            } else {
                if (line !~ /^[ \t]*$/) {
                    printf "%s:%d: text after a closing fence (opened at line %d): %s\n", f, NR, open, $0
                    bad = 1
                }
                open = 0
            }
        }
        END {
            if (open) {
                printf "%s:%d: a fence opened here is never closed\n", f, open
                bad = 1
            }
            exit bad
        }' "$f" >&2 || bad=1
done
((bad == 0)) || exit 1
echo "check-fences: ${#files[@]} Markdown files, every fence closed"
