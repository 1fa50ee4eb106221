# SPDX-License-Identifier: MIT
"""The armed bump (decl/armedbump.c): what firing publishes, in which
order, and that every registered read gets exactly one reply, from the
thread or from the daemon, however the two interleave.

A C callback stands in for fuse_reply_buf: it records (request, bytes).
The requests are plain integers cast to pointers; nothing dereferences
them but the callback.
"""

import mmap
import os
import select
import struct
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize,
                                 invariant, rule)

from cuse_vmgenid._cuse import ffi, lib
from cuse_vmgenid.armedbump import ArmedBump
from cuse_vmgenid.guid.memory import guid_string
from cuse_vmgenid.guidpoll import GuidPoller
from cuse_vmgenid.page import Page
from cuse_vmgenid.statefile import StateFile, load
from cuse_vmgenid.vmclock import VmclockPage

A, B, C = b"A" * 16, b"B" * 16, b"C" * 16


class Replies:
    """The reply callback and what it was given."""

    def __init__(self, during=None):
        self.sent: list[tuple[int, bytes]] = []
        self._during = during

        @ffi.callback("int(fuse_req_t, const char *, size_t)")
        def reply(req, buf, size):
            self.sent.append((int(ffi.cast("uintptr_t", req)),
                              ffi.buffer(buf, size)[:]))
            if self._during is not None:
                self._during()
            return 0
        self.callback = reply


def req(n: int):
    return ffi.cast("fuse_req_t", n)


def fire(armed: ArmedBump, guid: bytes, kernel_log: bool = False) -> bool:
    """What the GUID poll thread does on a change (here on this thread)."""
    woke = ffi.new("char[]", 64)     # a struct timespec of 0: its timings
    return bool(lib.vmgenid_armed_bump_fire(        # are not checked here
        armed.c_handle, guid, int(kernel_log),
        ffi.cast("struct timespec *", woke)))


class Setup:
    def __init__(self, tmp_path, during=None, vmclock=False):
        self.state_path = str(tmp_path / "state")
        self.state_file = StateFile(self.state_path, "boot-1")
        self.page = Page(str(tmp_path / "page"))
        self.vmclock = (VmclockPage(str(tmp_path / "vmclock"), 0)
                        if vmclock else None)
        self.replies = Replies(during)
        self.armed = ArmedBump(self.state_file, self.page,
                               self.replies.callback, self.vmclock)

    def close(self):
        self.armed.close()
        self.state_file.close()


def test_firing_publishes_the_armed_counter_once(tmp_path):
    s = Setup(tmp_path)
    try:
        s.state_file.save(4, guid_string(A))
        s.armed.arm(5, A)
        reads = [s.armed.add_read(req(n)) for n in (0x10, 0x20, 0x30)]
        assert not fire(s.armed, A)             # the GUID it knows
        assert s.replies.sent == [] and not s.armed.fired_flag[0]
        assert fire(s.armed, B, kernel_log=True)
        value = struct.pack("=I", 5)
        assert s.replies.sent == [(0x10, value), (0x20, value),
                                  (0x30, value)]
        saved = load(s.state_path)
        assert (saved.boot_id, saved.counter, saved.guid) == (
            "boot-1", 5, guid_string(B))
        assert s.page.load() == 5
        assert s.armed.fired_flag[0]
        fired = s.armed.take()
        assert fired[:5] == (5, B, 0, 3, True)
        assert s.armed.take() is None and not s.armed.fired_flag[0]
        # The thread answered them all: the daemon must not again.
        assert [s.armed.take_read(r) for r in reads] == [False] * 3
        # Disarmed by firing: nothing more until the daemon arms again.
        assert not fire(s.armed, C)
        assert load(s.state_path).counter == 5 and s.page.load() == 5
        # The daemon's own save of that bump writes nothing.
        assert s.state_file.save(5, guid_string(B)) is False
    finally:
        s.close()


def test_state_file_then_page_then_replies(tmp_path):
    """The order of docs/interface.rst: at the first reply, the state file
    and the page already hold the new counter."""
    seen = []
    s = Setup(tmp_path, during=lambda: seen.append(
        (load(s.state_path).counter, s.page.load())))
    try:
        s.armed.arm(1, A)
        read = s.armed.add_read(req(1))
        assert fire(s.armed, B)
        assert seen == [(1, 1)]
        assert not s.armed.take_read(read)
    finally:
        s.close()


def vmclock_counter(page: VmclockPage) -> tuple[int, int]:
    """(vm_generation_counter, seq_count), read under the seqlock."""
    out = ffi.new("struct vmgenid_vmclock_reading *")
    assert lib.vmgenid_vmclock_read(page.c_pointer, out) == 0
    return out.vm_generation_counter, out.seq_count


