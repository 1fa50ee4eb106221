# SPDX-License-Identifier: MIT
"""The goals (issues #6, #13 and #22), in one place: the guest suite profiles
the daemon where one is missed, the host report prints them beside the
figures.  The device's references are the test-only C CUSE server
(bench/vmgenid_ref_server.c) in the same guest, and the kernel's own crng
line for detection."""

FANOUT_RATIO = 1.5          # device / C CUSE server, last wake-up, N = 1000
ROUNDTRIP_RATIO = 1.5       # C CUSE server ops/s / daemon ops/s
ORCHESTRATE_RATIO = 2.0     # device / C CUSE server, N = 1000
RESTORE_RATIO = 1.1         # /dev/vmgenid / kmsg, p50 (bench/restore_latency)
KIB_PER_WATCHER = 1.0       # daemon RSS growth per open watcher
IDLE_CPU_PCT = 0.5          # % of one core over 30 s idle
# Issue #22, the event path (6.12, the kernel's vmgenid driver bound: the
# GUID poll thread has no timer), measured by bench/restore_latency.py:
EVENT_IDLE_CPU_PCT = 0.05   # % of one core over 30 s idle
EVENT_IDLE_WAKEUPS = 0      # the daemon's threads' context switches, idle
EVENT_RESTORE_RATIO = 1.2   # /dev/vmgenid / kmsg, p50, >= 40 restores
