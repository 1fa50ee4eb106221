# SPDX-License-Identifier: MIT
"""The GUID poll: a C thread (native/shim/guidpoll.c) compares the GUID in
memory whenever the kernel logs, and every interval unless the kernel
logs every change (kmsg_tells: then it never wakes otherwise); when it
changed, the thread hands it to the publisher (publisher.py: RNG reseed,
state file, page, replies to the blocked reads) and makes an eventfd
readable.

In C, and not in the interpreter: the kernel log line wakes the thread as
it wakes any reader of /dev/kmsg, and what must come before the wake-ups
then runs without waiting for Python, whose first steps after a restore
are slow under emulation.  The poll itself is the fallback, for a kernel
that logs nothing: a 16-byte compare every interval.

Without a GUID (the kernel-log tier, kernellog.py) the same thread reads
the kernel log alone and publishes each change the record rule of
native/shim/kmsg.c finds (RecordPoller).
"""

import atexit
import os

from typing import Optional

from .._cuse import ffi, lib


class _PollThread:
    """The thread's eventfd, its publisher and its end."""
    _poll = None

    def _started(self, poll) -> None:
        if poll == ffi.NULL:
            err = ffi.errno
            os.close(self._fd)
            raise OSError(err, f"poll thread: {os.strerror(err)}")
        self._poll = poll
        # Whatever way the interpreter ends, the thread stops first.
        atexit.register(self.close)

    def fileno(self) -> int:
        return self._fd

    def take(self) -> bool:
        """True if the thread woke the daemon since the last call."""
        try:
            return os.eventfd_read(self._fd) > 0
        except BlockingIOError:
            return False

    def kmsg_error(self) -> int:
        """Why the kernel log could not be read (the kernel-log tier's
        thread then ended, the GUID tier's polls every interval), or 0."""
        return lib.vmgenid_guid_poll_kmsg_error(self._poll)

    def publish_to(self, publisher) -> None:
        """From now on a change is published by publisher (None: no longer,
        and no publication is under way when this returns)."""
        lib.vmgenid_guid_poll_publish_to(
            self._poll, ffi.NULL if publisher is None else publisher.c_handle)

    def close(self) -> None:
        if self._poll is not None:
            lib.vmgenid_guid_poll_stop(self._poll)
            self._poll = None
            os.close(self._fd)
            self._closed()
            atexit.unregister(self.close)

    def _closed(self) -> None:
        pass


class RecordPoller(_PollThread):
    """The kernel-log tier's thread: each kernel record the record rule
    counts as a change is published by publisher, from the thread (then
    its eventfd is readable).  publish_to(None) ends its reading: the
    records left stay unread."""

    def __init__(self, publisher, applied: Optional[int], kmsg_fd: int):
        """applied: the last record accounted for (None: none yet);
        kmsg_fd: /dev/kmsg, non-blocking, read that far.  OSError if the
        thread cannot start."""
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._started(lib.vmgenid_kmsg_poll_start(
            publisher.c_handle, -1 if applied is None else applied,
            self._fd, kmsg_fd))

    @property
    def kmsg_seq(self) -> Optional[int]:
        """The last record accounted for (the state file's)."""
        applied = lib.vmgenid_guid_poll_kmsg_seq(self._poll)
        return None if applied < 0 else applied


class GuidPoller(_PollThread):
    def __init__(self, guid: memoryview, interval_ms: int, kmsg_fd: int = -1,
                 kmsg_tells: bool = False):
        """kmsg_fd: /dev/kmsg, non-blocking, positioned where news starts
        (the thread reads it), or -1 for the timer alone.  kmsg_tells: the
        kernel logs every change, so no timer while kmsg_fd reads
        (interval_ms is then the fallback).  OSError if the thread cannot
        start."""
        if interval_ms <= 0:
            raise ValueError(f"poll interval {interval_ms} ms")
        self._guid = guid
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        # The thread reads the mapping: it stops before the mapping goes.
        self._started(lib.vmgenid_guid_poll_start(ffi.from_buffer(guid),
                                                  interval_ms, self._fd,
                                                  kmsg_fd, kmsg_tells))

    def take_kernel_log(self) -> bool:
        """True if the kernel logged its VM fork line since the last call
        (the thread reads /dev/kmsg; a change may or may not come with it:
        the thread may have seen the new GUID first)."""
        return lib.vmgenid_guid_poll_take_vmfork(self._poll) > 0

    def _closed(self) -> None:
        self._guid.release()
