# SPDX-License-Identifier: MIT
"""The publisher (native/shim/publisher.c): what a publication writes, in
which order, and that every blocked read gets exactly one reply (from a
publication, a cancel or the end), however the daemon's bumps, the
thread's and the reads interleave.

C callbacks stand in for fuse_reply_buf and fuse_reply_err: they record
(request, bytes or errno).  The requests are plain integers cast to
pointers; nothing dereferences them but the callbacks.
"""

import errno
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
from cuse_vmgenid.sources.memory import guid_string
from cuse_vmgenid.sources.guidpoll import GuidPoller
from cuse_vmgenid.device.page import Page
from cuse_vmgenid.device.state import GenerationState
from cuse_vmgenid.device.statefile import StateFile, load
from cuse_vmgenid.device.vmclockpage import VmclockPage

from .faces import GuestMemory, TestPublisher
from .statemachine import publisher_bump

A, B, C = b"A" * 16, b"B" * 16, b"C" * 16


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


class Replies:
    """The reply callbacks and what they were given: (req, bytes) for a
    counter, (req, errno) for an error."""

    def __init__(self, during=None):
        self.sent: list[tuple[int, object]] = []
        self._during = during

        @ffi.callback("int(void *, const char *, size_t)")
        def reply_buf(req, buf, size):
            self.sent.append((int(ffi.cast("uintptr_t", req)),
                              ffi.buffer(buf, size)[:]))
            if self._during is not None:
                self._during()
            return 0

        @ffi.callback("int(void *, int)")
        def reply_err(req, err):
            self.sent.append((int(ffi.cast("uintptr_t", req)), err))
            return 0
        self.ops = ffi.new("struct vmgenid_reply_ops *",
                           {"buf": reply_buf, "err": reply_err})
        self._keep = (reply_buf, reply_err)

    def to(self, n: int) -> list:
        return [what for req, what in self.sent if req == n]


def req(n: int):
    return ffi.cast("void *", n)


def vmclock_counter(page: VmclockPage) -> tuple[int, int]:
    """(vm_generation_counter, seq_count), read under the seqlock."""
    out = ffi.new("struct vmgenid_vmclock_reading *")
    assert lib.vmgenid_vmclock_read(page.c_pointer, out) == 0
    return out.vm_generation_counter, out.seq_count


class Setup:
    def __init__(self, tmp_path, during=None, vmclock=False, counter=0,
                 rng_fd=-1):
        self.state_path = str(tmp_path / "state")
        self.state_file = StateFile(self.state_path, "boot-1")
        self.page = Page(str(tmp_path / "page"))
        self.vmclock = (VmclockPage(str(tmp_path / "vmclock"), counter)
                        if vmclock else None)
        self.replies = Replies(during)
        self.pub = TestPublisher(self.state_file, self.page, counter,
                                 vmclock_page=self.vmclock, rng_fd=rng_fd,
                                 replies=self.replies.ops)
        # The daemon's bumps go through its state machine.
        self.state = GenerationState(counter, 1024, self.pub)

    def bump(self, kmsg_seq=None, generation=None) -> None:
        assert publisher_bump(self.pub, self.state, kmsg_seq=kmsg_seq,
                              generation=generation) == 0

    def close(self):
        ffi.release(self.state.c_handle)
        self.pub.close()
        self.page.close()
        if self.vmclock is not None:
            self.vmclock.close()
        self.state_file.close()


def test_a_new_guid_is_published_once(tmp_path):
    s = Setup(tmp_path, counter=4)
    try:
        s.pub.set_guid(A)
        for n in (0x10, 0x20, 0x30):
            s.pub.wait(req(n), n, 4)
        assert s.pub.hardware(A) == 0              # the GUID it knows
        assert s.replies.sent == [] and s.pub.take() is None
        assert s.pub.hardware(B, kernel_reseeded=True) == 1
        assert s.replies.sent == [(0x10, u32(5)), (0x20, u32(5)),
                                  (0x30, u32(5))]
        saved = load(s.state_path)
        assert (saved.boot_id, saved.counter, saved.guid) == (
            "boot-1", 5, guid_string(B))
        assert s.page.load() == 5 and s.pub.published_counter() == 5
        publication = s.pub.take()
        assert publication[:8] == (4, 5, 1, 1, True, 0, 0, 3)
        assert s.pub.take() is None
        assert s.pub.hardware(B) == 0              # whoever reads it next
        assert s.pub.guid() == B
    finally:
        s.close()


