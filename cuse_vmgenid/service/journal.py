# SPDX-License-Identifier: MIT
"""Log lines with their syslog priority for the journal.

Under systemd the daemon's stderr is a stream to journald, which takes a
leading "<N>" on each line as that line's priority (sd-daemon(3)), so
`journalctl -p err` finds the errors.  Only when JOURNAL_STREAM names
stderr itself (its dev:ino): a shell or a file gets plain lines.
"""

import logging
import os
import sys
from typing import TextIO

from .printable import Formatter

# logging's levels as syslog(3) priorities, highest level first.
PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3),
              (logging.WARNING, 4), (logging.INFO, 6))
DEBUG_PRIORITY = 7


def priority(level: int) -> int:
    for at_least, value in PRIORITIES:
        if level >= at_least:
            return value
    return DEBUG_PRIORITY


def is_journal(stream: TextIO) -> bool:
    """Whether stream is the journal stream systemd connected."""
    dev, _, ino = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError):
        return False


def log_to_stderr(log_format: str, level: str) -> None:
    """The commands' logging (cuse-vmgenid, cuse-vmgenid-hooks): to
    standard error, with priorities when that is the journal."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PriorityFormatter(log_format)
                         if is_journal(sys.stderr) else Formatter(log_format))
    logging.basicConfig(level=level.upper(), handlers=[handler])


class PriorityFormatter(Formatter):
    """Each line of a record (a traceback too) prefixed "<N>"; the text
    escaped (printable.py)."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return prefix + super().format(record).replace("\n", "\n" + prefix)
