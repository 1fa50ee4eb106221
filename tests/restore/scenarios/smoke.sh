#!/bin/sh
# SPDX-License-Identifier: MIT
# The guest side of test_restore_smoke.py: print "READY <guid> forks <n>"
# (n: the kernel's "virtual machine fork" log lines so far), then
# "GUID <guid>" every 0.5 s, the GUID read from guest memory (fw_cfg's
# address, /dev/mem). Once it changes (the host restored the guest with
# a new one), print the kernel's "virtual machine fork" log lines as
# "KMSG <line>" once the kernel has logged one more than at READY (it may
# take a moment after the GUID changes) and exit 0; exit 1 if it has not
# within 60 s.
exec .venv/bin/python - <<'PY'
import subprocess
import sys
import time

from cuse_vmgenid.sources import fwcfg

FORK = "crng reseeded due to virtual machine fork"


def forks():
    log = subprocess.run(["dmesg"], capture_output=True, text=True,
                         check=True).stdout
    return [line for line in log.splitlines() if FORK in line]


mapped = fwcfg.mapped_guid()
first = mapped.read()
at_boot = len(forks())
print("READY", first, "forks", at_boot, flush=True)
while (guid := mapped.read()) == first:
    print("GUID", guid, flush=True)
    time.sleep(0.5)
print("GUID", guid, flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    lines = forks()
    if len(lines) > at_boot:
        for line in lines[at_boot:]:
            print("KMSG", line, flush=True)
        sys.exit(0)
    time.sleep(0.5)
print("no kernel log line", repr(FORK), flush=True)
sys.exit(1)
PY
