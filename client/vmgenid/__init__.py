# SPDX-License-Identifier: MIT
"""A Python client of /dev/vmgenid that follows the client rule.

    import vmgenid

    with vmgenid.open() as watcher:
        for generation in watcher.changes():   # acks when asked for the next
            reseed()

Pure Python, its own distribution (vmgenid): it needs no compiler and
never imports the daemon (cuse_vmgenid) or cffi.

One `Watcher` is one watcher of the device (one open file description).
`value()` is the counter now (from the page, without a system call);
`wait(timeout)` blocks until the generation changes and returns the new
counter without acknowledging it; `ack()` acknowledges what `wait()`
returned.  `fileno()` is for selectors: readable means "call wait(0)"; it
can change after a reopen (see below).

In asyncio, `async_open()` opens (`async with vmgenid.async_open() as
watcher:` or `watcher = await vmgenid.async_open()`), `await
watcher.async_wait(timeout)` waits through `loop.add_reader` (TimeoutError
past the timeout) and `async for generation in watcher.async_changes()` is
`changes()`.  Neither blocks the event loop.

No daemon: `open()` and `async_open()` raise NoDevice at once, as the
`vmgenid` command fails at once.  Waiting for the node is asked for:
`timeout=` waits at most that long, `wait_for_node=True` for as long as it
takes.

The client rule (docs/interface.rst, per operation): EINTR is retried;
EAGAIN, EINVAL and EBADF (a descriptor not open O_RDWR) are answers to the
call and raised as OSError; any other error from a read, a write or poll
(ECONNABORTED, ENOTCONN, EIO, POLLERR, POLLHUP) means the daemon went away
and a change may have happened.  `wait()` then reopens the device
(waiting for the node to come back) and reports the counter of the new
watcher as a change, with `reopened` set; `ack()` leaves that to the next
`wait()`.  A watcher made from an inherited descriptor (`fd=`) cannot
reopen what its parent opened: it raises DeviceGone instead.  The ioctls
(`force()`, `outdated_watchers()`) raise their errno as OSError: EACCES,
EAGAIN (privilege undecided: call again later) and EOVERFLOW are answers;
after any other, the next `wait()` sees the daemon gone.
"""

import builtins
import errno
import fcntl
import mmap
import os
import select
import struct
import time
from typing import AsyncIterator, Generator, Iterator, Optional

from . import ioctls
from .version import __version__  # noqa: F401

__all__ = ["DEVICE", "PAGE", "NODE_AWAY", "open", "async_open", "Watcher",
           "AsyncOpen", "NoDevice", "DeviceGone"]

#: The device: $VMGENID_DEVICE, else /dev/vmgenid.
DEVICE = os.environ.get("VMGENID_DEVICE", "/dev/vmgenid")
#: The counter page: $VMGENID_PAGE, else /run/vmgenid/page.
PAGE = os.environ.get("VMGENID_PAGE", "/run/vmgenid/page")
#: What open(2) of the device fails with while no daemon serves it (the
#: node is missing, or it is being removed or created).
NODE_AWAY = (errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.ENOTCONN,
             errno.ECONNABORTED, errno.EIO)

_COUNTER = struct.Struct("=I")
_PAGE_SIZE = 4096
# While the daemon restarts the node is missing or dead: wait, never spin.
_REOPEN_DELAY = 0.2
# What read(2) and write(2) answer that does not mean "the daemon went
# away": EINTR (retried), EAGAIN, EINVAL, and EBADF (not open O_RDWR).
_ANSWERS = (errno.EINTR, errno.EAGAIN, errno.EINVAL, errno.EBADF)
_POLL_BAD = select.POLLERR | select.POLLHUP | select.POLLNVAL


class DeviceGone(OSError):
    """The daemon behind an inherited descriptor (`Watcher(fd=)`) went
    away: treat it as a change, and reopen the device where the
    descriptor came from."""


class NoDevice(OSError):
    """No daemon serves the device: the node is away, and did not come
    back within the timeout (or at once, without waiting).  Its errno is
    open(2)'s (one of NODE_AWAY); `device` is the path."""

    def __init__(self, err: int, device: str):
        super().__init__(err, f"no {device} (is cuse-vmgenid running?)")
        #: The path of the device.
        self.device = device


def open(device: str = DEVICE, page: str = PAGE, *,
         wait_for_node: bool = False,
         timeout: Optional[float] = None) -> "Watcher":
    """A new watcher of `device`, up to date (`Watcher`).  No node (no
    daemon): NoDevice at once, unless waiting is asked for: with
    `timeout`, at most that many seconds; with `wait_for_node=True` and no
    timeout, for as long as it takes."""
    return Watcher(device, page, wait_for_node=wait_for_node,
                   timeout=timeout)


def async_open(device: str = DEVICE, page: str = PAGE, *,
               wait_for_node: bool = False,
               timeout: Optional[float] = None) -> "AsyncOpen":
    """open() for asyncio: waits for the node (as asked, as open() does)
    with asyncio.sleep, not blocking the event loop.  Use it as
    `async with vmgenid.async_open() as watcher:` (closed at the end) or
    `watcher = await vmgenid.async_open()`."""
    return AsyncOpen(device, page, _waits(wait_for_node, timeout))


