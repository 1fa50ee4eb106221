# SPDX-License-Identifier: MIT
"""The generation state machine: counter, watchers, acks, polls, waits.

Pure: no I/O and no clock (callers pass ``now``), one lock.  Every public
method is one atomic transition, so the v2 review's races (a change between
the "is it outdated?" test and the count change, in close and in write)
cannot happen: the test and the change sit under the same lock.

Bumps are published elsewhere, in one place (publisher.py: the state file,
the page, the replies to blocked reads), by the daemon or by the GUID poll
thread.  The state machine chooses each bump's counter (`plan_bump`), and
every transition first adopts the counter published since (`published`,
read under the lock): no request is ever answered from a generation older
than one a reader may have seen, and no caller has to remember to ask.

A blocked read is not kept here: `read` answers now, or says at which
counter the read blocks (`Blocked`), and the publisher keeps it.  A
WAIT_WATCHERS that waits is kept under the caller's token; exactly one
transition removes it (adoption of a bump, ack, close, interrupt, timeout)
and hands back a Completion; the transport replies outside the lock.  That
is how every request gets exactly one reply.
"""

import errno
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from typing import Callable, Hashable, Optional

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


@dataclass(frozen=True)
class Blocked:
    """A read waits: its watcher is up to date with counter."""
    counter: int


@dataclass
class Watcher:
    uid: int
    pid: int
    acked: int
    poll_handle: object = None


@dataclass
class PendingWait:
    watcher: int
    deadline: Optional[float]


