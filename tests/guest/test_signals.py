# SPDX-License-Identifier: MIT
"""Signals and a blocked read() / VMGENID_WAIT_WATCHERS (docs/interface.rst,
"Signals").

The kernel sends FUSE_INTERRUPT when a signal is pending for a process blocked
in a CUSE request, and refuses restart codes from the server, so the call
returns EINTR even under SA_RESTART.  Every wait below has a rescue: if the
daemon ignored the interrupt, a later bump (or ack) wakes the call, and the
test fails on the wrong answer instead of hanging the run.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from .device import NODE, ack, bump, force, open_device, outdated, \
    wait_watchers
from .processes import (HANG, SYS_IOCTL, SYS_READ, Child, blocked_in,
                        start_reader, start_waiter, wait_blocked, wait_state)

# A watcher driven line by line from stdin, with a SIGUSR1 handler that does
# nothing.  argv[1]: "restart" (SA_RESTART), "norestart", or "none" (no
# handler).  read(2), write(2) and ioctl(2) are device.py's raw ones: no
# PEP 475 retry, so the EINTR of the device is what gets printed.
CHILD = r"""
import os, signal, struct, sys
from vmgenid import ioctls
from tests.guest.device import (attempt, errno_name, raw_ioctl, raw_read,
                                raw_write)

if sys.argv[1] != "none":
    signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    signal.siginterrupt(signal.SIGUSR1, sys.argv[1] == "norestart")

fd = os.open(sys.argv[2], os.O_RDWR | os.O_CLOEXEC)
print(f"open fd={fd}", flush=True)
while True:
    words = sys.stdin.readline().split()
    if not words:
        break
    if words[0] == "read":
        data, err = attempt(raw_read, fd, 4)
        ret = -1 if err else len(data)
        value = struct.unpack("=I", data)[0] if ret == 4 else 0
        print(f"read ret={ret} value={value} errno={errno_name(err)}",
              flush=True)
    elif words[0] == "ack":
        ret, err = attempt(raw_write, fd, struct.pack("=I", int(words[1])))
        print(f"ack ret={ret} errno={errno_name(err)}", flush=True)
    elif words[0] == "wait":
        ret, err = attempt(raw_ioctl, fd, ioctls.WAIT_WATCHERS, int(words[1]))
        print(f"wait ret={ret} errno={errno_name(err)}", flush=True)
