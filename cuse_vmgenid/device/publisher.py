# SPDX-License-Identifier: MIT
"""The publisher (native/shim/publisher.c): the one path of every bump,
in C, under one lock: the state file, then the page (and the VMClock-ABI
page), then a reply to every blocked read.  The daemon's own bumps and the
GUID poll thread's go through it.

The state machine (native/shim/state.c) stays the one truth: it chooses
each bump's counter, which is published only if nothing was published
since it chose; and each of its transitions first adopts what was
published (`c_published`).  Blocked reads are registered here only, with
the counter the state machine decided they wait at.
"""

import os
from typing import NamedTuple, Optional

from .._cuse import ffi, lib

GUID_SIZE = lib.VMGENID_GUID_SIZE


class Publication(NamedTuple):
    """The publications since the daemon last took them."""
    bumped_from: int
    counter: int
    count: int          # publications
    hardware: int       # of them on a new GUID
    kernel_log: bool    # the kernel's VM fork line woke one
    statefile_error: int    # the last state file commit: 0 or an errno
    page_result: int    # the last page store: 0, 1 repaired, or -errno
    replies: int        # blocked reads answered
    # The last one, from its start (the thread: its wake-up), in ms:
    # state file committed, reads answered.
    timings: tuple[float, float]
    records: int = 0    # of them for kernel log records (kernellog.py)
    lost: bool = False  # one for records lost before they were read
    kmsg_seq: int = -1  # the last of those records
    reseed_error: int = 0   # an errno if a reseed of the kernel RNG failed
    reseeds: int = 0    # of them reseeded without a GUID (change())
    reseed_cpu_words: int = 0   # the last such: 32-bit words from
                                # RDSEED/RDRAND

    def reseed_note(self) -> Optional[str]:
        """For the log: a reseed that failed, or how the daemon reseeded
        without a GUID; None if neither (a GUID's is not logged)."""
        if self.reseed_error:
            return ("cannot reseed the kernel RNG: "
                    f"{os.strerror(self.reseed_error)}")
        if self.reseeds:
            return ("kernel RNG reseeded before the wake-up "
                    f"({self.reseed_cpu_words} words from RDSEED/RDRAND, "
                    "the counters, the time)")
        return None

    def by_the_thread(self) -> str:
        """For the log line of a publication the thread made."""
        committed_ms, replied_ms = self.timings
        return (f"published by the thread: state file at "
                f"{committed_ms:.1f} ms, reads answered at "
                f"{replied_ms:.1f} ms")


class Publisher:
    def __init__(self, state_file, page, counter: int, *,
                 kmsg_seq: Optional[int] = None, mark=None,
                 vmclock_page=None, rng_fd: int = -1):
        """mark: the change source's mark() (sources.Mark: what the state
        file keeps of it for the restart rule), asked at each commit and
        at the start, when the GUID it gives is the first compared; or
        None (then kmsg_seq).  vmclock_page: the VMClock-ABI
        page, or None.  rng_fd: /dev/urandom, where each hardware change
        the kernel did not reseed for reseeds the kernel RNG (a new GUID,
        change()), or -1."""
        self._state_file = state_file
        self._mark = mark
        kmsg_seq = self.kept(kmsg_seq)
        self._pub = lib.vmgenid_publisher_new(
            state_file.c_handle, page.c_handle,
            ffi.NULL if vmclock_page is None else vmclock_page.c_handle,
            self._reply_ops(), rng_fd, counter, _seq(kmsg_seq))
        if self._pub == ffi.NULL:
            raise MemoryError("publisher")
        # Where the state machine reads the published counter (state.c).
        self.c_published = (
            ffi.addressof(lib, "vmgenid_publisher_published"), self._pub)
        self._out = ffi.new("struct vmgenid_publication *")
        self._guid = ffi.new("unsigned char[]", GUID_SIZE)
        if mark is not None:
            self.set_guid(mark().guid)

    def _reply_ops(self):
        """Where the replies to blocked reads go: libfuse's fuse_reply_buf
        and fuse_reply_err (cuse_reply.c)."""
        return lib.vmgenid_cuse_replies()

    def kept(self, kmsg_seq: Optional[int] = None) -> Optional[int]:
        """@kmsg_seq, or the source's mark's, which also gives the state
        file its VMClock counter (before each bump and save)."""
        if kmsg_seq is not None or self._mark is None:
            return kmsg_seq
        mark = self._mark()
        self._state_file.set_vmclock(mark.vmclock_counter)
        return mark.kmsg_seq

    @property
    def c_handle(self):
        """For the GUID poll thread."""
        return self._pub

    def set_guid(self, guid: Optional[bytes]) -> None:
        lib.vmgenid_publisher_set_guid(self._pub,
                                       ffi.NULL if guid is None else guid)

    def guid(self) -> Optional[bytes]:
        """The last GUID published, or None."""
        if not lib.vmgenid_publisher_guid(self._pub, self._guid):
            return None
        return bytes(ffi.buffer(self._guid, GUID_SIZE))

    def hardware(self, guid, kernel_reseeded: bool = False) -> int:
        """The GUID where it is (a live view of the hypervisor's page),
        read by the publisher under its lock: 1 if it was new and is
        published (the RNG reseeded with it first, unless the kernel
        did), 0 if not new, -EOVERFLOW at the counter's end."""
        return lib.vmgenid_publisher_hardware(self._pub, ffi.from_buffer(guid),
                                              kernel_reseeded, ffi.NULL)

    def save(self, kmsg_seq: Optional[int] = None) -> int:
        """The state file with what is published: 1 written, 0 already
        there, or -errno."""
        return lib.vmgenid_publisher_save(self._pub,
                                          _seq(self.kept(kmsg_seq)))

    def take(self) -> Optional[Publication]:
        """The publications since the last take, or None."""
        out = self._out
        if not lib.vmgenid_publisher_take(self._pub, out):
            return None
        return Publication(out.bumped_from, out.counter,
                           out.count, out.hardware, bool(out.kernel_log),
                           -out.statefile_err, out.page_result, out.replies,
                           (out.committed_us / 1000, out.replied_us / 1000),
                           out.records, bool(out.lost), out.kmsg_seq,
                           -out.reseed_err, out.reseeds,
                           out.reseed_cpu_words)

    def close(self) -> None:
        """After the thread let go of it and every read was answered."""
        if self._pub is not None:
            lib.vmgenid_publisher_free(self._pub)
            self._pub = None


def _seq(kmsg_seq: Optional[int]) -> int:
    return -1 if kmsg_seq is None else kmsg_seq