def test_state_file_then_page_then_replies(tmp_path):
    """The order of docs/interface.rst: at the first reply, the state file
    and the page already hold the new counter."""
    seen = []
    s = Setup(tmp_path, during=lambda: seen.append(
        (load(s.state_path).counter, s.page.load())))
    try:
        s.pub.wait(req(1), 1, 0)
        s.bump()
        assert seen == [(1, 1)]
    finally:
        s.close()


def test_the_vmclock_page_after_the_page_before_replies(tmp_path):
    """With --vmclock-link, docs/interface.rst's order: state file, counter
    page, VMClock page, then the replies."""
    seen = []
    s = Setup(tmp_path, vmclock=True, during=lambda: seen.append(
        (load(s.state_path).counter, s.page.load(),
         vmclock_counter(s.vmclock)[0])))
    try:
        _, seq_before = vmclock_counter(s.vmclock)
        s.pub.wait(req(1), 1, 0)
        assert s.pub.hardware(B) == 1
        assert seen == [(1, 1, 1)]
        assert vmclock_counter(s.vmclock) == (1, seq_before + 2)
    finally:
        s.close()


def test_a_bump_after_the_threads_publication_gets_its_own(tmp_path):
    """The thread published 1 first: the daemon's bump is 2 (a bump
    chosen before the thread's publication is chosen again: test_state.py),
    with the kernel record it applies in the state file."""
    s = Setup(tmp_path)
    try:
        s.pub.set_guid(A)
        assert s.pub.hardware(B) == 1
        s.bump(kmsg_seq=17)
        assert (load(s.state_path).counter, s.page.load()) == (2, 2)
        assert load(s.state_path).kmsg_seq == 17
        assert s.pub.take()[:4] == (0, 2, 2, 1)
    finally:
        s.close()


def test_a_look_begun_before_the_threads_publication_bumps_nothing_more(
        tmp_path):
    """The daemon's look (a kernel log hint) read the GUID, then a restore
    fell before it handed the GUID in, and the thread published the new
    one: the look must bump nothing.  It did, once with the old GUID and
    again when the new one was read (a restore under a kernel log flood,
    6.12: generation 2 -> 4 -> 5 for one restore).  So a look hands in
    where the GUID is, and the publisher reads it under its lock."""
    memory = GuestMemory(tmp_path / "mem", A)
    source = memory.source()
    s = Setup(tmp_path, counter=2)
    try:
        s.pub.set_guid(A)
        look = source.check()               # the daemon's look reads A
        memory.write(B)                     # the guest stops here
        assert s.pub.hardware(B) == 1       # the thread: B, generation 3
        assert s.pub.hardware(look.guid, not look.reseed) == 0
        assert s.pub.published_counter() == 3 and s.pub.guid() == B
        assert source.check() is not None   # the next look: B again
        assert s.pub.hardware(source.check().guid) == 0
        assert s.pub.published_counter() == 3
    finally:
        s.close()
        source.close()


def test_a_read_that_blocked_at_an_older_counter_is_answered_at_once(
        tmp_path):
    """The state machine said 'blocks at 0', the thread published 1 before
    the read reached the publisher: no waiting for 2."""
    s = Setup(tmp_path)
    try:
        s.bump()
        s.pub.wait(req(9), 9, 0)
        assert s.replies.to(9) == [u32(1)]
        assert not s.pub.cancel(9, errno.EINTR)
    finally:
        s.close()


def test_cancel_and_abort_answer_each_read_once(tmp_path):
    s = Setup(tmp_path)
    try:
        for n in (1, 2, 3):
            s.pub.wait(req(n), n, 0)
        assert s.pub.cancel(2, errno.EINTR)
        assert not s.pub.cancel(2, errno.EINTR)
        s.bump()
        s.pub.wait(req(4), 4, 1)
        assert s.pub.abort(errno.ECONNABORTED) == 1
        assert s.replies.sent == [(2, errno.EINTR), (1, u32(1)),
                                  (3, u32(1)), (4, errno.ECONNABORTED)]
    finally:
        s.close()


