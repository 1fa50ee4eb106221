# SPDX-License-Identifier: MIT
"""The daemon's memory over repeated stress (issue 20, item 10): what the
work of many watchers takes is taken once, at the peak, and the same
work again takes nothing more.  A leak grows with every round; a plateau
(glibc keeps freed memory for reuse, docs/design.rst) does not.

Each round: 1000 watchers opened (root: no per-uid cap), 100 of them
polled while up to date (the daemon keeps their poll handles), a bump,
each one reads and acknowledges, all closed.  The daemon's resident size is
read from /proc after each round."""

import os
import select

from .device import ack, force, open_device, read_counter
from .tool_run import start_daemon

ROUNDS = 12
WATCHERS = 1000
POLLED = 100
WARM_UP = 4         # rounds that may still grow the heap to its peak
SLACK_KB = 256      # page-granular noise, far below one round's worth


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def one_round() -> None:
    fds = [open_device() for _ in range(WATCHERS)]
    try:
        for fd in fds[:POLLED]:
            assert select.select([fd], [], [], 0)[0] == []
        force(fds[0])
        for fd in fds:
            ack(fd, read_counter(fd))
    finally:
        for fd in fds:
            os.close(fd)


def test_repeated_stress_does_not_grow_the_daemon(daemon_factory, tmp_path,
                                                  capsys):
    d = start_daemon(daemon_factory, tmp_path)     # writes its status too
    sizes = []
    for _ in range(ROUNDS):
        one_round()
        sizes.append(rss_kb(d.proc.pid))
    with capsys.disabled():
        print(f"\ndaemon VmRSS after each round (kB): {sizes}")
    growth = max(sizes[WARM_UP:]) - sizes[WARM_UP - 1]
    assert growth <= SLACK_KB, sizes
    assert d.proc.poll() is None, d.log()
