"""EFS round trips per route stay within their targets (issue 10).

Counts are deterministic (syscalls seen by ``strace -f``), so this is not a
timed test: a change that adds a round trip to a route fails here, whatever
the machine. ``make bench`` prints the same counts as a table.
"""

from __future__ import annotations

import shutil

import pytest

from bench import efs_rpcs

ROOT = "/srv/efs"


def test_counting_rules_on_a_known_trace():
    trace = [
        f'1 openat(AT_FDCWD</w>, "{efs_rpcs.MARK}/begin", O_RDONLY|O_CLOEXEC) = -1 ENOENT (No such file)',
        f'1 openat(AT_FDCWD</w>, "{ROOT}/.meta", O_RDONLY|O_CLOEXEC|O_DIRECTORY) = 3<{ROOT}/.meta>',
        f'1 openat(3<{ROOT}/.meta>, "m.json", O_RDONLY|O_NOFOLLOW|O_CLOEXEC) = 4<{ROOT}/.meta/m.json>',
        f"1 close(4<{ROOT}/.meta/m.json>) = 0",
        f'1 openat(3<{ROOT}/.meta>, "gone.json", O_RDONLY|O_NOFOLLOW) = -1 ENOENT (No such file)',
        f'1 openat(AT_FDCWD</w>, "{ROOT}/x.tmp", O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, 0644) = 5<{ROOT}/x.tmp>',
        f"1 fsync(5<{ROOT}/x.tmp>) = 0",
        f"1 close(5<{ROOT}/x.tmp>) = 0",
        f"1 fsync(3<{ROOT}/.meta>) = 0",
        f'1 rename("{ROOT}/x.tmp", "{ROOT}/x") = 0',
        f"1 fcntl(6<{ROOT}/.locks/models.lock>, F_SETLK, {{l_type=F_WRLCK, l_start=0, l_len=3}}) = 0",
        f'1 readlinkat(3<{ROOT}/.meta>, "ids/f.json", 0x7f, 4096) = -1 ENOENT (No such file)',
        f"1 getdents64(3<{ROOT}/.meta>, 0x55 /* 4 entries */, 32768) = 112",
        f"1 getdents64(3<{ROOT}/.meta>, 0x55 /* 0 entries */, 32768) = 0",
        '1 openat(AT_FDCWD</w>, "/usr/lib/python3.12/json/__init__.py", O_RDONLY|O_CLOEXEC) = 7</usr/lib/x.py>',
        "1 close(7</usr/lib/x.py>) = 0",
        f'1 openat(AT_FDCWD</w>, "{efs_rpcs.MARK}/end", O_RDONLY|O_CLOEXEC) = -1 ENOENT (No such file)',
    ]
    requests, _ = efs_rpcs.classify(trace, ROOT)
    # W: create, fsync, close (written), the directory's fsync (every fsync is a write op, and a
    # directory's is also counted apart in D), rename, lock; R: dir open, open, close, failed open,
    # readlink, getdents with entries; outside the root nothing.
    assert requests == [{"W": 6, "R": 6, "D": 1, "PW": 0, "PR": 0}]


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed: round trips cannot be counted")
def test_every_route_within_its_target_and_1_5x_its_minimal_protocol():
    # The store under the directory-fsync policy it applies on EFS; every fsync costs a write op.
    rows = efs_rpcs.rpc_rows(n=3)
    report = efs_rpcs.render(rows, None)
    for row in rows:
        assert row["dir_fsyncs"] == 0, f"{row['what']}: a directory fsync under EFS's policy:\n{report}"
        worst = efs_rpcs.modelled_ms(row["max_writes"], row["max_reads"])
        assert worst <= row["target_ms"], f"{row['what']} over its target:\n{report}"
        assert row["ms"] <= 1.5 * row["minimal_ms"] + 1e-9, f"{row['what']} over 1.5x its minimal protocol:\n{report}"
