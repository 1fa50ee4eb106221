# SPDX-License-Identifier: MIT
"""The kernel log, /dev/kmsg: the kernel's vmgenid driver, on every GUID
change, has random.c log "random: crng reseeded due to virtual machine
fork" at KERN_NOTICE (5.18 and later).

KmsgReader opens /dev/kmsg without blocking, from the end of the log (older
records are history, not news: the GUID poll thread wakes on what comes)
or from the oldest record the ring holds (the kernel-log tier's restart
rule, kernellog.py).  Reading, the parse and the record rule are C's
(native/shim/kmsg.c), one copy for the poll thread and for Python.
Only the kernel's own record counts: facility 0 and level 5 (userspace
writes to /dev/kmsg get LOG_USER whatever they ask), and that whole text,
since other kernel records carry text a user chose.
"""

import os

from .._cuse import ffi, lib

DEV_KMSG = "/dev/kmsg"
# The whole text of the kernel's record: one definition, native/shim/guid.c.
VMFORK_LINE = ffi.string(lib.vmgenid_vmfork_line)
RECORD_MAX = lib.VMGENID_KMSG_RECORD_MAX


class KmsgReader:
    _buffer = None

    def __init__(self, path: str = DEV_KMSG, from_start: bool = False):
        """@from_start: from the oldest record the ring still holds (the
        kernel-log tier counts what it missed), else from the end."""
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if not from_start:
            try:
                os.lseek(self._fd, 0, os.SEEK_END)
            except OSError:
                os.close(self._fd)
                raise

    def fileno(self) -> int:
        return self._fd

    def read_record(self) -> bytes | None:
        """The next record, or None when there is none now; OSError if
        /dev/kmsg failed (native/shim/kmsg.c's vmgenid_kmsg_read).  After
        records were overwritten before they were read, the next record is
        the oldest one left: its sequence number shows the gap."""
        if self._buffer is None:
            self._buffer = ffi.new("char[]", RECORD_MAX)
        n = lib.vmgenid_kmsg_read(self._fd, self._buffer)
        if n < 0:
            err = ffi.errno
            raise OSError(err, f"{DEV_KMSG}: {os.strerror(err)}")
        return ffi.buffer(self._buffer, n)[:] if n else None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