os.close(fd)
"""


def py_watcher(handler: str) -> Child:
    """The CHILD script above, past its `open` line."""
    p = Child([sys.executable, "-c", CHILD, handler, NODE], stdin=True)
    assert p.line().startswith("open fd=")
    return p


RESCUED = "no answer to the signal: the daemon ignored FUSE_INTERRUPT " \
          "(the rescue woke the call)"


def interrupted(child: Child, syscall: int, rescue, command: str = "") -> str:
    """SIGUSR1 to `child` once blocked in `syscall` (after sending it
    `command`, if any): its answer, which the rescue must not have woken."""
    if command:
        child.send(command)
    wait_blocked(child, syscall)
    os.kill(child.pid, signal.SIGUSR1)
    line, rescued = child.expect(rescue=rescue)
    assert not rescued, RESCUED
    return line


# -- a handled signal: EINTR --------------------------------------------------

def test_sigusr1_with_sa_restart_interrupts_blocked_read_with_eintr(daemon):
    with start_reader("-i") as r:
        line = interrupted(r, SYS_READ, rescue=bump)
        assert line == "read ret=-1 value=0 errno=EINTR"
        assert r.wait() == 1


@pytest.mark.parametrize("handler", ["restart", "norestart"])
def test_sigusr1_interrupts_blocked_wait_watchers_with_eintr(daemon, handler):
    fd = open_device()
    try:
        bump()                      # fd is outdated: WAIT_WATCHERS blocks
        with py_watcher(handler) as w:
            line = interrupted(w, SYS_IOCTL, lambda: ack(fd, 1), "wait 0")
            assert line == "wait ret=-1 errno=EINTR"
    finally:
        os.close(fd)


# -- after the EINTR, the watcher and the daemon are as before ----------------

def test_watcher_after_interrupted_read_still_blocks_and_counts(daemon):
    fd = open_device()
    try:
        with py_watcher("norestart") as w:
            line = interrupted(w, SYS_READ, bump, "read")
            assert line == "read ret=-1 value=0 errno=EINTR"
            assert outdated(fd) == 0

            # The next read blocks again (the interrupt did not outdate it),
            # and the daemon serves another client meanwhile.
            w.send("read")
            wait_blocked(w, SYS_READ)
            assert outdated(fd) == 0
            force(fd)
            assert w.line() == "read ret=4 value=1 errno=0"
            assert outdated(fd) == 2
            w.send("ack 1")
            assert w.line() == "ack ret=4 errno=0"
            assert outdated(fd) == 1
            assert ack(fd, 1) == 4
            assert outdated(fd) == 0
    finally:
        os.close(fd)


def test_watcher_after_interrupted_wait_watchers_waits_again(daemon):
    fd = open_device()
    try:
        bump()
        with py_watcher("norestart") as w:
            line = interrupted(w, SYS_IOCTL, lambda: ack(fd, 1), "wait 0")
            assert line == "wait ret=-1 errno=EINTR"
            assert outdated(fd) == 1

            # Waits again, and returns 0 when the outdated watcher acks.
            w.send("wait 0")
            wait_blocked(w, SYS_IOCTL)
            assert ack(fd, 1) == 4
            assert w.line() == "wait ret=0 errno=0"
            assert outdated(fd) == 0
    finally:
        os.close(fd)


# -- SIGKILL: the process dies at once, its watcher goes ----------------------

def test_sigkill_while_blocked_in_read_dies_and_its_watcher_goes(daemon):
    fd = open_device()
    try:
        with start_reader() as r:
            wait_blocked(r, SYS_READ)
            os.kill(r.pid, signal.SIGKILL)
            try:
                rc = r.wait()
            except subprocess.TimeoutExpired:
                bump()
                pytest.fail("killed reader stuck until a bump: " + RESCUED)
            assert rc == -signal.SIGKILL
        assert outdated(fd) == 0
        force(fd)
        assert outdated(fd) == 1    # fd alone: the reader's watcher is gone
        assert ack(fd, 1) == 4
        assert wait_watchers(fd, HANG * 1000) == 0
    finally:
        os.close(fd)


def test_sigkill_while_blocked_in_wait_watchers_dies_and_its_watcher_goes(
        daemon):
    fd = open_device()
    try:
        bump()                      # counter 1, fd outdated
        with start_waiter() as w:
            wait_blocked(w, SYS_IOCTL)
            os.kill(w.pid, signal.SIGKILL)
            try:
                rc = w.wait()
            except subprocess.TimeoutExpired:
                ack(fd, 1)
                pytest.fail("killed waiter stuck until an ack: " + RESCUED)
            assert rc == -signal.SIGKILL
        assert outdated(fd) == 1
        assert ack(fd, 1) == 4
        assert outdated(fd) == 0
        force(fd)                   # counter 2
        assert outdated(fd) == 1    # fd alone: the waiter's watcher is gone

        # A new waiter returns 0 as soon as fd acks (ETIME would mean a
        # ghost watcher or a stale wait in the daemon).
        with start_waiter(HANG * 1000) as w2:
            wait_blocked(w2, SYS_IOCTL)
            assert ack(fd, 2) == 4
            assert w2.line() == "ioctl=VMGENID_WAIT_WATCHERS ret=0 errno=0"
            assert w2.wait() == 0
    finally:
        os.close(fd)


# -- signals that do not interrupt, and job control ---------------------------

def test_default_ignored_sigwinch_does_not_interrupt_blocked_read(daemon):
    with start_reader() as r:
        wait_blocked(r, SYS_READ)
        os.kill(r.pid, signal.SIGWINCH)
        time.sleep(1)               # room for a wrong EINTR to show up
        assert r.proc.poll() is None
        assert blocked_in(r.pid, SYS_READ)
        assert bump() == 1
        assert r.line() == "read ret=4 value=1 errno=0"
        assert r.wait() == 0


def test_sigstop_then_sigcont_ends_blocked_read_with_eintr(daemon):
    """SIGSTOP makes the kernel send FUSE_INTERRUPT: the daemon answers EINTR,
    the process stops on its way out of read(), and after SIGCONT read()
    returns EINTR (no handler, no restart).  Seen on 6.1 and 6.12."""
    with start_reader() as r:
        wait_blocked(r, SYS_READ)
        os.kill(r.pid, signal.SIGSTOP)
        stopped = wait_state(r.pid, "T")
        if not stopped:             # stuck in the read: rescue, then fail
            bump()
        os.kill(r.pid, signal.SIGCONT)
        assert stopped, "never stopped: " + RESCUED
        assert r.line() == "read ret=-1 value=0 errno=EINTR"
        assert r.wait() == 1
