"""The status file: what `vmgenid status` shows, written by the daemon.

Kept off the bump's critical path (state file, page, wake-ups): a
transition only marks it dirty, and the loop writes it after the
wake-ups, at most once per MIN_INTERVAL, so a storm of opens costs one
write, not one per open.  Mode 0644 (any user may look; the GUID itself is
never in it, only whether the source has one), written with write + rename
so a reader sees the old file or the new one, never half of either.
"""

import json
import os
from typing import Callable, Optional

MIN_INTERVAL = 0.1   # seconds between two writes
STATUS_MODE = 0o644


class StatusFile:
    def __init__(self, path: str, report: Callable[[], dict]):
        self.path = path
        self._report = report
        self._dirty = True
        self._last_write: Optional[float] = None

    def mark_dirty(self) -> None:
        self._dirty = True

    def due(self) -> Optional[float]:
        """When the loop should write next (monotonic), None if clean."""
        if not self._dirty:
            return None
        if self._last_write is None:
            return 0.0
        return self._last_write + MIN_INTERVAL

    def write_if_due(self, now: float) -> None:
        due = self.due()
        if due is None or now < due:
            return
        self._dirty = False
        self._last_write = now
        write_atomically(self.path, json.dumps(self._report(), indent=1)
                         .encode() + b"\n")


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
