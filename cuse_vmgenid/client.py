# SPDX-License-Identifier: MIT
"""A Python client of /dev/vmgenid that follows the client rule.

    from cuse_vmgenid import client

    with client.open() as vmgenid:
        for generation in vmgenid.changes():   # acks when asked for the next
            reseed()

    async for generation in vmgenid.async_changes(): ...   # asyncio

One object is one watcher.  `value()` is the counter now (from the page,
without a system call); `wait(timeout)` blocks until the generation changes
and returns the new counter without acknowledging it; `ack()` acknowledges
what `wait()` returned.  `fileno()` is for selectors: readable means "call
wait(0)"; it can change after a reopen (see below).

The client rule (docs/interface.rst): any error other than EINTR,
EAGAIN or EINVAL from the device means the daemon went away and a change
may have happened.  `wait()` then reopens the device (retrying until the
node is back) and reports the counter of the new watcher as a change, with
`reopened` set.  A client made from an inherited descriptor (`fd=`) cannot
reopen what its parent opened: it raises DeviceGone instead.

`open(timeout=)` waits at most that long for a missing node (no daemon),
then raises NoDevice; so does `wait(timeout)` if the daemon went away and
is not back in time.
"""

import asyncio
import builtins
import errno
import fcntl
import mmap
import os
import select
import struct
import time
from typing import AsyncIterator, Iterator, Optional

from . import ioctls

DEVICE = os.environ.get("VMGENID_DEVICE", "/dev/vmgenid")
PAGE = os.environ.get("VMGENID_PAGE", "/run/vmgenid/page")
COUNTER = struct.Struct("=I")
PAGE_SIZE = 4096
# While the daemon restarts the node is missing or dead: wait, never spin.
REOPEN_DELAY = 0.2
# What open() gives while the node is away (the daemon restarts).
NODE_AWAY = (errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.ENOTCONN,
             errno.ECONNABORTED, errno.EIO)
# The only errors that do not mean "the daemon went away".
NOT_A_CHANGE = (errno.EINTR, errno.EAGAIN, errno.EINVAL)
POLL_BAD = select.POLLERR | select.POLLHUP | select.POLLNVAL


class DeviceGone(OSError):
    """An inherited descriptor's daemon went away: treat it as a change and
    reopen the device where the descriptor came from."""


class NoDevice(OSError):
    """The node is away (no daemon serves it), and did not come back
    within the timeout (or at once, without waiting)."""

    def __init__(self, err: int, device: str):
        super().__init__(err, f"no {device} (is cuse-vmgenid running?)")
        self.device = device


def open(device: str = DEVICE, page: str = PAGE, *,
         wait_for_node: bool = True,
         timeout: Optional[float] = None) -> "Watcher":
    """A new watcher (up to date), waiting for the node if it is away (at
    most `timeout` seconds, then NoDevice)."""
    return Watcher(device, page, wait_for_node=wait_for_node,
                   timeout=timeout)


