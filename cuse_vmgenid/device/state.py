# SPDX-License-Identifier: MIT
"""The generation state machine: counter, watchers, acks, polls, waits.

The rules live in native/shim/state.c, which the C transport calls for
every file operation; this is the daemon's face of it: the figures its
status and log show, and the opens it answers (transport.py).  Pure: no
I/O and no clock, one lock; every call is one atomic transition.

Bumps are published elsewhere, in one place (publisher.c), and every
transition first adopts the counter published since, under the lock: no
request is ever answered from a generation older than one a reader may
have seen, and no caller has to remember to ask.
"""

from typing import Optional

from .._cuse import ffi, lib
from .errors import check

COUNTER_MAX = lib.VMGENID_COUNTER_MAX
# FORCE_GEN_UPDATE_MIN stops here, so plain bumps can never wrap.
MIN_TARGET_MAX = lib.VMGENID_MIN_TARGET_MAX


class GenerationState:
    def __init__(self, counter: int, max_watchers_per_uid: int, publisher):
        """publisher: the Publisher whose published counter every
        transition adopts (`c_published`: a C `uint32_t (*)(void *)` and
        its `void *`)."""
        if not 0 <= counter <= COUNTER_MAX:
            raise ValueError(f"counter out of range: {counter}")
        # Kept alive as long as C may call it.
        self._publisher = publisher
        fn, ctx = publisher.c_published
        state = lib.vmgenid_state_new(counter, max_watchers_per_uid, fn, ctx)
        if state == ffi.NULL:
            raise MemoryError("vmgenid_state_new")
        self._state = ffi.gc(state, lib.vmgenid_state_free)

    @property
    def c_handle(self):
        """The struct vmgenid_state * (for the C transport)."""
        return self._state

    @property
    def counter(self) -> int:
        return lib.vmgenid_state_counter(self._state)

    def outdated_count(self) -> int:
        return lib.vmgenid_state_outdated(self._state)

    def watcher_count(self) -> int:
        return lib.vmgenid_state_watchers(self._state)

    def outdated_watchers(self, limit: int) -> list[tuple]:
        """Up to limit outdated watchers, oldest first, as (wid, uid, pid,
        acked): a status report lists a few, and copying thousands under
        the lock stalls every file operation behind it."""
        out = ffi.new("struct vmgenid_watcher_info[]", max(limit, 1))
        counter = ffi.new("uint32_t *")
        n = lib.vmgenid_state_list(self._state, 1, out, limit, counter)
        return [(out[i].wid, out[i].uid, out[i].pid, out[i].acked)
                for i in range(n)]

    def outdated_by_uid(self) -> dict[int, int]:
        """How many outdated watchers each uid holds (those holding
        any): counted in C, nothing copied per watcher."""
        need = ffi.new("size_t *")
        room = 16
        while True:
            out = ffi.new("struct vmgenid_uid_outdated[]", room)
            n = lib.vmgenid_state_outdated_by_uid(self._state, out, room,
                                                  need)
            if need[0] <= room:
                return {out[i].uid: out[i].outdated for i in range(n)}
            room = need[0] + 16     # more uids came meanwhile

    def next_deadline(self) -> Optional[float]:
        deadline = ffi.new("double *")
        if lib.vmgenid_state_next_deadline(self._state, deadline):
            return deadline[0]
        return None

    def open(self, uid: int, pid: int = 0) -> int:
        """A new watcher, counted against uid: its id."""
        wid = ffi.new("uint64_t *")
        check(lib.vmgenid_state_open_watcher(self._state, uid, pid, wid),
              f"open by uid {uid}")
        return wid[0]
