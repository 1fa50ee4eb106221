# SPDX-License-Identifier: MIT
"""The guest console: echo it live, capture it, spot the markers."""

import re
import sys
import time

START = "@@VMGENID-GUEST-START@@"
EXIT = re.compile(r"@@VMGENID-GUEST-EXIT (\d+)@@")
# The kernel's own line (printk time stamp), not a test printing it.
PANIC = re.compile(r"^\[ *[0-9]+\.[0-9]+\] Kernel panic - not syncing")
# A kernel that panics while it boots, before the guest command starts,
# fails in no code under test (none of it has run): under TCG, Debian's
# 6.12 sometimes takes an int3 oops in its own boot-time code patching
# (sched_clock_cpu, 2.3-2.5 s into the boot; seen in two CI runs in a
# row).  Such a boot is tried again, up to twice, and says so.
BOOT_ATTEMPTS = 3


class Console:
    """Feed it raw console text; it writes it to @out as it comes, without
    \\r and without the markers init.sh prints."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.output: list[str] = []
        self.line = ""      # the current, unfinished line
        self.shown = 0      # how much of self.line is written already
        self.started_at: float | None = None    # time.monotonic()
        self.exit_code: int | None = None
        self.panicked = False

    @property
    def panicked_while_booting(self) -> bool:
        """Panicked before the guest command started."""
        return self.panicked and self.started_at is None

    def feed(self, text: str) -> None:
        *lines, self.line = (self.line + text.replace("\r", "")).split("\n")
        for line in lines:
            self.finish_line(line)
            self.shown = 0
        # Hold back a possible marker until its line is complete.
        held = self.line.find("@", self.shown)
        self.write(self.line[self.shown:held if held >= 0 else None])
        self.shown = held if held >= 0 else len(self.line)
        self.out.flush()

    def close(self) -> None:
        if self.line:
            self.feed("\n")

    def finish_line(self, line: str) -> None:
        rest = line
        if START in line:
            self.started_at = time.monotonic()
            rest = line.replace(START, "")
        elif match := EXIT.search(line):
            self.exit_code = int(match[1])
            rest = line[:match.start()] + line[match.end():]
        elif PANIC.match(line):
            self.panicked = True
        if rest or rest == line:    # drop lines that were only a marker
            self.write(rest[self.shown:] + "\n")

    def write(self, text: str) -> None:
        self.out.write(text)
        self.output.append(text)
