"""The kernel log hint: the kernel's vmgenid driver, on every GUID change,
has random.c log "crng reseeded due to virtual machine fork" (6.1, 6.12).

KmsgReader reads /dev/kmsg without blocking, from the end of the log at
open (older records are history, not news); the daemon polls fileno() for
POLLIN and calls drain(), until it says False.  It is a hint: the caller then reads the GUID.
Only kernel records count (facility 0): userspace writes to /dev/kmsg get
facility LOG_USER whatever they ask, so they cannot fake one.
"""

import os

DEV_KMSG = "/dev/kmsg"
MARKER = b"crng reseeded due to virtual machine fork"
RECORD_MAX = 8192  # a record is at most ~1 KiB of text plus its dictionary


def is_vmfork_record(record: bytes) -> bool:
    """True for a kernel record (/dev/kmsg format "prio,seq,usec,flags;text"
    then optional " KEY=value" lines) whose text holds MARKER."""
    header, sep, rest = record.partition(b";")
    if not sep:
        return False
    try:
        prio = int(header.split(b",", 1)[0])
    except ValueError:
        return False
    if prio >> 3 != 0:  # facility: the kernel's own is 0
        return False
    return MARKER in rest.split(b"\n", 1)[0]


class KmsgReader:
    def __init__(self, path: str = DEV_KMSG):
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            os.lseek(self._fd, 0, os.SEEK_END)
        except OSError:
            os.close(self._fd)
            raise
        self.records = 0   # records read (for tests and the log)
        self.overruns = 0  # EPIPE: records overwritten before we read them

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> bool:
        """Read pending records up to the kernel's VM fork message; True
        if it came.  Records after it stay for the next call (the fd stays
        readable): the bump it starts should not wait for them."""
        while True:
            try:
                record = os.read(self._fd, RECORD_MAX)
            except BlockingIOError:
                return False
            except BrokenPipeError:
                # The ring overwrote records we had not read: the next read
                # goes on from the oldest one left.
                self.overruns += 1
                continue
            if not record:
                return False
            self.records += 1
            if is_vmfork_record(record):
                return True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
