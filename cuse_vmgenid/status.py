"""The status file: what `vmgenid status` shows, written by the daemon.

The same report, at the same moments, goes to systemd as the unit's
STATUS= line (`published`), so `systemctl status` follows the figures
without a datagram per request.

Kept off the bump's critical path (state file, page, wake-ups): a
transition only marks it dirty, and the loop writes it after the
wake-ups, at most once per MIN_INTERVAL, so a storm of opens costs one
write, not one per open.  A write that took long (thousands of watchers, a
slow disk) pushes the next one back, so the status never takes more than
MAX_SHARE of the loop's time.  Mode 0644 (any user may look; the GUID
itself is never in it, only whether the source has one), written with
write + rename so a reader sees the old file or the new one, never half of
either.
"""

import json
import os
import time
from typing import Callable, Optional

# What the file's "schema" says; `vmgenid` refuses any other (a daemon of
# another version, still running after an upgrade, wrote it).
STATUS_SCHEMA = 1
MIN_INTERVAL = 0.1   # seconds between two writes
MAX_SHARE = 0.1      # of the loop's time, at most
STATUS_MODE = 0o644


class StatusFile:
    def __init__(self, path: str, report: Callable[[], dict],
                 clock: Callable[[], float] = time.monotonic,
                 published: Callable[[dict], None] = lambda report: None):
        """path '': no file, the report only goes to published()."""
        self.path = path
        self._report = report
        self._published = published
        self._clock = clock
        self._dirty = True
        self._last_write: Optional[float] = None
        self._interval = MIN_INTERVAL

    def mark_dirty(self) -> None:
        self._dirty = True

    def due(self) -> Optional[float]:
        """When the loop should write next (monotonic), None if clean."""
        if not self._dirty:
            return None
        if self._last_write is None:
            return 0.0
        return self._last_write + self._interval

    def write_if_due(self, now: float) -> None:
        due = self.due()
        if due is None or now < due:
            return
        self._dirty = False
        self._last_write = now
        started = self._clock()
        try:
            report = self._report()
            self._published(report)
            if self.path:
                write_atomically(self.path, json.dumps(report, indent=1)
                                 .encode() + b"\n")
        finally:
            spent = self._clock() - started
            self._interval = max(MIN_INTERVAL, spent / MAX_SHARE)


def write_atomically(path: str, data: bytes) -> None:
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, mode=0o755, exist_ok=True)
    tmp = f"{path}.new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                 STATUS_MODE)
    try:
        os.fchmod(fd, STATUS_MODE)   # whatever the umask
        os.write(fd, data)
    finally:
        os.close(fd)
    os.rename(tmp, path)
