# SPDX-License-Identifier: MIT
"""The guest side of bench/restore_latency.py.

    latency.py run N POLL_MS  the daemon (--source auto, info log) and the
                              two waiters below; "READY" once both block;
                              after the N-th bump, the daemon's idle CPU
                              over IDLE_SECONDS: "BENCH IDLECPU ..."
                              and its threads' wake-ups over them:
                              "BENCH WAKEUPS ..."
    latency.py vmgenid        read() /dev/vmgenid, print "BENCH VMGENID
                              <counter> t=<s>", ack, read again...
    latency.py kmsg           block on /dev/kmsg, print "BENCH KMSG t=<s>
                              printk=<s>" on each kernel "crng reseeded due
                              to virtual machine fork" record (the
                              reference)

The waiters write their marker straight to the console, one write(2) each,
for the host to time its arrival; t= is the guest's CLOCK_MONOTONIC when
the waiter woke, printk= the record's own time stamp (the kernel's clock,
for a rough in-guest breakdown).  The daemon's log is not relayed to the
console (it would compete with the markers for the serial port).
"""

import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", ".."))
from bench.cputime import idle_cpu  # noqa: E402
from guestlib import (SYSCALL_READ, Daemon, blocked_in, page_counter,  # noqa
                      say)

IDLE_SECONDS = 30
SETTLE_SECONDS = 3


def vmgenid_loop() -> int:
    fd = os.open("/dev/vmgenid", os.O_RDWR | os.O_CLOEXEC)
    while True:
        data = os.read(fd, 4)
        now = time.clock_gettime(time.CLOCK_MONOTONIC)
        os.write(1, b"BENCH VMGENID %d t=%.6f\n"
                 % (int.from_bytes(data, "little"), now))
        os.write(fd, data)


def kmsg_loop() -> int:
    from tests.kmsgrecords import is_vmfork_record
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_CLOEXEC)
    os.lseek(fd, 0, os.SEEK_END)
    while True:
        try:
            record = os.read(fd, 8192)
        except BrokenPipeError:
            continue
        if is_vmfork_record(record):
            now = time.clock_gettime(time.CLOCK_MONOTONIC)
            usec = int(record.split(b";", 1)[0].split(b",")[2])
            os.write(1, b"BENCH KMSG t=%.6f printk=%.6f\n"
                     % (now, usec / 1e6))


def run(n: int, poll_ms: int) -> int:
    daemon = Daemon.start("--log-level", "info",
                          "--poll-interval-ms", str(poll_ms), quiet=True)
    me = [sys.executable, os.path.abspath(__file__)]
    waiters = [subprocess.Popen(me + [kind], stdin=subprocess.DEVNULL)
               for kind in ("vmgenid", "kmsg")]
    for waiter in waiters:
        if not blocked_in(waiter.pid, (SYSCALL_READ,)):
            say("MISSING a waiter is not blocked in read()")
            return 2
    say("READY counter=%d" % page_counter())

    daemon.wait_line(r"generation %d -> %d" % (n - 1, n), timeout=24 * 3600)
    bumps = [line for line in daemon.lines
             if line and re.search(r"generation \d+ -> \d+", line)]
    # The GUID tier's thread, or the kernel-log tier's own record.
    on_kmsg = sum(bool(re.search(r"seen on kernel log|: kernel log record "
                                 r"\d+: ", line)) for line in bumps)
    on_poll = sum("seen on GUID poll" in line for line in bumps)
    say("BENCH BUMPS total=%d kmsg=%d poll=%d other=%d"
        % (len(bumps), on_kmsg, on_poll, len(bumps) - on_kmsg - on_poll))
    # How the daemon said it would see a change (docs/design.rst, "A
    # daemon that sleeps"): the goal differs.
    event = any("looked at on event" in line for line in daemon.lines)
    say("BENCH DETECTION %s" % ("event" if event else "poll"))
    # Where the thread's publication's time went, from its wake-up (p50s).
    published = [tuple(map(float, m.groups())) for m in (
        re.search(r"published by the thread: state file at ([\d.]+) ms, "
                  r"reads answered at ([\d.]+) ms\)", line)
        for line in bumps) if m]
    p50 = [statistics.median(column) if published else 0.0
           for column in zip(*published, strict=True)] or [0.0] * 2
    say("BENCH FIRED n=%d state=%.1f replied=%.1f" % (len(published), *p50))
    time.sleep(SETTLE_SECONDS)
    idle = idle_cpu(daemon.proc.pid, IDLE_SECONDS)
    say("BENCH IDLECPU pct=%.3f ticks=%d hz=%d seconds=%.1f poll_ms=%d "
        "ran_pct=%.3f" % (idle["pct"], idle["ticks"], idle["hz"],
                          idle["seconds"], poll_ms, idle["ran_pct"]))
    # Each thread's context switches over the same window: its wake-ups.
    say("BENCH WAKEUPS total=%d threads=%s"
        % (sum(idle["wakeups"].values()),
           ",".join(f"{t}:{n}" for t, n in idle["wakeups"].items())))
    for waiter in waiters:
        waiter.kill()
        waiter.wait()
    daemon.terminate()
    say("DONE")
    return 0


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "vmgenid":
        sys.exit(vmgenid_loop())
    if mode == "kmsg":
        sys.exit(kmsg_loop())
    sys.exit(run(int(sys.argv[2]), int(sys.argv[3])))