def test_at_the_counter_maximum_a_new_guid_is_refused(tmp_path):
    s = Setup(tmp_path, counter=0xFFFFFFFF)
    try:
        s.pub.set_guid(A)
        assert s.pub.hardware(B) == -errno.EOVERFLOW
        assert s.pub.published_counter() == 0xFFFFFFFF
    finally:
        s.close()


def test_a_new_guid_goes_into_the_rng_unless_the_kernel_did_it(tmp_path):
    """A pipe stands in for /dev/urandom: the GUID is written to it before
    anyone wakes (the reseed ioctl then fails there, ENOTTY: ignored); not
    when the kernel's own driver reseeded (its log line said so)."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    seen = []
    s = Setup(tmp_path, rng_fd=w, during=lambda: seen.append(_drain(r)))
    try:
        s.pub.set_guid(A)
        s.pub.wait(req(1), 1, 0)
        assert s.pub.hardware(B) == 1
        assert seen == [B]
        assert s.pub.hardware(C, kernel_reseeded=True) == 1
        assert _drain(r) == b""
    finally:
        s.close()
        os.close(r)
        os.close(w)


def test_a_change_without_a_guid_reseeds_the_rng_before_anyone_wakes(
        tmp_path):
    """The VMClock tier's change (a bump with its generation): no GUID,
    and no kernel reseed of its own, so what differs between clones goes
    to the RNG before the blocked read is answered: a pipe stands in for
    /dev/urandom (the reseed ioctl then fails there, ENOTTY, and the
    publication says so).  Never twice the same bytes: the CPU's random
    words (where it has them), the hypervisor's counter, the new counter,
    the time."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    seen = []
    s = Setup(tmp_path, rng_fd=w, during=lambda: seen.append(_drain(r)))
    try:
        s.pub.wait(req(1), 1, 0)
        s.bump(generation=7)
        assert s.replies.sent == [(1, u32(1))]
        [first] = seen
        assert struct.pack("=Q", 7) in first and u32(1) in first
        publication = s.pub.take()
        assert publication.counter == 1 and publication.reseeds == 1
        assert publication.reseed_error == errno.ENOTTY
        assert publication.reseed_note().startswith(
            "cannot reseed the kernel RNG: ")
        s.bump(generation=7)                    # same counter, later
        second = _drain(r)
        assert len(second) == len(first) and second != first
        assert s.pub.take().reseeds == 1
        s.bump()                                # a bump, no change
        assert _drain(r) == b""
        assert s.pub.take().reseed_note() is None
    finally:
        s.close()
        os.close(r)
        os.close(w)


def test_a_cpu_random_source_is_used_where_the_cpu_has_one(tmp_path):
    """RDSEED/RDRAND: 8 words where /proc/cpuinfo lists either, else 0
    (the reseed goes on with the counters and the time)."""
    with open("/proc/cpuinfo") as f:
        flags = set(next(line for line in f if line.startswith("flags"))
                    .split(":", 1)[1].split())
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    s = Setup(tmp_path, rng_fd=w)
    try:
        s.bump(generation=1)
        words = s.pub.take().reseed_cpu_words
        assert words == (8 if {"rdrand", "rdseed"} & flags else 0), flags
    finally:
        s.close()
        os.close(r)
        os.close(w)


