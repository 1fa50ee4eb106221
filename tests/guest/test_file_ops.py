# SPDX-License-Identifier: MIT
"""open, read, write and close of /dev/vmgenid, against the real daemon.

The rows of docs/interface.rst for those file operations, one behaviour per
test.  Callers that block run in separate processes (the C helpers in
native/build, or a small Python child); the test waits until such a process
is really asleep in the system call before it acts.  Its request then sits
in the FUSE queue ahead of anything the test sends afterwards, so the daemon
sees them in that order.  Every wait on a child has a generous limit: a
daemon that never answers fails the test instead of hanging the run.
"""

import errno
import fcntl
import os
import select
import struct
import sys
import time

from .device import (ack, errno_of, force, force_from_elsewhere, native,
                     open_device, outdated, raw_read, read_counter,
                     run_native, wait_watchers)
from .processes import (HANG, NOBODY, SYS_IOCTL, SYS_READ, wait_all_blocked,
                        wait_blocked)

CAP = 8   # the daemon fixture's --max-watchers-per-uid


def set_nonblock(fd: int, on: bool) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    flags = flags | os.O_NONBLOCK if on else flags & ~os.O_NONBLOCK
    fcntl.fcntl(fd, fcntl.F_SETFL, flags)


def reader(*args: str):
    """vmgenid-reader run to completion (a hang fails via its timeout)."""
    return run_native("vmgenid-reader", *args).stdout.splitlines()


# Reads one blocking read(2) from the inherited fd argv[1].
READ_INHERITED = (
    "import os, struct, sys\n"
    "fd = int(sys.argv[1])\n"
    "print('open', flush=True)\n"
    "data = os.read(fd, 64)\n"
    "print('read', len(data), *struct.unpack('=I', data[:4]), flush=True)\n")


# -- open -------------------------------------------------------------------

def test_new_watcher_is_up_to_date(daemon):
    fd = open_device(os.O_RDWR | os.O_NONBLOCK)
    try:
        assert errno_of(raw_read, fd) == errno.EAGAIN
        assert outdated(fd) == 0
        force(fd)
        late = open_device(os.O_RDWR | os.O_NONBLOCK)
        try:
            # Opened after the bump: up to date, and not counted.
            assert errno_of(raw_read, late) == errno.EAGAIN
            assert outdated(late) == 1
            assert read_counter(fd) == 1
        finally:
            os.close(late)
    finally:
        os.close(fd)


def test_open_past_the_per_uid_cap_fails_with_edquot(spawn):
    holder = spawn(*NOBODY, native("vmgenid-open"), 20)
    assert holder.lines_until("holding") == [
        *(f"opened {k}" for k in range(1, CAP + 1)),
        f"open errno=EDQUOT after {CAP}", "holding"]
    # The cap is per uid, not per process.
    second = spawn(*NOBODY, native("vmgenid-open"), 3)
    assert second.lines_until("holding") == ["open errno=EDQUOT after 0",
                                             "holding"]


def test_root_is_exempt_from_the_per_uid_cap(spawn):
    holder = spawn(native("vmgenid-open"), 20)
    assert holder.lines_until("holding") == [
        *(f"opened {k}" for k in range(1, 21)), "holding"]
    fd = open_device()
    try:
        assert outdated(fd) == 0
    finally:
        os.close(fd)


def test_closing_watchers_frees_the_uid_quota(spawn):
    first = spawn(*NOBODY, native("vmgenid-open"), 20)
    assert first.lines_until("holding")[-2:] == [
        f"open errno=EDQUOT after {CAP}", "holding"]
    first.kill()     # reaped: every release has been answered
    again = spawn(*NOBODY, native("vmgenid-open"), 20)
    assert again.lines_until("holding") == [
        *(f"opened {k}" for k in range(1, CAP + 1)),
        f"open errno=EDQUOT after {CAP}", "holding"]


# -- read -------------------------------------------------------------------

def test_read_of_zero_bytes_returns_zero(daemon):
    # Up to date, from a blocking fd: 0 at once, no wait for a change.
    assert reader("-s", "0") == ["open", "read ret=0 value=0 errno=0"]
    fd = open_device()
    try:
        force(fd)
        assert raw_read(fd, 0) == b""
        assert outdated(fd) == 1
    finally:
        os.close(fd)


def test_read_shorter_than_four_bytes_fails_with_einval(daemon):
    for size in (1, 2, 3):
        # Up to date (would otherwise block) ...
        assert reader("-s", str(size)) == [
            "open", "read ret=-1 value=0 errno=EINVAL"], size
    # ... and outdated (would otherwise return the counter).
    fd = open_device()
    try:
        force(fd)
        for size in (1, 2, 3):
            assert errno_of(raw_read, fd, size) == errno.EINVAL, size
        assert outdated(fd) == 1
        assert read_counter(fd) == 1
    finally:
        os.close(fd)


