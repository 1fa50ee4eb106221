# SPDX-License-Identifier: MIT
"""The guest side of tests/restore/test_restore_vmclock.py: the daemon
(--source auto, --vmclock-link /dev/vmclock0) and the ABI's own reader
(native/build/vmclock-reader, through the link) across FORCE bumps, a
daemon restart and a real restore with a new GUID.

    .venv/bin/python tests/restore/scenarios/vmclock.py

Prints "VMCLOCK <step> <reader's line>" after each step, "SAVE" when the
host may save, and relays the daemon's log as "DAEMON <line>"; exits 0
once it ran through, 2 if something it waited for never came.
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import Daemon, Relay, native, say  # noqa: E402

LINK = "/dev/vmclock0"
VMCLOCK_PAGE = "/run/vmgenid/vmclock"


def show(step: str) -> None:
    """What a library mapping /dev/vmclock0 reads now."""
    proc = subprocess.run([native("vmclock-reader"), "-d", LINK],
                          capture_output=True, text=True, timeout=60)
    say("VMCLOCK", step, f"rc={proc.returncode}", proc.stdout.strip())


def force() -> None:
    proc = subprocess.run([native("vmgenid-ioctl"), "force"],
                          capture_output=True, text=True, timeout=60)
    say("FORCE", proc.stdout.strip())


def main() -> int:
    daemon = Daemon.start("--vmclock-link", LINK)
    say("LINK", os.readlink(LINK))
    inode = os.stat(VMCLOCK_PAGE).st_ino
    show("start")
    force()
    show("force1")
    force()
    show("force2")
    daemon.terminate()
    daemon = Daemon.start("--vmclock-link", LINK)   # a same-boot restart
    say("SAME_INODE", os.stat(VMCLOCK_PAGE).st_ino == inode)
    show("restart")

    reader = Relay("READER", [native("vmgenid-reader"), "-a"])
    reader.wait_line(r"^open$")
    say("SAVE")
    reader.wait(timeout=3600)       # the host restored with a new GUID
    daemon.wait_line(r"generation \d+ -> \d+", timeout=60)
    show("restore")
    daemon.terminate()
    say("SAME_INODE", os.stat(VMCLOCK_PAGE).st_ino == inode)
    say("DONE")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TimeoutError as e:
        say("MISSING", e)
        sys.exit(2)
