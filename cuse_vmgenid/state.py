# SPDX-License-Identifier: MIT
"""The generation state machine: counter, watchers, pending requests.

Pure: no I/O and no clock (callers pass ``now``), one lock.  Every public
method is one atomic transition, so the v2 review's races (a change between
the "is it outdated?" test and the count change, in close and in write)
cannot happen: the test and the change sit under the same lock.

A request that cannot be answered at once (a blocked read, a
WAIT_WATCHERS) is kept as a pending entry under the caller's token.  Exactly
one transition removes it (bump, ack, close, interrupt, timeout) and hands
back a Completion; the transport replies outside the lock.  That is how
every request gets exactly one reply.
"""

import errno
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from typing import Hashable, Optional

from .errors import DeviceError

COUNTER_MAX = 0xFFFFFFFF
# FORCE_GEN_UPDATE_MIN stops here, so plain bumps can never wrap.
MIN_TARGET_MAX = 0x7FFFFFFF
COUNTER_SIZE = 4


def encode_counter(value: int) -> bytes:
    return struct.pack("=I", value)


@dataclass
class Completion:
    """The reply owed to one pending request: a result or an errno."""
    token: Hashable
    result: object = None
    error: int = 0


@dataclass
class Changes:
    """What a transition asks the transport to do after the lock is gone."""
    completions: list = field(default_factory=list)
    notify: list = field(default_factory=list)   # poll handles to notify
    release: list = field(default_factory=list)  # poll handles to destroy
    bumped_from: Optional[int] = None

    @property
    def bumped(self) -> bool:
        return self.bumped_from is not None


@dataclass
class Watcher:
    uid: int
    pid: int
    acked: int
    poll_handle: object = None


@dataclass
class PendingRead:
    watcher: int


@dataclass
class PendingWait:
    watcher: int
    deadline: Optional[float]


