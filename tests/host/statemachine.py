# SPDX-License-Identifier: MIT
"""The state machine as the host tests drive it: the package's
GenerationState (cuse_vmgenid/device/state.py) beside a real publisher
(native/shim/publisher.c, its state file and page in a folder of its own),
with every transition transport.c makes in C made here from Python, and
the daemon's bump through the one C call the daemon makes
(vmgenid_publisher_bump()).

Poll handles: a real pointer (cdata) goes through to C as it is; any other
object (tests use strings) stands in C for a small allocation of its own,
mapped back on the way out, and forgotten once C hands it back to release.
"""

import errno
import os
import struct
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from typing import Optional

from cuse_vmgenid._cuse import ffi, lib
from cuse_vmgenid.device.page import Page
from cuse_vmgenid.device.publisher import Publisher
from cuse_vmgenid.device.state import COUNTER_MAX, GenerationState
from cuse_vmgenid.device.statefile import StateFile
from cuse_vmgenid.device.errors import check

from .faces import TestPublisher


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
    wake: list = field(default_factory=list)     # poll handles to wake
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


def publisher_bump(publisher: Publisher, state: GenerationState,
                   minimum: Optional[int] = None,
                   kmsg_seq: Optional[int] = None,
                   generation: Optional[int] = None, changes=ffi.NULL) -> int:
    """The daemon's bump, the one C call (vmgenid_publisher_bump()):
    generation, if given, is the hypervisor's counter of a change the
    kernel did not reseed for.  What the adoption owes goes to changes (a
    `struct vmgenid_changes *`), or is dropped.  0 or -errno."""
    bump = ffi.new("struct vmgenid_bump *", {
        "minimum": -1 if minimum is None else minimum,
        "kmsg_seq": -1 if kmsg_seq is None else kmsg_seq,
        "reseed": generation is not None, "generation": generation or 0})
    if changes != ffi.NULL:
        return lib.vmgenid_publisher_bump(publisher.c_handle,
                                          state.c_handle, bump, changes)
    owned = ffi.new("struct vmgenid_changes *")
    lib.vmgenid_changes_clear(owned)
    try:
        return lib.vmgenid_publisher_bump(publisher.c_handle,
                                          state.c_handle, bump, owned)
    finally:
        lib.vmgenid_changes_free(owned)


class _Replies:
    """The publisher's replies to blocked reads: these tests register none
    with it (a read that blocks is answered Blocked), so any is recorded
    for a test to see."""

    def __init__(self):
        self.sent: list = []

        @ffi.callback("int(void *, const char *, size_t)")
        def reply_buf(req, buf, size):
            self.sent.append(ffi.buffer(buf, size)[:])
            return 0

        @ffi.callback("int(void *, int)")
        def reply_err(req, err):
            self.sent.append(err)
            return 0
        self.ops = ffi.new("struct vmgenid_reply_ops *",
                           {"buf": reply_buf, "err": reply_err})
        self._keep = (reply_buf, reply_err)


class _PublishedWithHook:
    """The publisher's published counter, read as the state machine reads
    it, and a hook run once right after the next read: a test's way to
    publish between the daemon's choice and its publication."""

    def __init__(self, publisher: Publisher):
        self.hook = None

        @ffi.callback("uint32_t(void *)")
        def published(ctx):
            counter = lib.vmgenid_publisher_published(ctx)
            hook, self.hook = self.hook, None
            if hook is not None:
                hook()
            return counter
        self.c_published = (published, publisher.c_published[1])
        self._keep = (published, publisher)


def _close(state, publisher, statefile, page, folder) -> None:
    ffi.release(state)          # before the publisher it reads
    publisher.close()
    statefile.close()
    # The daemon keeps its page to its end; a test's goes with it.
    for fd, _, _ in page._files:
        os.close(fd)
    folder.cleanup()


class StateMachine(GenerationState):
    def __init__(self, counter: int = 0, max_watchers_per_uid: int = 1024,
                 hookable: bool = False):
        """hookable: `published.hook` runs once after the state machine's
        next read of the published counter."""
        if not 0 <= counter <= COUNTER_MAX:
            raise ValueError(f"counter out of range: {counter}")
        folder = tempfile.TemporaryDirectory(
            prefix="vmgenid-state-",
            dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
        self.statefile = StateFile(os.path.join(folder.name, "state"),
                                   "boot-1")
        self.page = Page(os.path.join(folder.name, "page"))
        self.replies = _Replies()
        self.publisher = TestPublisher(self.statefile, self.page, counter,
                                       replies=self.replies.ops)
        self.published = (_PublishedWithHook(self.publisher) if hookable
                           else self.publisher)
        super().__init__(counter, max_watchers_per_uid, self.published)
        self._guids = 0
        # Poll handles C holds for Python objects: address -> (object,
        # the allocation that stands for it, or None for a real pointer).
        self._handles: dict[int, tuple] = {}
        self._handles_lock = threading.Lock()
        weakref.finalize(self, _close, self._state, self.publisher,
                         self.statefile, self.page, folder)

    # -- queries (shim/testing.h) ------------------------------------------

    def snapshot(self) -> dict:
        """A consistent copy, for invariant checks."""
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

    def pending_count(self) -> int:
        return self.snapshot()["pending"]

    # -- file operations, as transport.c makes them ------------------------

    def read(self, wid: int, size: int, nonblock: bool) -> bytes | Blocked:
        """The new counter if outdated; Blocked when the read must wait
        (the publisher keeps it)."""
        counter = ffi.new("uint32_t *")
        ret = check(lib.vmgenid_state_read(self._state, wid, size,
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
            ready, changes = self._transition(
                lambda c: lib.vmgenid_state_poll(self._state, wid, pointer,
                                                 c), "poll", keep=True)
        except Exception:
            self._forget(pointer)
            raise
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
        check(ret, "WAIT_WATCHERS")
        return None if ret else 0

    # -- changes of generation -------------------------------------------

    def bump(self, minimum: Optional[int] = None) -> Changes:
        """The daemon's bump: the one C call (choose, publish, choose
        again if the thread published since, adopt)."""
        return self._transition(
            lambda c: publisher_bump(self.publisher, self, minimum,
                                     changes=c),
            "no counter left to bump to")

    def hardware(self) -> int:
        """The GUID poll thread's bump: a new GUID, published outside the
        state machine's lock (1, or -EOVERFLOW at the counter's end)."""
        self._guids += 1
        return self.publisher.hardware(self._guids.to_bytes(16, "little"))

    def adopt(self) -> Changes:
        """What adopting the published counter owes (the daemon's loop,
        after a batch): EINTR to every WAIT_WATCHERS caller, a wake-up to
        every poller; bumped_from if the counter moved."""
        return self._transition(
            lambda c: lib.vmgenid_state_adopt(self._state, c), "adopt")

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
            ret = check(call(changes), what)
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
            wake=[self._handle_out(h)
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
