# SPDX-License-Identifier: MIT
"""The daemon's memory over repeated stress (issue 20, item 10), measured,
not asserted (docs/design.rst, "Memory: a plateau, not a leak"): what the
work of many watchers takes is taken once, at the peak, and the same work
again takes nothing more.  A leak grows with every round; a plateau does
not.  Run as root in a guest, in the checkout:

    python -m tests.harness run --kernel 6.12 -- \\
        .venv/bin/python bench/memory_plateau.py [--rounds N]

Each round: 1000 watchers opened (root: no per-uid cap), 100 of them
polled while up to date (the daemon keeps their poll handles), a bump,
each one reads and acknowledges, all closed.  Prints the daemon's
resident size (VmRSS, kB) after each round."""

import argparse
import os
import select
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.guest.daemon_process import DaemonProcess  # noqa: E402
from tests.guest.device import (ack, force, open_device,  # noqa: E402
                                read_counter)

WATCHERS = 1000
POLLED = 100


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def one_round() -> None:
    fds = [open_device() for _ in range(WATCHERS)]
    try:
        for fd in fds[:POLLED]:
            select.select([fd], [], [], 0)
        force(fds[0])
        for fd in fds:
            ack(fd, read_counter(fd))
    finally:
        for fd in fds:
            os.close(fd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        daemon = DaemonProcess(work, "--status",
                               os.path.join(work, "status.json"))
        daemon.start()
        try:
            sizes = []
            for _ in range(args.rounds):
                one_round()
                sizes.append(rss_kb(daemon.proc.pid))
            print(f"daemon VmRSS after each round (kB): {sizes}")
            print(f"growth after the first round: {sizes[-1] - sizes[0]} kB;"
                  f" over the last half: "
                  f"{sizes[-1] - sizes[len(sizes) // 2 - 1]} kB")
        finally:
            daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
