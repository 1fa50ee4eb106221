# SPDX-License-Identifier: MIT
"""Who may change the generation (docs/interface.rst, Privilege), and
whom a watcher counts against.

CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN in the effective set of the calling
thread, and that thread in the daemon's own user namespace: capabilities
inside a user namespace say nothing about a counter that is global.

The per-uid cap counts a watcher opened inside a user namespace against
the uid, in the daemon's namespace, that owns it (the outermost one below
ours): a user with a range of subordinate uids is one user, not 65536.
Except a namespace root owns (a container): root is exempt from the cap,
its containers' users are not, so each counts as the uid it maps to.
"""

import errno
import fcntl
import logging
import os
import struct
from contextlib import contextmanager, nullcontext
from typing import Optional

from vmgenid.procinfo import read_text

from .errors import DeviceError

log = logging.getLogger(__name__)

CAP_SYS_ADMIN = 21
CAP_CHECKPOINT_RESTORE = 40
CHANGE_CAPS = (1 << CAP_SYS_ADMIN) | (1 << CAP_CHECKPOINT_RESTORE)
NS_GET_PARENT = 0xB702          # _IO(0xb7, 0x2), linux/nsfs.h
NS_GET_OWNER_UID = 0xB704       # _IO(0xb7, 0x4)
OURS = "/proc/self/ns/user"


def effective_caps(tid: int) -> int:
    # Its Name: line is the process name, any bytes (procinfo.py).
    for line in read_text(f"/proc/{tid}/status").splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    raise OSError(errno.EINVAL, "no CapEff line")


def _user_ns(tid: int) -> str:
    return f"/proc/{tid}/ns/user"


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def same_user_namespace(tid: int) -> bool:
    return _same(os.stat(_user_ns(tid)), os.stat(OURS))


def namespace_owner(tid: int) -> Optional[int]:
    """None if thread tid is in our user namespace; else the uid (in ours)
    that owns the outermost namespace below ours it is in.  OSError if
    /proc cannot tell (the thread is gone) or its namespace is not below
    ours."""
    ours = os.stat(OURS)
    if _same(os.stat(_user_ns(tid)), ours):
        return None
    fd = os.open(_user_ns(tid), os.O_RDONLY | os.O_CLOEXEC)
    try:
        while True:
            parent = fcntl.ioctl(fd, NS_GET_PARENT)
            if _same(os.fstat(parent), ours):
                os.close(parent)
                (owner,) = struct.unpack(
                    "=I", fcntl.ioctl(fd, NS_GET_OWNER_UID, bytes(4)))
                return owner
            os.close(fd)
            fd = parent
    finally:
        os.close(fd)


def counted_uid(tid: int, uid: int) -> int:
    """The uid a watcher opened by thread tid (whose uid the kernel gave
    as uid) counts against.  If /proc cannot tell, uid: the opener is
    gone, and its open with it."""
    try:
        owner = namespace_owner(tid)
    except OSError:
        return uid
    return uid if owner in (None, 0) else owner


# What /proc answers about a thread it will not show (hidepid) or that is
# gone: a refusal.  Any other error is the daemon's own (out of
# descriptors, memory): no answer about the caller at all.
NOT_SHOWN = (errno.ENOENT, errno.ESRCH, errno.EACCES, errno.EPERM)
# Descriptors the decision opens at most at once (the status file, or a
# user namespace and its parent).
RESERVE = 4


class Reserve:
    """Descriptors held open for the decision on privilege, and released
    around it, so that a daemon whose RLIMIT_NOFILE is used up still
    answers root's FORCE (what takes up the limit is not the caller's
    business)."""

    def __init__(self, count: int = RESERVE):
        self.count = count
        self._fds: list[int] = []
        self._refill()

    def _refill(self) -> None:
        try:
            while len(self._fds) < self.count:
                self._fds.append(os.open("/dev/null",
                                         os.O_RDONLY | os.O_CLOEXEC))
        except OSError as e:
            log.warning("%d of %d descriptors in reserve for the privilege "
                        "check: %s", len(self._fds), self.count, e.strerror)

    @contextmanager
    def released(self):
        while self._fds:
            os.close(self._fds.pop())
        try:
            yield
        finally:
            self._refill()


def authorize_change(tid: int, reserve: Optional[Reserve] = None) -> None:
    """Raise EACCES unless thread `tid` may change the generation; EAGAIN
    when the daemon cannot decide (its own failure, logged)."""
    try:
        with nullcontext() if reserve is None else reserve.released():
            caps = effective_caps(tid)
            same_ns = same_user_namespace(tid)
    except OSError as e:
        if e.errno not in NOT_SHOWN:
            log.error("cannot decide whether thread %d may change the "
                      "generation: %s: answered EAGAIN", tid, e)
            raise DeviceError(errno.EAGAIN,
                              f"cannot inspect {tid}: {e}") from e
        # hidepid, or the thread is gone: refuse rather than guess.
        raise DeviceError(errno.EACCES, f"cannot inspect {tid}: {e}") from e
    if not caps & CHANGE_CAPS:
        raise DeviceError(errno.EACCES, f"thread {tid} lacks the capability")
    if not same_ns:
        raise DeviceError(errno.EACCES,
                          f"thread {tid} is in another user namespace")
