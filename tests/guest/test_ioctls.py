# SPDX-License-Identifier: MIT
"""The ioctls of docs/interface.rst, against the real daemon through CUSE.

GET_OUTDATED_WATCHERS, WAIT_WATCHERS, FORCE_GEN_UPDATE(_MIN), NOTIFY and
unknown numbers.  Privilege has its own file (test_privilege.py); every
call here runs as root, which may change the generation.

A process that must block (a WAIT_WATCHERS caller) is a native helper in a
subprocess: the test waits until /proc shows it asleep inside ioctl(2),
then acts.  Every blocking call carries a rescue: a timeout argument or a
subprocess timeout, so a daemon that never answers fails the test instead
of hanging the run.
"""

import errno
import fcntl
import os
import struct
import time

from vmgenid import ioctls

from .device import (ack, errno_of, force, force_min, ioctl_fields, notify,
                     open_device, outdated, page_counter, raw_ioctl,
                     read_counter, unknown_ioctls_logged, vmgenid_ioctl,
                     wait_watchers)
from .processes import HANG, SYS_IOCTL, start_reader, start_waiter, \
    wait_blocked

# -- helpers -----------------------------------------------------------------

def close_all(fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


# -- GET_OUTDATED_WATCHERS ---------------------------------------------------

def test_outdated_count_starts_at_zero_and_follows_force_ack_close(daemon):
    fds = [open_device() for _ in range(4)]
    try:
        a, b, c, d = fds
        assert outdated(a) == 0          # a fresh daemon: nothing outdated
        assert force(a) == 0
        assert outdated(a) == 4          # every open watcher, the caller too
        assert ack(b, 1) == 4
        assert outdated(a) == 3          # an ack drops it
        assert ack(b, 1) == 4            # a second ack changes nothing
        assert outdated(a) == 3
        os.close(c)
        fds.remove(c)
        assert outdated(a) == 2          # closing an outdated watcher drops it
        os.close(b)
        fds.remove(b)
        assert outdated(a) == 2          # closing an up-to-date one does not
        assert ack(d, 1) == 4
        assert ack(a, 1) == 4
        assert outdated(a) == 0
    finally:
        close_all(fds)


# -- WAIT_WATCHERS -----------------------------------------------------------

def test_wait_returns_zero_at_once_when_nothing_is_outdated(daemon):
    fd = open_device()
    try:
        # Timeout 0 means none: a daemon that waited anyway would hang it,
        # so it runs in a helper under a rescue timeout.
        assert wait_watchers(fd, HANG * 1000) == 0
        result, _ = vmgenid_ioctl("wait", "0")
        assert result == {"ioctl": "VMGENID_WAIT_WATCHERS", "ret": 0,
                          "errno": "0"}
        # Again once everyone, the caller too, has acked a FORCE.
        other = open_device()
        try:
            force(fd)
            ack(fd, 1)
            ack(other, 1)
            assert wait_watchers(fd, HANG * 1000) == 0
        finally:
            os.close(other)
    finally:
        os.close(fd)


def test_wait_times_out_with_etime_while_another_watcher_is_outdated(daemon):
    caller, other = open_device(), open_device()
    try:
        force(caller)
        assert ack(caller, 1) == 4
        assert errno_of(wait_watchers, caller, 300) == errno.ETIME
        assert outdated(caller) == 1     # the wait changed nothing
    finally:
        close_all((caller, other))


def test_wait_fails_eintr_at_once_when_the_caller_is_outdated(daemon):
    caller, other = open_device(), open_device()
    try:
        force(caller)
        # The timeout is only a rescue: a daemon that waited would say ETIME.
        assert errno_of(wait_watchers, caller, HANG * 1000) \
            == errno.EINTR
        # Even when the caller is the only outdated watcher.
        ack(other, 1)
        assert errno_of(wait_watchers, caller, HANG * 1000) \
            == errno.EINTR
    finally:
        close_all((caller, other))


def test_wait_fails_eintr_when_a_change_makes_the_waiter_outdated(daemon):
    stale = open_device()
    try:
        force(stale)                     # stale stays outdated: waiter blocks
        with start_waiter(0) as waiter:  # no timeout
            wait_blocked(waiter, SYS_IOCTL)
            assert waiter.proc.poll() is None
            force(stale)                 # another process bumps meanwhile
            out = waiter.output()
            assert ioctl_fields(out.strip()) == {
                "ioctl": "VMGENID_WAIT_WATCHERS", "ret": -1, "errno": "EINTR"}
            assert waiter.wait() == 1
    finally:
        os.close(stale)


def test_wait_returns_zero_when_the_last_outdated_watcher_acks(daemon):
    first, last = open_device(), open_device()
    try:
        force(first)
        with start_waiter(0) as waiter:  # no timeout
            wait_blocked(waiter, SYS_IOCTL)
            assert ack(first, 1) == 4
            assert outdated(last) == 1
            time.sleep(0.5)              # one is still outdated: still waits
            assert waiter.proc.poll() is None, waiter.output(0)
            assert ack(last, 1) == 4
            out = waiter.output()
            assert ioctl_fields(out.strip()) == {
                "ioctl": "VMGENID_WAIT_WATCHERS", "ret": 0, "errno": "0"}
            assert waiter.wait() == 0
    finally:
        close_all((first, last))


def test_wait_returns_zero_when_the_last_outdated_watcher_closes(daemon):
    stale = open_device()
    try:
        force(stale)
        with start_waiter(0) as waiter:
            wait_blocked(waiter, SYS_IOCTL)
            os.close(stale)
            stale = None
            out = waiter.output()
            assert ioctl_fields(out.strip())["ret"] == 0, out
    finally:
        if stale is not None:
            os.close(stale)


def test_orchestrator_flow_force_watchers_ack_then_wait(daemon):
    """The seed's flow: FORCE, each watcher reads and acks, the orchestrator
    acks itself, then WAIT_WATCHERS(5000) says everyone has caught up."""
    readers = []
    orchestrator = open_device()
    try:
        for _ in range(3):
            readers.append(start_reader("-a"))   # past `open`: its watcher
        assert outdated(orchestrator) == 0
        assert force(orchestrator) == 0
        assert read_counter(orchestrator) == 1
        assert ack(orchestrator, 1) == 4
        assert wait_watchers(orchestrator, 5000) == 0
        assert outdated(orchestrator) == 0
        for proc in readers:
            out = proc.output()
            assert out.splitlines() == ["read ret=4 value=1 errno=0",
                                        "ack ret=4 errno=0"]
            assert proc.wait() == 0
    finally:
        for proc in readers:
            proc.kill()
        os.close(orchestrator)


# -- FORCE_GEN_UPDATE --------------------------------------------------------

def test_force_adds_one_each_time_and_returns_zero(daemon):
    fd = open_device()
    try:
        for expected in (1, 2, 3):
            assert force(fd) == 0
            assert page_counter(daemon) == expected
            assert read_counter(fd) == expected
            assert ack(fd, expected) == 4
    finally:
        os.close(fd)


def test_force_ignores_its_argument(daemon):
    fd = open_device()
    try:
        for n, garbage in enumerate((0xDEADBEEF, 0xFFFFFFFFFFFFFFFF, 1), 1):
            assert raw_ioctl(fd, ioctls.FORCE_GEN_UPDATE, garbage) == 0
            assert read_counter(fd) == n, hex(garbage)
            assert page_counter(daemon) == n, hex(garbage)
    finally:
        os.close(fd)


# -- FORCE_GEN_UPDATE_MIN ----------------------------------------------------

def test_force_min_sets_max_of_min_and_counter_plus_one(daemon):
    fd = open_device()
    try:
        steps = [  # (min, counter after): counter before is the previous
            (5, 5),        # above counter + 1
            (2, 6),        # below: counter + 1
            (6, 7),        # equal to the counter: counter + 1
            (8, 8),        # equal to counter + 1
            (0, 9),        # zero: counter + 1
            (1000, 1000),  # well above
        ]
        for minimum, expected in steps:
            assert force_min(fd, minimum) == 0, minimum
            assert page_counter(daemon) == expected, minimum
            assert read_counter(fd) == expected, minimum
    finally:
        os.close(fd)


def test_force_min_reaches_0x7fffffff_then_overflows(daemon):
    fd = open_device()
    try:
        force(fd)
        assert force_min(fd, 0x7FFFFFFF) == 0
        assert page_counter(daemon) == 0x7FFFFFFF
        assert read_counter(fd) == 0x7FFFFFFF
        # counter + 1 would pass 0x7fffffff, whatever the min.
        for minimum in (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF):
            assert errno_of(force_min, fd, minimum) == errno.EOVERFLOW
            assert page_counter(daemon) == 0x7FFFFFFF
        # Only _MIN stops there: a plain FORCE still counts on.
        assert force(fd) == 0
        assert page_counter(daemon) == 0x80000000
        assert errno_of(force_min, fd, 0) == errno.EOVERFLOW
        assert page_counter(daemon) == 0x80000000
    finally:
        os.close(fd)


def test_force_min_above_0x7fffffff_is_eoverflow_and_changes_nothing(
        daemon):
    fd = open_device()
    try:
        force(fd)
        ack(fd, 1)
        for minimum in (0x80000000, 0xFFFFFFFF):
            assert errno_of(force_min, fd, minimum) == errno.EOVERFLOW
            assert page_counter(daemon) == 1
            assert outdated(fd) == 0     # no bump reached any watcher
    finally:
        os.close(fd)


def test_force_min_through_the_c_helper(daemon):
    ok, rc = vmgenid_ioctl("force-min", "41")
    assert ok == {"ioctl": "VMGENID_FORCE_GEN_UPDATE_MIN",
                  "ret": 0, "errno": "0"}
    assert rc == 0
    assert page_counter(daemon) == 41
    ok, _ = vmgenid_ioctl("force-min", "3")
    assert ok["ret"] == 0
    assert page_counter(daemon) == 42
    over, rc = vmgenid_ioctl("force-min", "0x80000000")
    assert over == {"ioctl": "VMGENID_FORCE_GEN_UPDATE_MIN",
                    "ret": -1, "errno": "EOVERFLOW"}
    assert rc == 1
    assert page_counter(daemon) == 42


# -- NOTIFY ------------------------------------------------------------------

def test_notify_without_a_source_bumps_and_returns_one(daemon):
    fd = open_device()
    try:
        assert notify(fd) == 1
        assert read_counter(fd) == 1
        assert notify(fd) == 1
        assert page_counter(daemon) == 2
        result, _ = vmgenid_ioctl("notify")
        assert result == {"ioctl": "VMGENID_NOTIFY", "ret": 1, "errno": "0"}
        assert page_counter(daemon) == 3
    finally:
        os.close(fd)


# -- other numbers -----------------------------------------------------------

def _ioc(direction: int, kind: int, nr: int, size: int) -> int:
    return ioctls._ioc(direction, kind, nr, size)


_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2
INT = 4

UNKNOWN = {
    # name: (request, buffer for the kernel to copy, or None: integer arg)
    "_IO(0x2d,9)": (_ioc(_IOC_NONE, 0x2D, 9, 0), None),
    "_IO(0x2d,0)": (_ioc(_IOC_NONE, 0x2D, 0, 0), None),
    "_IOR(0x2d,1,int)": (_ioc(_IOC_READ, 0x2D, 1, INT), bytearray(INT)),
    "_IOW(0x2d,9,int)": (_ioc(_IOC_WRITE, 0x2D, 9, INT), bytearray(INT)),
    # FORCE's number with a size, FORCE_MIN's without: not those ioctls.
    "_IOW(0x2d,3,u32)": (_ioc(_IOC_WRITE, 0x2D, 3, INT),
                         bytearray(struct.pack("=I", 7))),
    "_IO(0x2d,5)": (_ioc(_IOC_NONE, 0x2D, 5, 0), None),
    "TCGETS": (0x5401, None),
}


def test_unknown_ioctls_are_einval_and_change_nothing(daemon):
    fd = open_device()
    other = open_device()
    try:
        force(other)
        ack(fd, 1)               # fd up to date, other outdated
        seen = {}
        for name, (request, buf) in UNKNOWN.items():
            if buf is None:
                err = errno_of(raw_ioctl, fd, request, 0)
            else:
                err = errno_of(fcntl.ioctl, fd, request, buf)
            seen[name] = errno.errorcode.get(err, err)
        assert seen == {name: "EINVAL" for name in UNKNOWN}
        assert page_counter(daemon) == 1
        assert outdated(fd) == 1
        # Each reached the daemon (the kernel did not answer for it), which
        # counts them in its log.
        lines = unknown_ioctls_logged(daemon, len(UNKNOWN))
        assert sum(n for n, _, _ in lines) == len(UNKNOWN), daemon.log()
    finally:
        close_all((fd, other))