class Watcher:
    def __init__(self, device: str = DEVICE, page: str = PAGE, *,
                 fd: Optional[int] = None, wait_for_node: bool = True,
                 timeout: Optional[float] = None):
        """Open `device` (waiting for the node while the daemon restarts,
        at most `timeout` seconds, unless not wait_for_node; NoDevice if
        it is not back), or adopt the inherited descriptor `fd` (it is
        neither closed nor reopened by this object)."""
        self.device = device
        self._page_path = page
        self._page: Optional[mmap.mmap] = None
        self.inherited = fd is not None
        if fd is None:
            fd = _open_device(device, _deadline(
                timeout if wait_for_node else 0))
        self._fd = fd
        # What wait() returned and ack() acknowledges (None: nothing owed).
        self.pending: Optional[int] = None
        self.acknowledged: Optional[int] = None   # the last ack() that took
        # How many times the daemon went away under this watcher.
        self.reopens = 0
        self.reopened = False   # the last change reported was a reopen

    # -- plain calls -------------------------------------------------------

    def fileno(self) -> int:
        return self._fd

    def value(self) -> Optional[int]:
        """The counter now: from the page; without it, what the device
        says (an outdated watcher reads the counter at once; an up-to-date
        one holds what it acknowledged, if this object saw it)."""
        page = self._map_page()
        if page is not None:
            # 4 aligned bytes, stored by the daemon with one atomic store.
            return COUNTER.unpack_from(page, 0)[0]
        try:
            if self._poll(0):
                return self._read()
        except OSError:
            return None     # the daemon is away: wait() will say more
        return self.acknowledged

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """Block until the generation changes (at most `timeout` seconds;
        0 = just look) and return the new counter, not acknowledged.
        Returns at once while a change is still unacknowledged.  None on
        timeout.  After a daemon restart: the new watcher's counter (from
        the page; None if there is no page) with `reopened` set; NoDevice
        if the node is not back within the timeout (a change may have
        happened: the next wait() reopens and reports it)."""
        self.reopened = False
        deadline = _deadline(timeout)
        try:
            if self._fd < 0:
                raise _DaemonGone(errno.ENOENT, "no device")
            return self._take_change(timeout)
        except _DaemonGone as gone:
            if self._fd >= 0:
                self._gone(gone)
            self._fd = _open_device(self.device, deadline)
            return self._reopened()

    def ack(self, generation: Optional[int] = None) -> bool:
        """Acknowledge `generation` (default: what wait() returned).  False
        if the counter moved on meanwhile (EINVAL): wait() again, it
        returns at once.  Nothing owed (a fresh or reopened watcher is up
        to date): True, no call."""
        value = self.pending if generation is None else generation
        if value is None:
            return True
        try:
            os.write(self._fd, COUNTER.pack(value))
        except OSError as e:
            if e.errno == errno.EINVAL:
                return False
            # EBADF: a read-only descriptor (`exec 3</dev/vmgenid`).
            if e.errno in NOT_A_CHANGE or e.errno == errno.EBADF:
                raise
            if self.inherited:
                self._gone(e)
            # Ours: the next wait() sees the dead device, reopens and
            # reports the change.
            return True
        self.pending = None
        self.acknowledged = value
        return True

    def outdated_watchers(self) -> int:
        return fcntl.ioctl(self._fd, ioctls.GET_OUTDATED_WATCHERS)

    def force(self, minimum: Optional[int] = None) -> int:
        """FORCE_GEN_UPDATE, or FORCE_GEN_UPDATE_MIN with `minimum`;
        returns the counter after it.  EACCES without the capability."""
        if minimum is None:
            fcntl.ioctl(self._fd, ioctls.FORCE_GEN_UPDATE)
        else:
            fcntl.ioctl(self._fd, ioctls.FORCE_GEN_UPDATE_MIN,
                        bytearray(COUNTER.pack(minimum)))
        # Our own watcher is outdated now: it reads the counter at once.
        return self._read()

    # -- iteration ---------------------------------------------------------

    def changes(self) -> Iterator[Optional[int]]:
        """Each change, acknowledged when the next one is asked for (so
        the loop body runs before the ack)."""
        while True:
            generation = self.wait()
            yield generation
            self.ack()

    async def async_changes(self) -> AsyncIterator[Optional[int]]:
        """changes() for asyncio: waits through loop.add_reader, and for
        the node after a daemon restart with asyncio.sleep."""
        loop = asyncio.get_running_loop()
        while True:
            self.reopened = False
            try:
                generation = self._take_change(0)
            except _DaemonGone as gone:
                self._gone(gone)
                self._fd = await _open_device_async(self.device)
                generation = self._reopened()
            if generation is None and not self.reopened:
                await self._readable(loop)
                continue
            yield generation
            self.ack()

    async def _readable(self, loop) -> None:
        ready = loop.create_future()
        fd = self._fd
        loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            loop.remove_reader(fd)

    # -- lifetime ----------------------------------------------------------

    def close(self) -> None:
        if self._page is not None:
            self._page.close()
            self._page = None
        if self._fd >= 0 and not self.inherited:
            os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> "Watcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ---------------------------------------------------------

    def _take_change(self, timeout: Optional[float]) -> Optional[int]:
        """The new counter once outdated (within timeout), else None;
        _DaemonGone if the device says the daemon went away."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None \
                else max(0.0, deadline - time.monotonic())
            try:
                if not self._poll(left):
                    return None
                self.pending = self._read()
                return self.pending
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                if e.errno in NOT_A_CHANGE:
                    raise
                raise _DaemonGone(e.errno, os.strerror(e.errno)) from e

    def _poll(self, timeout: Optional[float]) -> bool:
        """Outdated within timeout?  A dead device raises its errno."""
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        ms = -1 if timeout is None else int(timeout * 1000)
        events = poller.poll(ms)
        if events and events[0][1] & POLL_BAD:
            self._read()        # raises the device's errno (ENOTCONN)
        return bool(events)

    def _read(self) -> int:
        # Only after poll said readable: an outdated watcher's read returns
        # at once, so an inherited descriptor's flags do not matter.
        return COUNTER.unpack(os.read(self._fd, COUNTER.size))[0]

    def _gone(self, gone: OSError) -> None:
        """Close the dead descriptor (inherited: DeviceGone instead)."""
        if self.inherited:
            raise DeviceGone(gone.errno,
                             f"{self.device} (descriptor {self._fd}): "
                             f"{gone.strerror}; a change may have happened: "
                             "reopen it") from gone
        os.close(self._fd)
        self._fd = -1

    def _reopened(self) -> Optional[int]:
        """A reopen is reported as a change: the new watcher's counter."""
        self.reopens += 1
        self.reopened = True
        self.pending = None     # the new watcher is up to date
        page = self._map_page()
        return None if page is None else COUNTER.unpack_from(page, 0)[0]

    def _map_page(self) -> Optional[mmap.mmap]:
        if self._page is None:
            try:
                with builtins.open(self._page_path, "rb") as f:
                    self._page = mmap.mmap(f.fileno(), PAGE_SIZE,
                                           mmap.MAP_SHARED, mmap.PROT_READ)
            except (OSError, ValueError):
                return None
        return self._page


class _DaemonGone(OSError):
    """The device failed with an errno that means the daemon went away."""


def _deadline(timeout: Optional[float]) -> Optional[float]:
    return None if timeout is None else time.monotonic() + timeout


def _open_device(device: str, deadline: Optional[float] = None) -> int:
    """The device, waiting while the node is away (the daemon restarts),
    until the deadline (monotonic; None: forever), then NoDevice."""
    while True:
        try:
            return os.open(device, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            if e.errno not in NODE_AWAY:
                raise
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise NoDevice(e.errno, device) from None
        time.sleep(REOPEN_DELAY if left is None
                   else min(REOPEN_DELAY, left))


async def _open_device_async(device: str) -> int:
    while True:
        fd = _try_open(device)
        if fd is not None:
            return fd
        await asyncio.sleep(REOPEN_DELAY)


def _try_open(device: str) -> Optional[int]:
    try:
        return os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        if e.errno not in NODE_AWAY:
            raise
        return None
