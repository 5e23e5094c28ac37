#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The FUSE file's own semantics, with each codec: reads and writes of any
# offset and length (partial pages read-modify-written) checked against a
# plain reference file; lseek SEEK_DATA/SEEK_HOLE from the slot table;
# fallocate PUNCH_HOLE and ZERO_RANGE as discards; the file's size fixed at
# the device's size, and nothing written past its end.  The I/O goes to
# the file itself (no loop device), with and without O_DIRECT.

# shellcheck source=tests/lib/uzramd.sh
. "$(dirname "$0")/../lib/uzramd.sh"

require_root
require_fuse
require_cmd python3
require_binaries

make_tmpdir uzit

for alg in "lz4" "lz4hc --level 9" "zstd --level 3"; do
    # shellcheck disable=SC2086
    start_daemon 64M --algorithm $alg
    got=$("$UZRAMCTL" stat "$DEV_SOCK" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["algorithm"])') ||
        fail "uzramctl stat --json has no algorithm"
    [[ $got == "${alg%% *}" ]] || fail "started with --algorithm $alg, stat says '$got'"
    log "algorithm $alg"
    python3 - "$DEV_FILE" "$TMPD/ref" "$$" <<'EOF' || fail "FUSE file semantics with --algorithm $alg"
import ctypes, errno, os, random, sys
libc = ctypes.CDLL(None, use_errno=True)

def fallocate(fd, mode, off, n):
    # Python's os has posix_fallocate only; punching holes needs the real one.
    if libc.fallocate(fd, mode, ctypes.c_int64(off), ctypes.c_int64(n)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))

path, refpath, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
SIZE, PAGE = 64 << 20, 4096
rng = random.Random(seed)

assert os.stat(path).st_size == SIZE, "size %d" % os.stat(path).st_size
fd = os.open(path, os.O_RDWR)
ref = bytearray(SIZE)

# A fresh device is one hole: SEEK_DATA finds nothing.
try:
    os.lseek(fd, 0, os.SEEK_DATA)
    raise SystemExit("SEEK_DATA on an empty device found data")
except OSError as e:
    assert e.errno == errno.ENXIO, e
assert os.lseek(fd, 0, os.SEEK_HOLE) == 0