class GenerationState:
    def __init__(self, counter: int = 0, max_watchers_per_uid: int = 1024,
                 published: Optional[Callable[[], int]] = None):
        """published(): the counter published now (Publisher.
        published_counter); None: the state machine's own counter, for a
        test that adopts by hand (`adopt(counter)`)."""
        if not 0 <= counter <= COUNTER_MAX:
            raise ValueError(f"counter out of range: {counter}")
        self._lock = threading.Lock()
        self._counter = counter
        self._published = published or (lambda: self._counter)
        # What adopting a bump owes (EINTR to waits, poll notifications),
        # until a transition that returns Changes hands it over.
        self._owed = Changes()
        self._watchers: dict[int, Watcher] = {}
        self._next_watcher = 1
        self._outdated = 0
        self._per_uid: Counter = Counter()
        self._max_per_uid = max_watchers_per_uid
        # WAIT_WATCHERS callers that wait, by token.
        self._waits: dict[Hashable, PendingWait] = {}

    # -- queries ---------------------------------------------------------

    @property
    def counter(self) -> int:
        with self._lock:
            self._adopt()
            return self._counter

    def outdated_count(self) -> int:
        with self._lock:
            self._adopt()
            return self._outdated

    def watcher_count(self) -> int:
        with self._lock:
            return len(self._watchers)

    def pending_count(self) -> int:
        with self._lock:
            self._adopt()
            return len(self._waits)

    def snapshot(self) -> dict:
        """A consistent copy for status reports and invariant checks."""
        with self._lock:
            self._adopt()
            return {
                "counter": self._counter,
                "outdated": self._outdated,
                "watchers": {wid: (w.uid, w.pid, w.acked)
                             for wid, w in self._watchers.items()},
                "pending": len(self._waits),
            }

    def outdated_watchers(self, limit: int) -> list[tuple]:
        """Up to limit outdated watchers, oldest first, as (wid, uid, pid,
        acked): a status report lists a few, and copying thousands under
        the lock stalls every file operation behind it."""
        with self._lock:
            self._adopt()
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
            self._adopt()
            deadlines = [p.deadline for p in self._waits.values()
                         if p.deadline is not None]
            return min(deadlines, default=None)

    # -- file operations -------------------------------------------------

    def open(self, uid: int, pid: int = 0) -> int:
        with self._lock:
            self._adopt()
            if uid != 0 and self._per_uid[uid] >= self._max_per_uid:
                raise DeviceError(errno.EDQUOT,
                                  f"uid {uid} holds {self._max_per_uid}")
            wid = self._next_watcher
            self._next_watcher += 1
            self._watchers[wid] = Watcher(uid, pid, self._counter)
            self._per_uid[uid] += 1
            return wid

    def read(self, wid: int, size: int, nonblock: bool) -> bytes | Blocked:
        """The new counter if outdated; Blocked when the read must wait
        (the publisher keeps it)."""
        with self._lock:
            self._adopt()
            watcher = self._watcher(wid)
            if size == 0:
                return b""
            if size < COUNTER_SIZE:
                raise DeviceError(errno.EINVAL, f"read of {size} bytes")
            if watcher.acked != self._counter:
                return encode_counter(self._counter)
            if nonblock:
                raise DeviceError(errno.EAGAIN)
            return Blocked(self._counter)

    def ack(self, wid: int, data: bytes) -> Changes:
        """write(): the watcher acknowledges the current counter."""
        with self._lock:
            self._adopt()
            watcher = self._watcher(wid)
            if len(data) != COUNTER_SIZE:
                raise DeviceError(errno.EINVAL, f"write of {len(data)} bytes")
            (value,) = struct.unpack("=I", data)
            if value != self._counter:
                raise DeviceError(errno.EINVAL,
                                  f"ack {value} != counter {self._counter}")
            changes = self._take_owed()
            if watcher.acked != self._counter:
                watcher.acked = self._counter
                self._drop_outdated(changes)
            return changes

    def poll(self, wid: int, handle: object = None) -> tuple[bool, Changes]:
        """Readiness; a new handle replaces the watcher's old one."""
        with self._lock:
            self._adopt()
            watcher = self._watcher(wid)
            changes = self._take_owed()
            if handle is not None:
                if watcher.poll_handle is not None:
                    changes.release.append(watcher.poll_handle)
                watcher.poll_handle = handle
            return watcher.acked != self._counter, changes

    def release(self, wid: int) -> Changes:
        """close() of the last reference: the watcher goes."""
        with self._lock:
            self._adopt()
            watcher = self._watcher(wid)
            changes = self._take_owed()
            # Unreachable through the kernel (a blocked call holds the
            # file), but nothing may stay pending for a watcher that is gone.
            for token, pending in list(self._waits.items()):
                if pending.watcher == wid:
                    del self._waits[token]
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
            self._adopt()
            watcher = self._watcher(wid)
            if watcher.acked != self._counter:
                raise DeviceError(errno.EINTR, "caller is outdated")
            if self._outdated == 0:
                return 0
            deadline = now + timeout_ms / 1000.0 if timeout_ms else None
            if token in self._waits:
                raise ValueError(f"token {token!r} already pending")
            self._waits[token] = PendingWait(wid, deadline)
            return None

    # -- changes of generation -------------------------------------------

    def plan_bump(self, minimum: Optional[int] = None) -> tuple[int, int]:
        """(the counter now, the next one): counter + 1, or max(minimum,
        counter + 1) for FORCE_..._MIN.  Nothing changes until the bump is
        published and adopted."""
        with self._lock:
            self._adopt()
            target = self._counter + 1
            if minimum is not None:
                target = max(minimum, target)
                if target > MIN_TARGET_MAX:
                    raise DeviceError(errno.EOVERFLOW,
                                      f"{target:#x} > {MIN_TARGET_MAX:#x}")
            if target > COUNTER_MAX:
                raise DeviceError(errno.EOVERFLOW, "counter at its maximum")
            return self._counter, target

    def adopt(self, counter: Optional[int] = None) -> Changes:
        """What adopting the published counter owes: EINTR to every
        WAIT_WATCHERS caller, a notification to every poller; bumped_from
        if the counter moved.  counter: the one to adopt, for a state
        machine made without `published` (tests)."""
        with self._lock:
            if counter is not None and counter != self._counter:
                self._adopt_counter(counter)
            self._adopt()
            return self._take_owed()

    # -- ends of waiting -------------------------------------------------

    def interrupt(self, token: Hashable) -> Changes:
        """A signal hit a WAIT_WATCHERS caller: EINTR, unless already
        answered (or the token is a read's: the publisher's)."""
        with self._lock:
            self._adopt()
            changes = self._take_owed()
            if self._waits.pop(token, None) is not None:
                changes.completions.append(
                    Completion(token, error=errno.EINTR))
            return changes

    def expire(self, now: float) -> Changes:
        """WAIT_WATCHERS calls whose deadline has passed get ETIME."""
        with self._lock:
            self._adopt()
            changes = self._take_owed()
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

    def _adopt(self) -> None:
        """Every transition's first step: the counter published since the
        last one, if any."""
        published = self._published()
        if published != self._counter:
            self._adopt_counter(published)

    def _adopt_counter(self, published: int) -> None:
        if not 0 <= published <= COUNTER_MAX:
            raise ValueError(f"published counter out of range: {published}")
        owed = self._owed
        if owed.bumped_from is None:
            owed.bumped_from = self._counter
        self._counter = published
        # Every watcher acked an older value, so all are outdated now.
        self._outdated = len(self._watchers)
        # A waiter is outdated now: EINTR, as for an outdated caller.
        for token in self._waits:
            owed.completions.append(Completion(token, error=errno.EINTR))
        self._waits.clear()
        owed.notify += [w.poll_handle for w in self._watchers.values()
                        if w.poll_handle is not None]

    def _take_owed(self) -> Changes:
        owed, self._owed = self._owed, Changes()
        return owed

    def _drop_outdated(self, changes: Changes) -> None:
        self._outdated -= 1
        if self._outdated:
            return
        for token in self._waits:
            changes.completions.append(Completion(token, 0))
        self._waits.clear()
