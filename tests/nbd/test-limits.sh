#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The limits a client runs into, each on its own daemon:
#   --read-only          writes, trims and write-zeroes get EPERM; reads
#                        and flushes work; nothing changes
#   --mem-limit 16M      64 MiB of random data (it does not compress) over
#                        libnbd: a write fails with ENOSPC before 16 MiB
#                        more is stored, everything stored before reads back
#                        intact, zeros still go in, a trim makes room
#   requests over 1 MiB  served by the connection's thread in pieces rather
#                        than in a worker's job buffer: 32 MiB written and
#                        read back, with structured and with simple replies;
#                        one that fails half-way at the memory limit gets
#                        ENOSPC, keeps what it wrote first, and the
#                        connection goes on
#   --max-connections 16 20 connections at once: 16 are served, the other
#                        4 refused or closed (not left hanging), the 16 are
#                        not disturbed, and after 4 close, 4 new ones are
#                        served

# shellcheck source=tests/lib/nbd.sh
. "$(dirname "$0")/../lib/nbd.sh"

require_cmd python3
require_binaries
NBD_IO=${1:?usage: $0 UZRAMD UZRAMCTL NBD-IO NBD-BAD}
NBD_BAD=${2:?usage: $0 UZRAMD UZRAMCTL NBD-IO NBD-BAD}

make_tmpdir uznbd

# ---- --read-only ----------------------------------------------------------------
start_nbd_daemon 64M --read-only
"$NBD_BAD" readonly "$NBD_URI" || fail "nbd-bad readonly failed"
"$NBD_IO" "$NBD_URI" "fail-write:0:4K:EPERM" "fail-write:$((64 * MiB - 1)):1:EPERM" \
    "read:0:64M:0" || fail "the read-only export took a write or does not read as zeros"
json=$(stat_json)
orig=$(json_int "$json" orig_data_size)
((orig == 0)) || fail "orig_data_size is $orig on a read-only device after refused writes"
require_alive "writes to a read-only export"
stop_nbd_daemon

# ---- --mem-limit ----------------------------------------------------------------
start_nbd_daemon 1G --mem-limit 16M
"$NBD_BAD" memlimit "$NBD_URI" || fail "nbd-bad memlimit failed"
json=$(stat_json)
used_max=$(json_int "$json" mem_used_max)
failed_writes=$(json_int "$json" failed_writes)
log "mem_used_max $used_max, failed_writes $failed_writes"
((used_max <= 16 * MiB)) || fail "mem_used_max $used_max is over the 16 MiB limit"
((failed_writes > 0)) || fail "failed_writes is 0 after a write failed with ENOSPC"
require_alive "the memory limit"
stop_nbd_daemon

# ---- requests too large for a job buffer ---------------------------------------
start_nbd_daemon 64M
"$NBD_IO" "$NBD_URI" "rand:1M:32M:7" "check:1M:32M:7" "check:9M:1M:7" ||
    fail "a 32 MiB write and read (structured replies) did not come back intact"
NBD_IO_SIMPLE=1 "$NBD_IO" "$NBD_URI" "check:1M:32M:7" "rand:20M:3M:9" "check:20M:3M:9" \
    "check:1M:19M:7" || fail "large requests with simple replies did not come back intact"
require_alive "32 MiB requests"
stop_nbd_daemon

start_nbd_daemon 256M --mem-limit 8M
# Random data does not compress: the limit stops the write within its first
# 8 MiB; what went in before the failing piece stays, the rest is untouched.
"$NBD_IO" "$NBD_URI" "fail-write:0:32M:ENOSPC" "write:40M:2M:0x5a" "read:40M:2M:0x5a" ||
    fail "a 32 MiB write at the memory limit did not fail with ENOSPC, or the connection broke"
NBD_IO_SIMPLE=1 "$NBD_IO" "$NBD_URI" "read:40M:2M:0x5a" "read:32M:8M:0" ||
    fail "after a failed large write: what it never reached is not zeros"
failed=$(stat_field failed_writes)
((failed > 0)) || fail "the failed large write was not counted in failed_writes"
require_alive "a large write at the memory limit"
stop_nbd_daemon

# ---- --max-connections --------------------------------------------------------
start_nbd_daemon 64M --max-connections 16
"$NBD_BAD" conns "$NBD_URI" 16 4 || fail "nbd-bad conns 16 4 failed"
require_alive "20 connections"
"$NBD_IO" "$NBD_URI" "rand:60M:1M:5" "check:60M:1M:5" ||
    fail "after the connection test a new connection did not serve"
stop_nbd_daemon
log "PASS"
