# SPDX-License-Identifier: MIT
"""The GUID poll thread (native/shim/guidpoll.c) on an anonymous page standing in
for the hypervisor's: its eventfd becomes readable iff the 16 bytes change.
"""

import errno
import mmap
import os
import select
import signal

import pytest

from cuse_vmgenid.sources.guidpoll import GuidPoller

GUID_AT = 40
INTERVAL_MS = 5
QUIET_POLLS = 20      # intervals to wait for a signal that must not come


@pytest.fixture
def page():
    with mmap.mmap(-1, mmap.PAGESIZE) as m:
        yield m


def readable(poller: GuidPoller, timeout_ms: int) -> bool:
    p = select.poll()
    p.register(poller.fileno(), select.POLLIN)
    return bool(p.poll(timeout_ms))


def test_silent_while_the_guid_stays_and_one_signal_per_change(page):
    page[GUID_AT:GUID_AT + 16] = b"A" * 16
    poller = GuidPoller(memoryview(page)[GUID_AT:GUID_AT + 16], INTERVAL_MS)
    try:
        # Rewriting the same bytes (a restore with the same GUID) is no
        # change either.
        page[GUID_AT:GUID_AT + 16] = b"A" * 16
        assert not readable(poller, QUIET_POLLS * INTERVAL_MS)
        assert poller.take() is False
        page[GUID_AT:GUID_AT + 16] = b"B" * 16
        assert readable(poller, 10_000)
        assert poller.take() is True
        assert poller.take() is False       # taken once
        assert not readable(poller, QUIET_POLLS * INTERVAL_MS)
        # Bytes beside the GUID are not its business.
        page[GUID_AT + 16] = 1
        page[GUID_AT - 1] = 1
        assert not readable(poller, QUIET_POLLS * INTERVAL_MS)
    finally:
        poller.close()
    page.close()        # the view was released: the mapping can go


def tasks() -> set[str]:
    return set(os.listdir("/proc/self/task"))


def test_the_thread_blocks_every_signal_and_stops(page):
    before = tasks()
    poller = GuidPoller(memoryview(page)[GUID_AT:GUID_AT + 16], INTERVAL_MS)
    try:
        [thread] = tasks() - before
        with open(f"/proc/self/task/{thread}/status") as f:
            [blocked] = [int(line.split()[1], 16) for line in f
                         if line.startswith("SigBlk:")]
        # Signals are the main thread's, where Python runs its handlers:
        # all blocked here but the two that cannot be, and glibc's own
        # (32 SIGCANCEL, 33 SIGSETXID: blocked only while it starts us).
        unblocked = {n for n in range(1, 65) if not blocked >> (n - 1) & 1}
        assert unblocked - {32, 33} == {signal.SIGKILL, signal.SIGSTOP}
    finally:
        poller.close()
    poller.close()      # twice is harmless
    assert tasks() == before


def test_a_zero_interval_is_refused(page):
    with pytest.raises(ValueError):
        GuidPoller(memoryview(page)[GUID_AT:GUID_AT + 16], 0)


