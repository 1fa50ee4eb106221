# SPDX-License-Identifier: MIT
"""The goals of issue #6, in one place: the guest suite profiles the daemon
where one is missed, the host report prints them beside the figures."""

FANOUT_RATIO = 3.0          # device / eventfd, last wake-up, N = 1000
ROUNDTRIP_RATIO = 2.0       # C reference server ops/s / daemon ops/s
ORCHESTRATE_RATIO = 3.0     # device / pipe, N = 1000
RESTORE_RATIO = 1.5         # /dev/vmgenid / kmsg, p50 (bench/restore_latency)
KIB_PER_WATCHER = 1.0       # daemon RSS growth per open watcher
IDLE_CPU_PCT = 0.5          # % of one core over 30 s idle