def test_the_vmclock_page_after_the_page_before_replies(tmp_path):
    """With --vmclock-link, docs/interface.rst's order: state file, counter page,
    VMClock page, then the replies."""
    seen = []
    s = Setup(tmp_path, vmclock=True, during=lambda: seen.append(
        (load(s.state_path).counter, s.page.load(),
         vmclock_counter(s.vmclock)[0])))
    try:
        _, seq_before = vmclock_counter(s.vmclock)
        s.armed.arm(1, A)
        read = s.armed.add_read(req(1))
        assert fire(s.armed, B)
        assert seen == [(1, 1, 1)]
        assert vmclock_counter(s.vmclock) == (1, seq_before + 2)
        assert not s.armed.take_read(read)
    finally:
        s.close()


def test_reads_the_daemon_took_are_not_answered(tmp_path):
    s = Setup(tmp_path)
    try:
        s.armed.arm(1, A)
        first = s.armed.add_read(req(1))
        second = s.armed.add_read(req(2))
        assert s.armed.take_read(first)          # the daemon answers it
        assert fire(s.armed, B)
        assert s.replies.sent == [(2, struct.pack("=I", 1))]
        assert not s.armed.take_read(second)
    finally:
        s.close()


def test_a_taken_bump_is_disarmed(tmp_path):
    """The daemon's own bumps start with a take: from then on the thread
    cannot publish a generation the daemon is about to publish too."""
    s = Setup(tmp_path)
    try:
        s.armed.arm(1, A)
        read = s.armed.add_read(req(1))
        assert s.armed.take() is None
        assert not fire(s.armed, B)
        assert s.replies.sent == [] and s.page.load() == 0
        assert not os.path.exists(s.state_path)
        assert s.armed.take_read(read)
        s.armed.arm(1, A)                        # armed again: fires
        assert fire(s.armed, B)
    finally:
        s.close()


class ExactlyOneReply(RuleBasedStateMachine):
    """Reads come and go; the daemon answers some, takes, arms; the thread
    fires.  Every read gets exactly one reply, and every fire publishes
    the armed counter."""

    @initialize()
    def setup(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.s = Setup(Path(self._tmp.name))
        self.counter = 0
        self.guid = A
        self.armed = False
        self.waiting = {}           # req -> registration
        self.next_req = 1
        self.daemon_replies: list[int] = []

    def teardown(self):
        if hasattr(self, "s"):
            by_thread = {n for n, _ in self.s.replies.sent}
            for n, read in self.waiting.items():
                # The daemon may answer exactly those the thread did not.
                assert self.s.armed.take_read(read) == (n not in by_thread)
            self.s.close()
            self._tmp.cleanup()

    @rule()
    def a_read_waits(self):
        self.waiting[self.next_req] = self.s.armed.add_read(
            req(self.next_req))
        self.next_req += 1

    @rule(data=st.data())
    def the_daemon_answers_one(self, data):
        """An interrupt, a close: the daemon replies unless the thread
        did."""
        if not self.waiting:
            return
        n = data.draw(st.sampled_from(sorted(self.waiting)))
        if self.s.armed.take_read(self.waiting.pop(n)):
            self.daemon_replies.append(n)

    @rule()
    def the_daemon_takes_and_arms(self):
        fired = self.s.armed.take()
        if fired is not None:
            assert fired.counter == self.counter + 1
            self.counter, self.guid = fired.counter, fired.guid
        self.s.armed.arm(self.counter + 1, self.guid)
        self.armed = True

    @rule(guid=st.sampled_from([A, B, C]))
    def the_guid_changes(self, guid):
        before = len(self.s.replies.sent)
        fired = fire(self.s.armed, guid)
        assert fired == (self.armed and guid != self.guid)
        if fired:
            self.armed = False
            for n, value in self.s.replies.sent[before:]:
                assert value == struct.pack("=I", self.counter + 1)
            assert self.s.page.load() == self.counter + 1
        else:
            assert len(self.s.replies.sent) == before

    @invariant()
    def never_two_replies(self):
        if not hasattr(self, "s"):
            return
        answered = [n for n, _ in self.s.replies.sent] + self.daemon_replies
        assert len(answered) == len(set(answered))


ExactlyOneReply.TestCase.settings = settings(max_examples=60,
                                             stateful_step_count=40,
                                             deadline=None)
test_exactly_one_reply = ExactlyOneReply.TestCase


def test_the_poll_thread_fires_it_on_a_new_guid(tmp_path):
    """The whole path on the host: the GUID changes in memory, the thread
    publishes the armed counter (calling the reply callback from its own
    thread) and then wakes the daemon's eventfd."""
    page = mmap.mmap(-1, mmap.PAGESIZE)
    page[:16] = A
    s = Setup(tmp_path)
    poller = GuidPoller(memoryview(page)[:16], 5)
    try:
        s.armed.arm(1, A)
        read = s.armed.add_read(req(7))
        poller.fire(s.armed)
        page[:16] = B
        p = select.poll()
        p.register(poller.fileno(), select.POLLIN)
        assert p.poll(10_000)
        assert poller.take() is True
        fired = s.armed.take()
        assert fired[:5] == (1, B, 0, 1, False)
        assert s.replies.sent == [(7, struct.pack("=I", 1))]
        assert not s.armed.take_read(read)
        assert load(s.state_path).guid == guid_string(B)
        poller.fire(None)
    finally:
        poller.close()
        s.close()
    page.close()