def kmsg_pipe() -> tuple[int, int]:
    """A pipe stands in for /dev/kmsg: one write, one record."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    return r, w


VMFORK = b"random: crng reseeded due to virtual machine fork"


def test_the_kernels_vm_fork_line_wakes_the_daemon(page):
    """The thread reads the kernel log: the kernel's line (facility 0)
    wakes the daemon at once, with or without a new GUID; a userspace
    record saying the same (facility 1) does not."""
    page[GUID_AT:GUID_AT + 16] = b"A" * 16
    kmsg_r, kmsg_w = kmsg_pipe()
    # An interval no test waits for: only the log wakes the thread.
    poller = GuidPoller(memoryview(page)[GUID_AT:GUID_AT + 16], 3_600_000,
                        kmsg_fd=kmsg_r)
    try:
        os.write(kmsg_w, b"14,1,100,-;" + VMFORK + b"\n")
        assert not readable(poller, QUIET_POLLS * INTERVAL_MS)
        os.write(kmsg_w, b"5,2,200,-;" + VMFORK + b"\n SUBSYSTEM=x\n")
        assert readable(poller, 10_000)
        assert poller.take() is True
        assert poller.take_kernel_log() is True
        assert poller.take_kernel_log() is False    # taken once

        page[GUID_AT:GUID_AT + 16] = b"B" * 16
        os.write(kmsg_w, b"5,3,300,-;" + VMFORK + b"\n")
        assert readable(poller, 10_000)
        assert poller.take() is True
        assert poller.take_kernel_log() is True
    finally:
        poller.close()
        for fd in (kmsg_r, kmsg_w):
            os.close(fd)
    page.close()


@pytest.mark.parametrize("kmsg_tells", [False, True])
def test_a_failing_kernel_log_leaves_the_timer(page, kmsg_tells):
    """The log's end (here the pipe's writer gone) is not a busy loop:
    the thread tells the daemon once, why, and goes on with its interval,
    also where the log was all it waited for."""
    page[GUID_AT:GUID_AT + 16] = b"A" * 16
    kmsg_r, kmsg_w = kmsg_pipe()
    os.close(kmsg_w)
    poller = GuidPoller(memoryview(page)[GUID_AT:GUID_AT + 16], INTERVAL_MS,
                        kmsg_fd=kmsg_r, kmsg_tells=kmsg_tells)
    try:
        assert readable(poller, 10_000)
        assert poller.take() is True
        assert poller.kmsg_error() == errno.EPIPE
        assert poller.take_kernel_log() is False
        assert not readable(poller, QUIET_POLLS * INTERVAL_MS)
        page[GUID_AT:GUID_AT + 16] = b"B" * 16
        assert readable(poller, 10_000)
        assert poller.take() is True
        assert poller.take_kernel_log() is False
    finally:
        poller.close()
        os.close(kmsg_r)
    page.close()


def switches(tid: str) -> int:
    """The thread's context switches so far: one per wake-up."""
    with open(f"/proc/self/task/{tid}/status") as f:
        return sum(int(line.split()[1]) for line in f
                   if line.split(":")[0] in ("voluntary_ctxt_switches",
                                             "nonvoluntary_ctxt_switches"))


def test_where_the_kernel_log_tells_the_thread_never_wakes_by_itself(page):
    """kmsg_tells (the kernel logs every change): no timer at all.  Over
    many intervals the thread does not run once; a record, any record,
    makes it compare the GUID, so a change is seen however the record
    reads (here a process's, not the kernel's line)."""
    page[GUID_AT:GUID_AT + 16] = b"A" * 16
    kmsg_r, kmsg_w = kmsg_pipe()
    before = tasks()
    poller = GuidPoller(memoryview(page)[GUID_AT:GUID_AT + 16], INTERVAL_MS,
                        kmsg_fd=kmsg_r, kmsg_tells=True)
    try:
        [thread] = tasks() - before
        with open(f"/proc/self/task/{thread}/comm") as f:
            assert f.read() == "vmgenid-guid\n"
        # Asleep in ppoll() once started.
        assert not readable(poller, QUIET_POLLS * INTERVAL_MS)
        woke = switches(thread)
        # A change nothing tells of is not seen: no timer compares it.
        page[GUID_AT:GUID_AT + 16] = b"B" * 16
        assert not readable(poller, QUIET_POLLS * INTERVAL_MS)
        assert switches(thread) == woke
        # The next record, whatever it says, makes the thread compare.
        os.write(kmsg_w, b"14,1,100,-;a process's line\n")
        assert readable(poller, 10_000)
        assert poller.take() is True
        assert poller.take_kernel_log() is False
        assert switches(thread) > woke
    finally:
        poller.close()
        for fd in (kmsg_r, kmsg_w):
            os.close(fd)
    page.close()
