# SPDX-License-Identifier: MIT
"""The kernel log hint: the kernel's vmgenid driver, on every GUID change,
has random.c log "random: crng reseeded due to virtual machine fork" at
KERN_NOTICE (5.18 and later).

KmsgReader reads /dev/kmsg without blocking, from the end of the log at
open (older records are history, not news); the daemon polls fileno() for
POLLIN and calls drain(), until it says False.  It is a hint: the caller
then reads the GUID.  Without a GUID, the kernel-log tier (kernellog.py)
reads it from the start and counts the records themselves.
Only the kernel's own record counts: facility 0 and level 5 (userspace
writes to /dev/kmsg get LOG_USER whatever they ask), and that whole text,
since other kernel records carry text a user chose.  The parse is in C
(native/shim/kmsg.c), shared with the poll thread.
"""

import os

from .._cuse import ffi, lib

DEV_KMSG = "/dev/kmsg"
# The whole text of the kernel's record: one definition, native/shim/guid.c.
VMFORK_LINE = ffi.string(lib.vmgenid_vmfork_line)
RECORD_MAX = lib.VMGENID_KMSG_RECORD_MAX


def parse_record(record: bytes) -> tuple[int, bool] | None:
    """(sequence number, is it the kernel's VM fork record?) of a record
    in /dev/kmsg's format "prio,seq,usec,flags;text" then optional
    " KEY=value" lines; None if it is not in that format.  The parse is
    native/shim/kmsg.c's, the one the poll thread uses."""
    seq = ffi.new("int64_t *")
    kind = lib.vmgenid_kmsg_parse(record, len(record), seq)
    return None if kind < 0 else (seq[0], kind == 1)


def is_vmfork_record(record: bytes) -> bool:
    """True for the kernel's own record whose whole text is VMFORK_LINE."""
    parsed = parse_record(record)
    return parsed is not None and parsed[1]


class KmsgReader:
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
        self.records = 0   # records read (for tests and the log)
        self.overruns = 0  # EPIPE: records overwritten before we read them

    def fileno(self) -> int:
        return self._fd

    def read_record(self) -> bytes | None:
        """The next record, or None when there is none now.  After EPIPE
        (the ring overwrote records not read yet) the next record is the
        oldest one left: its sequence number shows the gap."""
        while True:
            try:
                record = os.read(self._fd, RECORD_MAX)
            except BlockingIOError:
                return None
            except BrokenPipeError:
                self.overruns += 1
                continue
            if not record:
                return None
            self.records += 1
            return record

    def drain(self) -> bool:
        """Read pending records up to the kernel's VM fork message; True
        if it came.  Records after it stay for the next call (the fd stays
        readable): the bump it starts should not wait for them."""
        while (record := self.read_record()) is not None:
            if is_vmfork_record(record):
                return True
        return False

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