class GenerationState:
    def __init__(self, counter: int = 0, max_watchers_per_uid: int = 1024):
        if not 0 <= counter <= COUNTER_MAX:
            raise ValueError(f"counter out of range: {counter}")
        self._lock = threading.Lock()
        self._counter = counter
        self._watchers: dict[int, Watcher] = {}
        self._next_watcher = 1
        self._outdated = 0
        self._per_uid: Counter = Counter()
        self._max_per_uid = max_watchers_per_uid
        # Pending requests by token: blocked reads, and WAIT_WATCHERS
        # callers apart, so timeouts never scan the (many) readers.
        self._reads: dict[Hashable, PendingRead] = {}
        self._waits: dict[Hashable, PendingWait] = {}

    # -- queries ---------------------------------------------------------

    @property
    def counter(self) -> int:
        return self._counter

    def outdated_count(self) -> int:
        with self._lock:
            return self._outdated

    def watcher_count(self) -> int:
        with self._lock:
            return len(self._watchers)

    def pending_count(self) -> int:
        with self._lock:
            return len(self._reads) + len(self._waits)

    def snapshot(self) -> dict:
        """A consistent copy for status reports and invariant checks."""
        with self._lock:
            return {
                "counter": self._counter,
                "outdated": self._outdated,
                "watchers": {wid: (w.uid, w.pid, w.acked)
                             for wid, w in self._watchers.items()},
                "pending": len(self._reads) + len(self._waits),
            }

    def outdated_watchers(self, limit: int) -> list[tuple]:
        """Up to limit outdated watchers, oldest first, as (wid, uid, pid,
        acked): a status report lists a few, and copying thousands under
        the lock stalls every file operation behind it."""
        with self._lock:
            if not self._outdated:
                return []
            counter = self._counter
            return list(islice(
                ((wid, w.uid, w.pid, w.acked)
                 for wid, w in self._watchers.items() if w.acked != counter),
                limit))

    def next_deadline(self) -> Optional[float]:
        # The loop asks before every poll() and nobody waits most of the
        # time: the size of a dict is read atomically, so this is the same
        # answer as under the lock an instant earlier.
        if not self._waits:
            return None
        with self._lock:
            deadlines = [p.deadline for p in self._waits.values()
                         if p.deadline is not None]
            return min(deadlines, default=None)

    # -- file operations -------------------------------------------------

    def open(self, uid: int, pid: int = 0) -> int:
        with self._lock:
            if uid != 0 and self._per_uid[uid] >= self._max_per_uid:
                raise DeviceError(errno.EDQUOT,
                                  f"uid {uid} holds {self._max_per_uid}")
            wid = self._next_watcher
            self._next_watcher += 1
            self._watchers[wid] = Watcher(uid, pid, self._counter)
            self._per_uid[uid] += 1
            return wid

    def read(self, wid: int, size: int, nonblock: bool,
             token: Hashable) -> Optional[bytes]:
        """The new counter if outdated; None when the read now waits."""
        with self._lock:
            watcher = self._watcher(wid)
            if size == 0:
                return b""
            if size < COUNTER_SIZE:
                raise DeviceError(errno.EINVAL, f"read of {size} bytes")
            if watcher.acked != self._counter:
                return encode_counter(self._counter)
            if nonblock:
                raise DeviceError(errno.EAGAIN)
            self._add_pending(self._reads, token, PendingRead(wid))
            return None

    def ack(self, wid: int, data: bytes) -> Changes:
        """write(): the watcher acknowledges the current counter."""
        with self._lock:
            watcher = self._watcher(wid)
            if len(data) != COUNTER_SIZE:
                raise DeviceError(errno.EINVAL, f"write of {len(data)} bytes")
            (value,) = struct.unpack("=I", data)
            if value != self._counter:
                raise DeviceError(errno.EINVAL,
                                  f"ack {value} != counter {self._counter}")
            changes = Changes()
            if watcher.acked != self._counter:
                watcher.acked = self._counter
                self._drop_outdated(changes)
            return changes

    def poll(self, wid: int, handle: object = None) -> tuple[bool, Changes]:
        """Readiness; a new handle replaces the watcher's old one."""
        with self._lock:
            watcher = self._watcher(wid)
            changes = Changes()
            if handle is not None:
                if watcher.poll_handle is not None:
                    changes.release.append(watcher.poll_handle)
                watcher.poll_handle = handle
            return watcher.acked != self._counter, changes

    def release(self, wid: int) -> Changes:
        """close() of the last reference: the watcher goes."""
        with self._lock:
            watcher = self._watcher(wid)
            changes = Changes()
            # Unreachable through the kernel (a blocked call holds the
            # file), but nothing may stay pending for a watcher that is gone.
            for pending_of_kind in (self._reads, self._waits):
                for token, pending in list(pending_of_kind.items()):
                    if pending.watcher == wid:
                        del pending_of_kind[token]
                        changes.completions.append(
                            Completion(token, error=errno.EBADF))
            if watcher.poll_handle is not None:
                changes.release.append(watcher.poll_handle)
            del self._watchers[wid]
            self._per_uid[watcher.uid] -= 1
            if not self._per_uid[watcher.uid]:
                del self._per_uid[watcher.uid]
            if watcher.acked != self._counter:
                self._drop_outdated(changes)
            return changes

    def wait_watchers(self, wid: int, timeout_ms: int, now: float,
                      token: Hashable) -> Optional[int]:
        """0 when no watcher is outdated; None when the call now waits."""
        with self._lock:
            watcher = self._watcher(wid)
            if watcher.acked != self._counter:
                raise DeviceError(errno.EINTR, "caller is outdated")
            if self._outdated == 0:
                return 0
            deadline = now + timeout_ms / 1000.0 if timeout_ms else None
            self._add_pending(self._waits, token, PendingWait(wid, deadline))
            return None

    # -- changes of generation -------------------------------------------

    def bump(self, minimum: Optional[int] = None) -> Changes:
        """counter + 1, or max(minimum, counter + 1) for FORCE_..._MIN."""
        with self._lock:
            target = self._counter + 1
            if minimum is not None:
                target = max(minimum, target)
                if target > MIN_TARGET_MAX:
                    raise DeviceError(errno.EOVERFLOW,
                                      f"{target:#x} > {MIN_TARGET_MAX:#x}")
            if target > COUNTER_MAX:
                raise DeviceError(errno.EOVERFLOW, "counter at its maximum")
            changes = Changes(bumped_from=self._counter)
            self._counter = target
            # Every watcher acked an older value, so all are outdated now.
            self._outdated = len(self._watchers)
            value = encode_counter(target)
            for token in self._reads:
                changes.completions.append(Completion(token, value))
            # A waiter is outdated now: EINTR, as for an outdated caller.
            for token in self._waits:
                changes.completions.append(
                    Completion(token, error=errno.EINTR))
            self._reads.clear()
            self._waits.clear()
            changes.notify = [w.poll_handle for w in self._watchers.values()
                              if w.poll_handle is not None]
            return changes

    # -- ends of waiting -------------------------------------------------

    def interrupt(self, token: Hashable) -> Changes:
        """A signal hit the caller: EINTR, unless already answered."""
        with self._lock:
            changes = Changes()
            if (self._reads.pop(token, None) is not None
                    or self._waits.pop(token, None) is not None):
                changes.completions.append(
                    Completion(token, error=errno.EINTR))
            return changes

    def expire(self, now: float) -> Changes:
        """WAIT_WATCHERS calls whose deadline has passed get ETIME."""
        with self._lock:
            changes = Changes()
            for token, pending in list(self._waits.items()):
                if pending.deadline is not None and pending.deadline <= now:
                    del self._waits[token]
                    changes.completions.append(
                        Completion(token, error=errno.ETIME))
            return changes

    # -- internals (lock held) -------------------------------------------

    def _watcher(self, wid: int) -> Watcher:
        try:
            return self._watchers[wid]
        except KeyError:
            raise DeviceError(errno.EBADF, f"no watcher {wid}") from None

    def _add_pending(self, pending_of_kind: dict, token: Hashable,
                     pending: object) -> None:
        if token in self._reads or token in self._waits:
            raise ValueError(f"token {token!r} already pending")
        pending_of_kind[token] = pending

    def _drop_outdated(self, changes: Changes) -> None:
        self._outdated -= 1
        if self._outdated:
            return
        for token in self._waits:
            changes.completions.append(Completion(token, 0))
        self._waits.clear()
