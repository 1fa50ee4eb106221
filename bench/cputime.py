# SPDX-License-Identifier: MIT
"""A process's CPU time from /proc, two ways, for the idle-CPU figures.

Tick sampling (utime + stime) charges a whole tick to whatever runs when
the tick lands: a thread that wakes briefly and often is charged by
chance.  schedstat's first field is the scheduler's own sum of the time
each thread ran, in ns: the exact figure, and the one the goal is read
against.  Both are printed.
"""

import os
import time


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])     # utime, stime


def cpu_ns(pid: int) -> int:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass        # a thread that ended meanwhile
    return total


def idle_cpu(pid: int, seconds: float) -> dict:
    """pid's CPU over @seconds, as a percentage of one core."""
    hz = os.sysconf("SC_CLK_TCK")
    t0, c0, n0 = time.monotonic(), cpu_ticks(pid), cpu_ns(pid)
    time.sleep(seconds)
    t1, c1, n1 = time.monotonic(), cpu_ticks(pid), cpu_ns(pid)
    return {"ran_pct": 100.0 * (n1 - n0) / 1e9 / (t1 - t0),
            "pct": 100.0 * (c1 - c0) / hz / (t1 - t0),
            "ticks": c1 - c0, "hz": hz, "seconds": t1 - t0}