def data(n):
    # Compressible text, random bytes, zeros or a same-filled run.
    k = rng.randrange(4)
    if k == 0:
        return (b"uzram %d " % rng.randrange(1000) * (n // 8 + 2))[:n]
    if k == 1:
        return rng.randbytes(n)
    if k == 2:
        return bytes(n)
    return bytes([rng.randrange(256)]) * n

def check(off, n):
    got = os.pread(fd, n, off)
    if got != bytes(ref[off:off + n]):
        i = next(i for i in range(n) if got[i:i + 1] != ref[off + i:off + i + 1])
        raise SystemExit("mismatch at %d (read %d+%d)" % (off + i, off, n))

# Unaligned writes and reads, dense in the first 4 MiB so they overlap.
for step in range(3000):
    span = 4 << 20 if step % 4 else SIZE
    n = rng.choice((1, 7, 100, 511, 4095, 4096, 4097, 9000, 70000))
    off = rng.randrange(span - n)
    b = data(n)
    assert os.pwrite(fd, b, off) == n
    ref[off:off + n] = b
    if step % 10 == 0:
        m = rng.randrange(1, 200000)
        o = rng.randrange(SIZE - m)
        check(o, m)
check(0, SIZE)

# SEEK_DATA/SEEK_HOLE: a clean region, one page of data in it.
fallocate(fd, 0x02 | 0x01, 32 << 20, 16 << 20)  # PUNCH_HOLE|KEEP_SIZE
ref[32 << 20:48 << 20] = bytes(16 << 20)
check(32 << 20, 16 << 20)
os.pwrite(fd, b"x" * PAGE, 40 << 20)
ref[40 << 20:(40 << 20) + PAGE] = b"x" * PAGE
d = os.lseek(fd, 32 << 20, os.SEEK_DATA)
assert d == 40 << 20, "SEEK_DATA from 32M: %d" % d
h = os.lseek(fd, 40 << 20, os.SEEK_HOLE)
assert h == (40 << 20) + PAGE, "SEEK_HOLE from 40M: %d" % h

# Punch a hole through partial pages: the partial ends become zeros too.
fallocate(fd, 0x02 | 0x01, 1000, 3 * PAGE)
ref[1000:1000 + 3 * PAGE] = bytes(3 * PAGE)
check(0, 8 * PAGE)

# ZERO_RANGE, where the kernel passes it to FUSE.
try:
    fallocate(fd, 0x10 | 0x01, 2 << 20, 100000)  # ZERO_RANGE|KEEP_SIZE
    ref[2 << 20:(2 << 20) + 100000] = bytes(100000)
    print("test-io: ZERO_RANGE passed through", file=sys.stderr)
except OSError as e:
    assert e.errno in (errno.EOPNOTSUPP, errno.ENOSYS), e
    print("test-io: ZERO_RANGE not passed to FUSE:", e, file=sys.stderr)
check(0, SIZE)

# Nothing goes past the end, and the size does not change.
try:
    n = os.pwrite(fd, b"y" * PAGE, SIZE)
    assert n == 0, "wrote %d bytes past the end" % n
except OSError as e:
    assert e.errno in (errno.ENOSPC, errno.EFBIG, errno.EINVAL), e
try:
    n = os.pwrite(fd, b"y" * PAGE, SIZE - 100)
    assert n <= 100, "wrote %d bytes across the end" % n
    ref[SIZE - 100:SIZE - 100 + n] = b"y" * n
except OSError as e:
    assert e.errno in (errno.ENOSPC, errno.EFBIG, errno.EINVAL), e
assert os.pread(fd, PAGE, SIZE) == b"", "read past the end returned data"
assert os.fstat(fd).st_size == SIZE
# Far past the end: no data, no error, no growth; the same for SEEK_*.
assert os.pread(fd, PAGE, 1 << 62) == b"", "read at 2^62 returned data"
try:
    os.pwrite(fd, b"z", 1 << 62)
    raise SystemExit("a write at 2^62 succeeded")
except OSError as e:
    assert e.errno in (errno.ENOSPC, errno.EFBIG, errno.EINVAL), e
for whence in (os.SEEK_DATA, os.SEEK_HOLE):
    for off in (SIZE, SIZE + 1, 1 << 62):
        try:
            os.lseek(fd, off, whence)
            raise SystemExit("lseek(%d, %d) past the end succeeded" % (off, whence))
        except OSError as e:
            assert e.errno == errno.ENXIO, e
assert os.lseek(fd, SIZE - 1, os.SEEK_HOLE) in (SIZE - 1, SIZE)
# fallocate(2)'s rules: PUNCH_HOLE needs KEEP_SIZE, and does not go with
# ZERO_RANGE; a refused call changes nothing.
os.pwrite(fd, b"k" * PAGE, 8 * PAGE)
ref[8 * PAGE:9 * PAGE] = b"k" * PAGE
for mode, want in ((0x02, errno.EOPNOTSUPP), (0x12, (errno.EINVAL, errno.EOPNOTSUPP)),
                   (0x13, (errno.EINVAL, errno.EOPNOTSUPP)), (0x08, (errno.EOPNOTSUPP, errno.EINVAL))):
    try:
        fallocate(fd, mode, 8 * PAGE, PAGE)
        raise SystemExit("fallocate mode %#x succeeded" % mode)
    except OSError as e:
        assert e.errno == want or (isinstance(want, tuple) and e.errno in want), (mode, e)
check(8 * PAGE, PAGE)
# Growing is refused; KEEP_SIZE past the end frees what is inside.
try:
    fallocate(fd, 0, SIZE - PAGE, 2 * PAGE)
    raise SystemExit("fallocate past the end without KEEP_SIZE succeeded")
except OSError as e:
    assert e.errno in (errno.ENOSPC, errno.EFBIG), e
fallocate(fd, 0x02 | 0x01, SIZE - PAGE, 1 << 40)
ref[SIZE - PAGE:SIZE] = bytes(PAGE)
assert os.fstat(fd).st_size == SIZE
check(SIZE - PAGE, PAGE)
os.fsync(fd)
os.close(fd)

# O_DIRECT, aligned, through the same file.
import mmap
fd = os.open(path, os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 1 << 20)
for _ in range(20):
    off = rng.randrange(SIZE // PAGE - 256) * PAGE
    b = data(1 << 20)
    buf[:] = b
    assert os.pwritev(fd, [buf], off) == 1 << 20
    ref[off:off + (1 << 20)] = b
    buf[:] = bytes(1 << 20)
    assert os.preadv(fd, [buf], off) == 1 << 20
    assert buf[:] == b, "O_DIRECT read back differs at %d" % off
os.close(fd)
fd = os.open(path, os.O_RDONLY)
check(0, SIZE)
os.close(fd)
EOF
    json=$(stat_json)
    for f in failed_reads failed_writes; do
        (($(json_int "$json" "$f") == 0)) || fail "$f is not 0 with --algorithm $alg"
    done
    (($(json_int "$json" notify_free) > 0)) || fail "punching holes counted no notify_free with --algorithm $alg"
    stop_daemon 30
done
log "PASS"