def test_outdated_read_returns_counter_without_acknowledging(daemon):
    fd = open_device()
    try:
        force(fd)
        assert raw_read(fd, 4) == struct.pack("=I", 1)
        assert outdated(fd) == 1
        assert raw_read(fd, 4) == struct.pack("=I", 1)
        assert outdated(fd) == 1
        force(fd)
        assert read_counter(fd) == 2
        assert outdated(fd) == 1
    finally:
        os.close(fd)


def test_read_with_a_larger_buffer_returns_four_bytes(daemon):
    fd = open_device()
    try:
        force(fd)
        for size in (5, 8, 64, 4096):
            assert raw_read(fd, size) == struct.pack("=I", 1), size
    finally:
        os.close(fd)


def test_up_to_date_nonblocking_read_fails_with_eagain(daemon):
    assert reader("-n") == ["open", "read ret=-1 value=0 errno=EAGAIN"]
    fd = open_device(os.O_RDWR | os.O_NONBLOCK)
    try:
        force(fd)
        assert read_counter(fd) == 1
        assert ack(fd, 1) == 4
        assert errno_of(raw_read, fd) == errno.EAGAIN
    finally:
        os.close(fd)


def test_nonblock_set_and_cleared_by_fcntl_after_open(spawn):
    fd = open_device()                 # blocking at open
    try:
        set_nonblock(fd, True)
        assert errno_of(raw_read, fd) == errno.EAGAIN
        set_nonblock(fd, False)
        # Blocking again: a process sharing this file description waits in
        # read() until the change.
        child = spawn(sys.executable, "-c", READ_INHERITED, fd,
                      pass_fds=(fd,))
        assert child.line() == "open"
        wait_blocked(child, SYS_READ)
        assert child.silent()
        force_from_elsewhere()
        assert child.line() == "read 4 1"
        assert child.wait() == 0
    finally:
        os.close(fd)


def test_blocked_read_is_woken_by_force_from_another_process(spawn):
    blocked = spawn(native("vmgenid-reader"))
    assert blocked.line() == "open"
    wait_blocked(blocked, SYS_READ)
    assert blocked.silent()
    force_from_elsewhere()
    assert blocked.line() == "read ret=4 value=1 errno=0"
    assert blocked.wait() == 0


def test_one_force_wakes_a_hundred_blocked_readers(spawn):
    mine = open_device()
    try:
        # Half acknowledge after their read, half stay outdated; all hold
        # their watcher open until killed.
        ackers = [spawn(native("vmgenid-reader"), "-a", "-h")
                  for _ in range(50)]
        keepers = [spawn(native("vmgenid-reader"), "-h") for _ in range(50)]
        everyone = ackers + keepers
        for child in everyone:
            assert child.line() == "open"
        wait_all_blocked(everyone, SYS_READ)
        assert outdated(mine) == 0

        force_from_elsewhere()             # one bump
        for child in ackers:
            assert child.lines_until("holding") == [
                "read ret=4 value=1 errno=0", "ack ret=4 errno=0", "holding"]
        for child in keepers:
            assert child.lines_until("holding") == [
                "read ret=4 value=1 errno=0", "holding"]
        # The 50 acks each dropped the count by one.
        assert outdated(mine) == 1 + 50

        force(mine)                        # nobody reads or acks this one
        assert outdated(mine) == 1 + 100
        for child in ackers:
            child.kill()
        assert outdated(mine) == 1 + 50
        for child in keepers:
            child.kill()
        assert outdated(mine) == 1
        assert ack(mine, read_counter(mine)) == 4
        assert outdated(mine) == 0
    finally:
        os.close(mine)


def test_forked_processes_share_one_watcher(daemon):
    fd = open_device()
    other = open_device()
    go_r, go_w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:                           # child: one read and one ack
        status = 1
        try:
            os.close(go_w)
            os.close(res_r)
            if os.read(go_r, 1) == b"g":
                value = read_counter(fd)
                os.write(res_w, struct.pack("=Ii", value, ack(fd, value)))
                status = 0
        finally:
            os._exit(status)
    os.close(go_r)
    os.close(res_w)
    try:
        force(other)
        assert outdated(other) == 2        # the pair is one watcher
        assert ack(other, 1) == 4
        assert outdated(other) == 1
        assert read_counter(fd) == 1       # the parent reads, no ack
        os.write(go_w, b"g")
        ready, _, _ = select.select([res_r], [], [], HANG)
        assert ready, "the child's read or ack did not return"
        assert struct.unpack("=Ii", os.read(res_r, 8)) == (1, 4)
        assert os.waitpid(pid, 0)[1] == 0
        pid = 0
        # The child's ack is the parent's: nothing new to read.
        assert outdated(other) == 0
        set_nonblock(fd, True)
        assert errno_of(raw_read, fd) == errno.EAGAIN
        # The child's exit closed its copy only: still one watcher.
        force(other)
        assert outdated(other) == 2
        assert read_counter(fd) == 2
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        for f in (fd, other, go_w, res_r):
            os.close(f)


