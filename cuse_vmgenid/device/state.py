# SPDX-License-Identifier: MIT
"""The generation state machine: counter, watchers, acks, polls, waits.

The rules live in native/shim/state.c (the C transport calls it directly);
this is its Python face, for the daemon's own paths and for the tests.
Pure: no I/O and no clock (callers pass ``now``), one lock.  Every method
is one atomic transition, so the v2 review's races (a change between the
"is it outdated?" test and the count change, in close and in write) cannot
happen: the test and the change sit under the same lock.

Bumps are published elsewhere, in one place (publisher.c: the state file,
the page, the replies to blocked reads), by the daemon or by the GUID poll
thread.  The state machine chooses each bump's counter (`plan_bump`), and
every transition first adopts the counter published since (`published`,
read under the lock): no request is ever answered from a generation older
than one a reader may have seen, and no caller has to remember to ask.

A blocked read is not kept here: `read` answers now, or says at which
counter the read blocks (`Blocked`), and the publisher keeps it.  A
WAIT_WATCHERS that waits is kept under the caller's token (an int);
exactly one transition removes it (adoption of a bump, ack, close,
interrupt, timeout, abort) and hands back a Completion; the transport
replies outside the lock.  That is how every request gets exactly one
reply.

Poll handles: a real pointer (cdata) goes through to C as it is; any other
object (tests use strings) stands in C for a small allocation of its own,
mapped back on the way out, and forgotten once C hands it back to release.
"""

import errno
import struct
import threading
from dataclasses import dataclass, field
from typing import Optional

from .._cuse import ffi, lib
from ..errors import DeviceError

COUNTER_MAX = lib.VMGENID_COUNTER_MAX
# FORCE_GEN_UPDATE_MIN stops here, so plain bumps can never wrap.
MIN_TARGET_MAX = lib.VMGENID_MIN_TARGET_MAX
COUNTER_SIZE = lib.VMGENID_COUNTER_SIZE


def encode_counter(value: int) -> bytes:
    return struct.pack("=I", value)


@dataclass
class Completion:
    """The reply owed to one pending request: a result or an errno."""
    token: int
    result: object = None
    error: int = 0


@dataclass
class Changes:
    """What a transition asks the transport to do after the lock is gone."""
    completions: list = field(default_factory=list)
    notify: list = field(default_factory=list)   # poll handles to notify
    release: list = field(default_factory=list)  # poll handles to destroy
    bumped_from: Optional[int] = None
    figures: bool = False   # a figure the status shows changed

    @property
    def bumped(self) -> bool:
        return self.bumped_from is not None


@dataclass(frozen=True)
class Blocked:
    """A read waits: its watcher is up to date with counter."""
    counter: int


def _check(ret: int, what: str) -> int:
    if ret < 0:
        raise DeviceError(-ret, what)
    return ret