class Watcher:
    """One watcher of the device: what one open(2) made, O_RDWR."""

    def __init__(self, device: str = DEVICE, page: str = PAGE, *,
                 fd: Optional[int] = None, wait_for_node: bool = False,
                 timeout: Optional[float] = None):
        """Open `device` (no node: NoDevice at once, or after waiting as
        open() says), or adopt the inherited descriptor `fd`, which must
        be open O_RDWR (else OSError EBADF) and is neither closed nor
        reopened by this object."""
        #: The path of the device (reopened after a daemon restart).
        self.device = device
        self._page_path = page
        self._page: Optional[mmap.mmap] = None
        #: Whether the descriptor came from the caller (`fd=`).
        self.inherited = fd is not None
        if fd is None:
            fd = _open_device(device, _deadline(
                _waits(wait_for_node, timeout)))
        else:
            _check_read_write(fd)
        self._fd = fd
        #: What wait() returned and ack() acknowledges (None: nothing owed).
        self.pending: Optional[int] = None
        #: The last counter ack() acknowledged.
        self.acknowledged: Optional[int] = None
        #: How many times the daemon went away under this watcher.
        self.reopens = 0
        #: Whether the last change reported was a reopen (a daemon restart).
        self.reopened = False

    # -- plain calls -------------------------------------------------------

    def fileno(self) -> int:
        """The descriptor, for selectors (readable: call wait(0)); a new
        one after a reopen, -1 once closed."""
        return self._fd

    def value(self) -> Optional[int]:
        """The counter now: from the page; without it, what the device
        says (an outdated watcher reads the counter at once; an up-to-date
        one holds what it acknowledged, if this object saw it; None if
        unknown)."""
        page = self._map_page()
        if page is not None:
            # 4 aligned bytes, stored by the daemon with one atomic store.
            return _COUNTER.unpack_from(page, 0)[0]
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
        happened: the next wait() reopens and reports it); DeviceGone for
        an inherited descriptor."""
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
        to date): True, no call.  The daemon gone: True (the next wait()
        reopens and reports the change; DeviceGone for an inherited
        descriptor)."""
        value = self.pending if generation is None else generation
        if value is None:
            return True
        try:
            os.write(self._fd, _COUNTER.pack(value))
        except OSError as e:
            if e.errno == errno.EINVAL:
                return False
            if e.errno in _ANSWERS:
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
        """VMGENID_GET_OUTDATED_WATCHERS: how many watchers have not
        acknowledged the current counter (this one included)."""
        return fcntl.ioctl(self._fd, ioctls.GET_OUTDATED_WATCHERS)

    def force(self, minimum: Optional[int] = None) -> int:
        """VMGENID_FORCE_GEN_UPDATE, or VMGENID_FORCE_GEN_UPDATE_MIN with
        `minimum`; returns the counter after it (this watcher is outdated
        then: wait() returns the change).  OSError EACCES without the
        privilege, EAGAIN when the daemon could not decide it (call again
        later), EOVERFLOW past the counter's limit."""
        if minimum is None:
            fcntl.ioctl(self._fd, ioctls.FORCE_GEN_UPDATE)
        else:
            fcntl.ioctl(self._fd, ioctls.FORCE_GEN_UPDATE_MIN,
                        bytearray(_COUNTER.pack(minimum)))
        # Our own watcher is outdated now: it reads the counter at once.
        return self._read()

    # -- iteration ---------------------------------------------------------

    def changes(self) -> Iterator[Optional[int]]:
        """Each change (wait()), acknowledged when the next one is asked
        for, so the loop body runs before the ack."""
        while True:
            generation = self.wait()
            yield generation
            self.ack()

    # -- asyncio -----------------------------------------------------------

    async def async_wait(self, timeout: Optional[float] = None
                         ) -> Optional[int]:
        """wait() for asyncio: waits through loop.add_reader (and for the
        node after a daemon restart with asyncio.sleep), not blocking the
        event loop.  Past `timeout` seconds it raises TimeoutError
        (nothing changes: a later change is still there to wait for);
        otherwise it returns what wait() would, `reopened` set the same
        way, and raises NoDevice and DeviceGone as wait() does."""
        import asyncio      # here: a program without it never loads it
        loop = asyncio.get_running_loop()
        deadline = _deadline(timeout)
        while True:
            self.reopened = False
            try:
                if self._fd < 0:
                    raise _DaemonGone(errno.ENOENT, "no device")
                generation = self._take_change(0)
            except _DaemonGone as gone:
                if self._fd >= 0:
                    self._gone(gone)
                self._fd = await _open_device_async(self.device, deadline)
                return self._reopened()
            if generation is not None:
                return generation
            left = _left(deadline)
            if left is not None and left <= 0:
                raise TimeoutError(f"no change of {self.device} within "
                                   f"{timeout:g}s")
            try:
                await asyncio.wait_for(self._readable(loop), left)
            except asyncio.TimeoutError:
                pass            # looked at once more above, then raised

    async def async_changes(self) -> AsyncIterator[Optional[int]]:
        """changes() for asyncio: each change (async_wait()), acknowledged
        when the next one is asked for."""
        while True:
            generation = await self.async_wait()
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
        """Close the descriptor (an inherited one is left open) and the
        page; the watcher goes."""
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
        deadline = _deadline(timeout)
        while True:
            left = _left(deadline)
            try:
                if not self._poll(None if left is None else max(0.0, left)):
                    return None
                self.pending = self._read()
                return self.pending
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                if e.errno in _ANSWERS:
                    raise
                raise _DaemonGone(e.errno, os.strerror(e.errno)) from e

    def _poll(self, timeout: Optional[float]) -> bool:
        """Outdated within timeout?  A dead device raises its errno."""
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        ms = -1 if timeout is None else int(timeout * 1000)
        events = poller.poll(ms)
        if events and events[0][1] & _POLL_BAD:
            self._read()        # raises the device's errno (ENOTCONN)
        return bool(events)

    def _read(self) -> int:
        # Only after poll said readable: an outdated watcher's read returns
        # at once, so an inherited descriptor's flags do not matter.
        return _COUNTER.unpack(os.read(self._fd, _COUNTER.size))[0]

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
        return None if page is None else _COUNTER.unpack_from(page, 0)[0]

    def _map_page(self) -> Optional[mmap.mmap]:
        if self._page is None:
            try:
                with builtins.open(self._page_path, "rb") as f:
                    self._page = mmap.mmap(f.fileno(), _PAGE_SIZE,
                                           mmap.MAP_SHARED, mmap.PROT_READ)
            except (OSError, ValueError):
                return None
        return self._page


