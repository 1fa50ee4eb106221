# SPDX-License-Identifier: MIT
"""The state machine beside a publisher kept in Python: the counter half
of native/shim/publisher.c (publish only if nothing was published since
the choice; the thread's bump: +1), for the state machine's own tests.
The C publisher itself is tested in test_publisher.py."""

import threading
from typing import Optional

from cuse_vmgenid._cuse import ffi, lib
from cuse_vmgenid.device.state import Changes, GenerationState


class Published:
    """The published counter, in a cell the state machine reads from C
    (vmgenid_counter_load, under its own lock)."""

    def __init__(self, counter: int):
        self._cell = ffi.new("uint32_t *", counter)
        self.c_published = (ffi.addressof(lib, "vmgenid_counter_load"),
                            self._cell)
        self._lock = threading.Lock()

    @property
    def counter(self) -> int:
        return self._cell[0]

    def publish(self, bumped_from: int, counter: int) -> bool:
        with self._lock:
            if self._cell[0] != bumped_from:
                return False
            self._cell[0] = counter
            return True

    def hardware(self) -> None:
        """The GUID poll thread's bump, outside the state machine's lock."""
        with self._lock:
            self._cell[0] += 1


class PublishingState(GenerationState):
    def __init__(self, counter: int = 0, max_watchers_per_uid: int = 1024):
        self.published = Published(counter)
        super().__init__(counter, max_watchers_per_uid, self.published)

    def bump(self, minimum: Optional[int] = None) -> Changes:
        """The daemon's bump (daemon.Daemon.bump): choose, publish, adopt."""
        while True:
            bumped_from, counter = self.plan_bump(minimum)
            if self.published.publish(bumped_from, counter):
                return self.adopt()