class GenerationState:
    def __init__(self, counter: int = 0, max_watchers_per_uid: int = 1024,
                 published=None):
        """published: None (the state machine's own counter, for a test
        that adopts by hand: `adopt(counter)`), or an object whose
        `c_published` is (a C `uint32_t (*)(void *)`, its `void *`): the
        counter published now (the Publisher's), read under the lock."""
        if not 0 <= counter <= COUNTER_MAX:
            raise ValueError(f"counter out of range: {counter}")
        # Kept alive as long as C may call it.
        self._published = published
        fn, ctx = published.c_published if published is not None \
            else (ffi.NULL, ffi.NULL)
        state = lib.vmgenid_state_new(counter, max_watchers_per_uid, fn, ctx)
        if state == ffi.NULL:
            raise MemoryError("vmgenid_state_new")
        self._state = ffi.gc(state, lib.vmgenid_state_free)
        # Poll handles C holds for Python objects: address -> (object,
        # the allocation that stands for it, or None for a real pointer).
        self._handles: dict[int, tuple] = {}
        self._handles_lock = threading.Lock()

    @property
    def c_handle(self):
        """The struct vmgenid_state * (for the C transport)."""
        return self._state

    def close(self) -> None:
        """Frees the C state now (every later call is an error)."""
        state, self._state = self._state, None
        if state is not None:
            ffi.release(state)      # its ffi.gc destructor, now

    # -- queries ---------------------------------------------------------

    @property
    def counter(self) -> int:
        return lib.vmgenid_state_counter(self._state)

    def outdated_count(self) -> int:
        return lib.vmgenid_state_outdated(self._state)

    def watcher_count(self) -> int:
        return lib.vmgenid_state_watchers(self._state)

    def pending_count(self) -> int:
        return lib.vmgenid_state_pending(self._state)

    def snapshot(self) -> dict:
        """A consistent copy for status reports and invariant checks."""
        summary = ffi.new("struct vmgenid_state_summary *")
        room = self.watcher_count() + 16
        while True:
            out = ffi.new("struct vmgenid_watcher_info[]", room)
            n = lib.vmgenid_state_snapshot(self._state, out, room, summary)
            if n == summary.watchers:
                break
            room = summary.watchers + 16    # more opened meanwhile
        return {
            "counter": summary.counter,
            "outdated": summary.outdated,
            "watchers": {out[i].wid: (out[i].uid, out[i].pid, out[i].acked)
                         for i in range(n)},
            "pending": summary.pending,
        }

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

    # -- file operations -------------------------------------------------

    def open(self, uid: int, pid: int = 0) -> int:
        wid = ffi.new("uint64_t *")
        _check(lib.vmgenid_state_open_watcher(self._state, uid, pid, wid),
               f"open by uid {uid}")
        return wid[0]

    def read(self, wid: int, size: int, nonblock: bool) -> bytes | Blocked:
        """The new counter if outdated; Blocked when the read must wait
        (the publisher keeps it)."""
        counter = ffi.new("uint32_t *")
        ret = _check(lib.vmgenid_state_read(self._state, wid, size,
                                            nonblock, counter),
                     f"read of {size} bytes")
        if ret == lib.VMGENID_READ_NOW:
            return encode_counter(counter[0])
        if ret == lib.VMGENID_READ_BLOCKS:
            return Blocked(counter[0])
        return b""

    def ack(self, wid: int, data: bytes) -> Changes:
        """write(): the watcher acknowledges the current counter."""
        return self._transition(
            lambda c: lib.vmgenid_state_ack(
                self._state, wid, ffi.from_buffer(data), len(data), c),
            f"write of {len(data)} bytes")

    def poll(self, wid: int, handle: object = None) -> tuple[bool, Changes]:
        """Readiness; a new handle replaces the watcher's old one."""
        pointer = self._handle_in(handle)
        try:
            changes = self._transition(
                lambda c: lib.vmgenid_state_poll(self._state, wid, pointer,
                                                 c), "poll", keep=True)
        except DeviceError:
            self._forget(pointer)
            raise
        ready, changes = changes
        return bool(ready), changes

    def release(self, wid: int) -> Changes:
        """close() of the last reference: the watcher goes."""
        return self._transition(
            lambda c: lib.vmgenid_state_release(self._state, wid, c),
            "release")

    def wait_watchers(self, wid: int, timeout_ms: int, now: float,
                      token: int) -> Optional[int]:
        """0 when no watcher is outdated; None when the call now waits."""
        ret = lib.vmgenid_state_wait_watchers(self._state, wid, timeout_ms,
                                              now, token, ffi.NULL)
        if ret == -errno.EEXIST:
            raise ValueError(f"token {token!r} already pending")
        _check(ret, "WAIT_WATCHERS")
        return None if ret else 0

    # -- changes of generation -------------------------------------------

    def plan_bump(self, minimum: Optional[int] = None) -> tuple[int, int]:
        """(the counter now, the next one): counter + 1, or max(minimum,
        counter + 1) for FORCE_..._MIN.  Nothing changes until the bump is
        published and adopted."""
        if minimum is not None and not 0 <= minimum <= COUNTER_MAX:
            raise ValueError(f"minimum out of range: {minimum}")
        bumped_from = ffi.new("uint32_t *")
        target = ffi.new("uint32_t *")
        _check(lib.vmgenid_state_plan_bump(
            self._state, -1 if minimum is None else minimum,
            bumped_from, target), "no counter left to bump to")
        return bumped_from[0], target[0]

    def adopt(self, counter: Optional[int] = None) -> Changes:
        """What adopting the published counter owes: EINTR to every
        WAIT_WATCHERS caller, a notification to every poller; bumped_from
        if the counter moved.  counter: the one to adopt, for a state
        machine made without `published` (tests)."""
        if counter is not None and not 0 <= counter <= COUNTER_MAX:
            raise ValueError(f"counter out of range: {counter}")
        return self._transition(
            lambda c: lib.vmgenid_state_adopt(
                self._state, -1 if counter is None else counter, c),
            "adopt")

    # -- ends of waiting -------------------------------------------------

    def interrupt(self, token: int) -> Changes:
        """A signal hit a WAIT_WATCHERS caller: EINTR, unless already
        answered (or the token is a read's: the publisher's)."""
        return self._transition(
            lambda c: lib.vmgenid_state_interrupt(self._state, token, c),
            "interrupt")

    def expire(self, now: float) -> Changes:
        """WAIT_WATCHERS calls whose deadline has passed get ETIME."""
        return self._transition(
            lambda c: lib.vmgenid_state_expire(self._state, now, c),
            "expire")

    def abort(self, err: int) -> Changes:
        """The daemon's end: every pending WAIT_WATCHERS gets err."""
        return self._transition(
            lambda c: lib.vmgenid_state_abort(self._state, err, c), "abort")

    # -- internals -------------------------------------------------------

    def _transition(self, call, what: str, keep: bool = False):
        """call(struct vmgenid_changes *) -> its return; the Changes (and
        the return, if keep)."""
        changes = ffi.new("struct vmgenid_changes *")
        lib.vmgenid_changes_clear(changes)
        try:
            ret = _check(call(changes), what)
            result = self._changes_out(changes)
        finally:
            lib.vmgenid_changes_free(changes)
        return (ret, result) if keep else result

    def _changes_out(self, changes) -> Changes:
        return Changes(
            completions=[
                Completion(c.token, error=c.err) if c.err
                else Completion(c.token, 0)
                for c in changes.completions[0:changes.ncompletions]],
            notify=[self._handle_out(h)
                    for h in changes.wake[0:changes.nwake]],
            release=[self._handle_out(h, forget=True)
                     for h in changes.release[0:changes.nrelease]],
            bumped_from=(changes.bumped_from
                         if changes.bumped_from >= 0 else None),
            figures=bool(changes.figures))

    @staticmethod
    def _address(pointer) -> int:
        return int(ffi.cast("uintptr_t", pointer))

    def _handle_in(self, handle: object):
        if handle is None:
            return ffi.NULL
        if isinstance(handle, ffi.CData):
            pointer, stand_in = ffi.cast("void *", handle), None
        else:
            stand_in = ffi.new("char[1]")
            pointer = ffi.cast("void *", stand_in)
        with self._handles_lock:
            self._handles[self._address(pointer)] = (handle, stand_in)
        return pointer

    def _handle_out(self, pointer, forget: bool = False) -> object:
        address = self._address(pointer)
        with self._handles_lock:
            entry = (self._handles.pop(address, None) if forget
                     else self._handles.get(address))
        return entry[0] if entry is not None else pointer

    def _forget(self, pointer) -> None:
        if pointer != ffi.NULL:
            with self._handles_lock:
                self._handles.pop(self._address(pointer), None)