class AsyncOpen:
    """What async_open() returns: `await` it for the Watcher, or use it
    with `async with`, which closes the Watcher at the end of the block."""

    def __init__(self, device: str, page: str, waits: Optional[float]):
        """Made by async_open(); `waits` is how long to wait for a
        missing node (0: not at all, None: for as long as it takes)."""
        self._args = (device, page, waits)
        self._watcher: Optional[Watcher] = None

    async def _open(self) -> Watcher:
        device, page, waits = self._args
        fd = await _open_device_async(device, _deadline(waits))
        watcher = Watcher(device, page, fd=fd)
        # Opened here, so the watcher's own: it closes and reopens it.
        watcher.inherited = False
        return watcher

    def __await__(self) -> Generator[object, None, Watcher]:
        return self._open().__await__()

    async def __aenter__(self) -> Watcher:
        self._watcher = await self._open()
        return self._watcher

    async def __aexit__(self, *exc) -> None:
        self._watcher.close()


class _DaemonGone(OSError):
    """The device failed with an errno that means the daemon went away."""


def _waits(wait_for_node: bool, timeout: Optional[float]) -> Optional[float]:
    """How long to wait for a missing node: `timeout` if given, else not
    at all, or for as long as it takes (None) with wait_for_node."""
    if timeout is not None:
        return timeout
    return None if wait_for_node else 0.0


def _deadline(timeout: Optional[float]) -> Optional[float]:
    return None if timeout is None else time.monotonic() + timeout


def _left(deadline: Optional[float]) -> Optional[float]:
    return None if deadline is None else deadline - time.monotonic()


def _check_read_write(fd: int) -> None:
    """EBADF unless fd is open O_RDWR: a read-only descriptor fails every
    acknowledgement, a write-only one every read."""
    mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    if mode != os.O_RDWR:
        raise OSError(errno.EBADF, f"descriptor {fd} is "
                      f"{'read' if mode == os.O_RDONLY else 'write'}-only: "
                      "a watcher needs O_RDWR")


def _open_device(device: str, deadline: Optional[float] = None) -> int:
    """The device, waiting while the node is away (the daemon restarts),
    until the deadline (monotonic; None: forever), then NoDevice."""
    while True:
        try:
            return _open_now(device)
        except NoDevice as away:
            time.sleep(_retry_delay(away, deadline))


async def _open_device_async(device: str,
                             deadline: Optional[float] = None) -> int:
    """_open_device() for asyncio."""
    import asyncio
    while True:
        try:
            return _open_now(device)
        except NoDevice as away:
            await asyncio.sleep(_retry_delay(away, deadline))


def _open_now(device: str) -> int:
    """The device, O_RDWR; NoDevice while the node is away."""
    try:
        return os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        if e.errno not in NODE_AWAY:
            raise
        raise NoDevice(e.errno, device) from None


def _retry_delay(away: NoDevice, deadline: Optional[float]) -> float:
    """How long to sleep before opening again; `away` past the
    deadline."""
    left = _left(deadline)
    if left is not None and left <= 0:
        raise away
    return _REOPEN_DELAY if left is None else min(_REOPEN_DELAY, left)
