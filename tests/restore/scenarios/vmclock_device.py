# SPDX-License-Identifier: MIT
"""The guest side of tests/restore/test_restore_vmclock_device.py: a real
VMClock device (sid's QEMU, -device vmclock; the kernel's ptp_vmclock,
/dev/vmclock0), no vmgenid device, the daemon on --source auto (so the
vmclock tier serves) and a program that caches a secret
(examples/cached_secret.py: woken by the change, it draws 16 new bytes
from getrandom()).

    .venv/bin/python tests/restore/scenarios/vmclock_device.py

QEMU's page never advertises the generation counter: the host plays
Firecracker's part in the saved stream.  The steps, each a line for the
host:

  PRIME        the host may save; it restores with the counter flag set
  READY        the daemon serves from the vmclock tier, the program is
               blocked in read(): the host restores without a patch (only
               disruption_marker steps)
  CLONE        no bump came of it: the host saves, and restores each
               clone with the counter + 1
  DONE         in a clone: the program woke once and drew a new secret

"VMCLOCK <step> k=v..." is the device's page as the daemon reads it
(under the seqlock); exits 0 once it ran through, 2 if something it waited
for never came (the console says what).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import (SYSCALL_READ, Daemon, Relay,  # noqa: E402
                      blocked_in, page_counter, run_scenario, say)

from cuse_vmgenid.sources.vmclock import (DEVICE,  # noqa: E402
                                          VmclockDevice)

WAIT = 3600         # for the host's save and restore, under emulation


def show(device: VmclockDevice, step: str):
    reading = device.read()
    say("VMCLOCK", step, " ".join(f"{k}={int(v)}" for k, v in
                                  reading._asdict().items()))
    return reading


def wait_until(device: VmclockDevice, what, why: str):
    """Poll the page until what(reading) holds: the host restored."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        reading = device.read()
        if what(reading):
            return reading
        time.sleep(0.05)
    raise TimeoutError(why)


def main() -> int:
    for _ in range(600):
        if os.path.exists(DEVICE):
            break
        time.sleep(0.05)
    device = VmclockDevice(DEVICE)
    boot = show(device, "boot")
    say("PRIME")
    wait_until(device, lambda r: r.disruption_marker != boot.disruption_marker,
               "no restore after PRIME")
    show(device, "primed")

    # Not debug: it logs each of its looks at the page (every 100 ms).
    daemon = Daemon.start("--log-level", "info")
    # On one CPU: the kernel's per-CPU RNG state is the same in the clones
    # only for the same CPU (a fair test of "was the RNG reseeded?").
    app = Relay("APP", ["taskset", "-c", "0", sys.executable,
                        "examples/cached_secret.py"])
    app.wait_line(r"^SECRET [0-9a-f]{32}$")
    if not blocked_in(app.proc.pid, (SYSCALL_READ,)):
        raise TimeoutError("the program is not blocked in read()")
    ready = show(device, "ready")
    say("READY counter=%d" % page_counter())

    # A restore that only steps disruption_marker: the daemon sees it at
    # its next look (and logs it), and bumps nothing.
    wait_until(device,
               lambda r: r.disruption_marker != ready.disruption_marker,
               "no restore after READY")
    daemon.wait_line(r"VMClock: clock disrupted", timeout=120)
    show(device, "disrupted")
    say("CLONE counter=%d" % page_counter())

    # In a clone: the counter stepped.
    app.wait_line(r"^ACK \d+$", timeout=WAIT)
    daemon.wait_line(r"generation \d+ -> \d+", timeout=120)
    show(device, "clone")
    say("COUNTER", page_counter())
    say("APP_EXIT", app.stop())
    daemon.terminate()
    say("DONE")
    return 0


if __name__ == "__main__":
    run_scenario(main)