def _drain(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""


class ExactlyOneReply(RuleBasedStateMachine):
    """Reads block and are interrupted; the daemon bumps; the GUID
    changes.  Every read gets exactly one reply,
    the counter of the publication that answered it, and every
    publication is exactly one step of the counter per change."""

    @initialize()
    def setup(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.s = Setup(Path(self._tmp.name))
        self.s.pub.set_guid(A)
        self.counter = 0
        self.guid = A
        self.waiting: dict[int, int] = {}     # req -> counter it blocked at
        self.next_req = 1

    def teardown(self):
        if hasattr(self, "s"):
            self.s.pub.abort(errno.ECONNABORTED)
            for n in self.waiting:
                assert self.s.replies.to(n) == [errno.ECONNABORTED]
            self.s.close()
            self._tmp.cleanup()

    @rule(stale=st.booleans())
    def a_read_blocks(self, stale):
        """stale: the state machine decided before the last publication."""
        n, self.next_req = self.next_req, self.next_req + 1
        seen = self.counter - 1 if stale and self.counter else self.counter
        self.s.pub.wait(req(n), n, seen)
        if seen != self.counter:
            assert self.s.replies.to(n) == [u32(self.counter)]
        else:
            self.waiting[n] = seen

    @rule(data=st.data())
    def a_signal_interrupts_one(self, data):
        if not self.waiting:
            return
        n = data.draw(st.sampled_from(sorted(self.waiting)))
        del self.waiting[n]
        assert self.s.pub.cancel(n, errno.EINTR)
        assert self.s.replies.to(n) == [errno.EINTR]

    @rule()
    def the_daemon_bumps(self):
        self.s.bump()
        self.published(self.counter + 1)

    @rule(guid=st.sampled_from([A, B, C]))
    def the_guid_is_read(self, guid):
        result = self.s.pub.hardware(guid)
        assert result == (guid != self.guid)
        if result:
            self.guid = guid
            self.published(self.counter + 1)

    def published(self, counter):
        for n in self.waiting:
            assert self.s.replies.to(n) == [u32(counter)]
        self.waiting.clear()
        self.counter = counter
        assert self.s.page.load() == counter
        assert load(self.s.state_path).counter == counter

    @invariant()
    def one_reply_per_read(self):
        if not hasattr(self, "s"):
            return
        answered = [n for n, _ in self.s.replies.sent]
        assert len(answered) == len(set(answered))
        assert not set(answered) & set(self.waiting)


ExactlyOneReply.TestCase.settings = settings(max_examples=60,
                                             stateful_step_count=40,
                                             deadline=None)
test_exactly_one_reply = ExactlyOneReply.TestCase


def test_the_poll_thread_publishes_a_new_guid(tmp_path):
    """The whole path on the host: the GUID changes in memory, the thread
    publishes (calling the reply callback from its own thread) and then
    wakes the daemon's eventfd."""
    page = mmap.mmap(-1, mmap.PAGESIZE)
    page[:16] = A
    s = Setup(tmp_path)
    poller = GuidPoller(memoryview(page)[:16], 5)
    try:
        s.pub.set_guid(A)
        s.pub.wait(req(7), 7, 0)
        poller.publish_to(s.pub)
        page[:16] = B
        p = select.poll()
        p.register(poller.fileno(), select.POLLIN)
        assert p.poll(10_000)
        assert poller.take() is True
        assert s.pub.take()[:4] == (0, 1, 1, 1)
        assert s.replies.sent == [(7, u32(1))]
        assert load(s.state_path).guid == guid_string(B)
        poller.publish_to(None)
    finally:
        poller.close()
        s.close()
    page.close()


def test_the_thread_tells_the_publisher_the_kernel_reseeded(tmp_path):
    """The GUID changes and the kernel logs its VM fork line: the thread
    publishes it as seen on the kernel's line, and the RNG is left alone
    (the kernel's driver reseeded it)."""
    page = mmap.mmap(-1, mmap.PAGESIZE)
    page[:16] = A
    rng_r, rng_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    kmsg_r, kmsg_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    s = Setup(tmp_path, rng_fd=rng_w)
    # An interval no test waits for: only the log wakes the thread.
    poller = GuidPoller(memoryview(page)[:16], 3_600_000, kmsg_fd=kmsg_r)
    try:
        s.pub.set_guid(A)
        poller.publish_to(s.pub)
        page[:16] = B
        os.write(kmsg_w, b"5,3,300,-;"
                 + ffi.string(lib.vmgenid_vmfork_line) + b"\n")
        p = select.poll()
        p.register(poller.fileno(), select.POLLIN)
        assert p.poll(10_000)
        publication = s.pub.take()
        assert publication[:5] == (0, 1, 1, 1, True)
        assert _drain(rng_r) == b""
        poller.publish_to(None)
    finally:
        poller.close()
        s.close()
        for fd in (rng_r, rng_w, kmsg_r, kmsg_w):
            os.close(fd)
    page.close()