# -- write ------------------------------------------------------------------

def test_write_of_other_than_four_bytes_fails_with_einval(daemon):
    fd = open_device()
    try:
        force(fd)
        for size in (1, 3, 5, 8):
            data = struct.pack("=II", 1, 1)[:size].ljust(size, b"\0")
            assert errno_of(os.write, fd, data) == errno.EINVAL, size
        assert outdated(fd) == 1
        assert read_counter(fd) == 1
    finally:
        os.close(fd)


def test_write_of_zero_bytes_returns_zero(daemon):
    """The kernel answers it without asking the daemon (fuse_direct_io
    sends nothing for 0 bytes): documented, not EINVAL as v3's."""
    fd = open_device()
    try:
        force(fd)
        assert os.write(fd, b"") == 0
        assert outdated(fd) == 1
    finally:
        os.close(fd)


def test_an_offset_is_ignored_as_cuse_passes_none(daemon):
    """CUSE hands the daemon no offset (the kernel's cuse_read_iter and
    cuse_write_iter pass 0) and opens the device seekable (noop_llseek):
    pread and pwrite at any offset are read and write, as with v3's
    driver; only the kernel's own checks of the offset remain (EINVAL
    below 0 or past the largest)."""
    fd = open_device()
    try:
        force(fd)
        assert os.pread(fd, 4, 4096) == struct.pack("=I", 1)
        assert outdated(fd) == 1
        assert os.pwrite(fd, struct.pack("=I", 1), 4) == 4     # acked
        assert outdated(fd) == 0
        assert os.lseek(fd, 4096, os.SEEK_SET) == 0
        force(fd)
        assert errno_of(os.pwrite, fd, struct.pack("=I", 2), -1) \
            == errno.EINVAL
        assert errno_of(os.pwrite, fd, struct.pack("=I", 2),
                        (1 << 63) - 2) == errno.EINVAL
        assert outdated(fd) == 1
    finally:
        os.close(fd)


def test_ack_of_a_wrong_value_fails_with_einval(daemon):
    fd = open_device()
    try:
        assert errno_of(ack, fd, 1) == errno.EINVAL     # up to date at 0
        assert outdated(fd) == 0
        force(fd)
        for value in (0, 2, 0xFFFFFFFF):                # outdated, at 1
            assert errno_of(ack, fd, value) == errno.EINVAL, value
        assert outdated(fd) == 1
        assert read_counter(fd) == 1
    finally:
        os.close(fd)


def test_ack_while_up_to_date_returns_four_and_changes_nothing(daemon):
    fd = open_device()
    try:
        assert ack(fd, 0) == 4
        assert outdated(fd) == 0
        force(fd)
        late = open_device(os.O_RDWR | os.O_NONBLOCK)   # up to date
        try:
            assert ack(late, 1) == 4
            assert ack(late, 1) == 4
            assert outdated(fd) == 1                    # fd's stays
            assert errno_of(raw_read, late) == errno.EAGAIN
            assert read_counter(fd) == 1
        finally:
            os.close(late)
    finally:
        os.close(fd)


def test_ack_while_outdated_drops_the_count_by_one(daemon):
    a, b = open_device(), open_device()
    try:
        force(a)
        assert outdated(a) == 2
        assert ack(a, 1) == 4
        assert outdated(a) == 1
        assert ack(a, 1) == 4              # again: nothing more to drop
        assert outdated(a) == 1
        assert ack(b, 1) == 4
        assert outdated(a) == 0
    finally:
        os.close(a)
        os.close(b)


# -- close ------------------------------------------------------------------

def test_closing_an_outdated_watcher_drops_the_count(daemon):
    a, b = open_device(), open_device()
    try:
        force(a)
        assert outdated(a) == 2
        os.close(b)
        b = None
        assert outdated(a) == 1
        c = open_device()                  # up to date: its close drops none
        os.close(c)
        assert outdated(a) == 1
    finally:
        os.close(a)
        if b is not None:
            os.close(b)


def test_wait_watchers_returns_when_the_last_outdated_watcher_closes(spawn):
    a, b = open_device(), open_device()
    try:
        force(a)
        # Opened after the bump, so up to date: it waits for a and b.
        waiter = spawn(native("vmgenid-ioctl"), "wait", 0)
        wait_blocked(waiter, SYS_IOCTL)
        assert ack(a, 1) == 4
        assert outdated(a) == 1
        time.sleep(0.5)
        assert waiter.silent()             # b is still outdated
        os.close(b)
        b = None
        # (If the close did not end the wait, the rescue below would: the
        # next bump makes the waiter outdated, and it returns EINTR.)
        line, _ = waiter.expect(rescue=lambda: force(a), timeout=30)
        assert line == "ioctl=VMGENID_WAIT_WATCHERS ret=0 errno=0"
        assert waiter.wait() == 0
        assert wait_watchers(a, 1000) == 0
    finally:
        os.close(a)
        if b is not None:
            os.close(b)
