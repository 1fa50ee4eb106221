# SPDX-License-Identifier: MIT
"""A process's CPU time from /proc, two ways, for the idle-CPU figures.

Tick sampling (utime + stime) charges a whole tick to whatever runs when
the tick lands: a thread that wakes briefly and often is charged by
chance.  schedstat's first field is the scheduler's own sum of the time
each thread ran, in ns: the exact figure, and the one the goal is read
against.  Both are printed.

A thread's wake-ups are counted by the scheduler too: each return from a
sleep is a voluntary context switch when it sleeps again, and a thread
preempted while it runs adds a nonvoluntary one
(/proc/PID/task/TID/status).  A thread asleep over the whole window adds
none: the count says whether anything woke it, and how often.
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


def thread_switches(pid: int) -> dict[int, tuple[str, int]]:
    """Each thread of pid: (its name, its context switches so far)."""
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                fields = dict(line.split(":", 1) for line in f
                              if ":" in line)
        except FileNotFoundError:
            continue        # a thread that ended meanwhile
        threads[int(tid)] = (fields["Name"].strip(),
                             int(fields["voluntary_ctxt_switches"])
                             + int(fields["nonvoluntary_ctxt_switches"]))
    return threads


def wakeups(before: dict, after: dict) -> dict[str, int]:
    """Context switches per thread between two thread_switches(), keyed
    "name/tid"; a thread that started in between counts from 0."""
    return {f"{name}/{tid}": count - before.get(tid, (name, 0))[1]
            for tid, (name, count) in sorted(after.items())}


def idle_cpu(pid: int, seconds: float) -> dict:
    """pid's CPU over @seconds, as a percentage of one core, and its
    threads' wake-ups (context switches) over that time."""
    hz = os.sysconf("SC_CLK_TCK")
    s0 = thread_switches(pid)
    t0, c0, n0 = time.monotonic(), cpu_ticks(pid), cpu_ns(pid)
    time.sleep(seconds)
    t1, c1, n1 = time.monotonic(), cpu_ticks(pid), cpu_ns(pid)
    woke = wakeups(s0, thread_switches(pid))
    return {"ran_pct": 100.0 * (n1 - n0) / 1e9 / (t1 - t0),
            "pct": 100.0 * (c1 - c0) / hz / (t1 - t0),
            "ticks": c1 - c0, "hz": hz, "seconds": t1 - t0,
            "wakeups": woke}
