# SPDX-License-Identifier: MIT
"""poll of /dev/vmgenid: select, poll and epoll against the real daemon.

docs/interface.rst: EPOLLIN|EPOLLRDNORM while the watcher is outdated, else
0 and a wake-up on the next change.  The blocked callers are separate processes
that wait with no timeout; the test's own limit on reading their answer is
the rescue (a second bump could not help a daemon that never notifies).
"""

import os
import select
import sys

from .device import (ack, force, force_from_elsewhere, open_device,
                     read_counter)
from .processes import SYS_POLLS, wait_all_blocked, wait_blocked

READY = select.POLLIN | select.POLLRDNORM          # == EPOLLIN|EPOLLRDNORM
ASKED = select.POLLIN | select.POLLRDNORM | select.POLLPRI | select.POLLOUT

# One watcher of its own, waiting with no timeout in the way argv[1] names;
# prints "open" before it waits, then what the wait reported.
WAIT_FOREVER = """
import os, select, sys
how = sys.argv[1]
fd = os.open("/dev/vmgenid", os.O_RDWR | os.O_CLOEXEC)
if how == "poll":
    p = select.poll()
    p.register(fd, select.POLLIN | select.POLLRDNORM)
    print("open", flush=True)
    events = p.poll(-1)
elif how == "epoll":
    ep = select.epoll()
    ep.register(fd, select.EPOLLIN | select.EPOLLRDNORM)
    print("open", flush=True)
    events = ep.poll(-1)
else:
    print("open", flush=True)
    r, _, _ = select.select([fd], [], [])
    events = [(f, select.POLLIN) for f in r]
print("events", *(e for f, e in events if f == fd), flush=True)
"""

# The seed's "ASYNC simplified example": an O_NONBLOCK watcher in epoll;
# on each event read the new generation, then write it back.  Handles two
# events; after each one checks that the fd is quiet again.
ASYNC_EXAMPLE = """
import os, select, struct, sys
vmgenfd = os.open("/dev/vmgenid", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
epfd = select.epoll()
epfd.register(vmgenfd, select.EPOLLIN)

def quiet():
    try:
        os.read(vmgenfd, 4)
        return "readable"
    except BlockingIOError:
        return "quiet" if epfd.poll(0) == [] else "epoll-ready"

def handle_io_on_vmgenfd(fd):
    genid = os.read(fd, 4)
    written = os.write(fd, genid)
    return struct.unpack("=I", genid)[0], written

print("ready", quiet(), flush=True)
for _ in range(2):
    events = epfd.poll(60)
    if not events:
        print("epoll timed out", flush=True)
        sys.exit(1)
    for fd, ev in events:
        if fd == vmgenfd:
            genid, written = handle_io_on_vmgenfd(fd)
            print("handled", genid, ev, written, quiet(), flush=True)
"""


def readiness(fd: int, ep: select.epoll) -> tuple:
    """(select readable?, poll revents, epoll events), none waiting."""
    r, _, _ = select.select([fd], [], [], 0)
    p = select.poll()
    p.register(fd, ASKED)
    revents = dict(p.poll(0)).get(fd, 0)
    events = dict(ep.poll(0)).get(fd, 0)
    return fd in r, revents, events


def test_readable_exactly_while_outdated(daemon):
    fd = open_device()
    ep = select.epoll()
    try:
        ep.register(fd, select.EPOLLIN | select.EPOLLRDNORM)
        assert readiness(fd, ep) == (False, 0, 0)
        force(fd)
        assert readiness(fd, ep) == (True, READY, READY)
        # Reading does not acknowledge: still readable.
        assert read_counter(fd) == 1
        assert readiness(fd, ep) == (True, READY, READY)
        assert ack(fd, 1) == 4
        assert readiness(fd, ep) == (False, 0, 0)
        force(fd)
        assert readiness(fd, ep) == (True, READY, READY)
    finally:
        ep.close()
        os.close(fd)


def wait_forever(spawn, how: str):
    child = spawn(sys.executable, "-c", WAIT_FOREVER, how)
    assert child.line() == "open"
    wait_blocked(child, SYS_POLLS)
    assert child.silent()
    return child


def test_poll_without_timeout_is_woken_by_force_from_another_process(spawn):
    child = wait_forever(spawn, "poll")
    force_from_elsewhere()
    assert child.line() == f"events {READY}"
    assert child.wait() == 0


def test_epoll_wait_without_timeout_is_woken_by_force_from_another_process(
        spawn):
    child = wait_forever(spawn, "epoll")
    force_from_elsewhere()
    assert child.line() == f"events {READY}"
    assert child.wait() == 0


def test_select_without_timeout_is_woken_by_force_from_another_process(
        spawn):
    child = wait_forever(spawn, "select")
    force_from_elsewhere()
    assert child.line() == f"events {select.POLLIN}"
    assert child.wait() == 0


def test_one_bump_wakes_every_epoll_on_separate_watchers(spawn):
    children = [spawn(sys.executable, "-c", WAIT_FOREVER, "epoll")
                for _ in range(4)]
    for child in children:
        assert child.line() == "open"
    wait_all_blocked(children, SYS_POLLS)
    force_from_elsewhere()
    for child in children:
        assert child.line() == f"events {READY}"
    for child in children:
        assert child.wait() == 0


def test_seed_async_example_handles_two_successive_bumps(spawn):
    app = spawn(sys.executable, "-c", ASYNC_EXAMPLE)
    assert app.line() == "ready quiet"
    for generation in (1, 2):
        wait_blocked(app, SYS_POLLS)
        assert app.silent()
        force_from_elsewhere()
        assert app.line() == f"handled {generation} {select.EPOLLIN} 4 quiet"
    assert app.wait() == 0
