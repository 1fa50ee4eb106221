# SPDX-License-Identifier: MIT
"""A real VMClock device, read as a source of generation changes (docs/interface.rst,
"Where changes come from", tier b): Linux's ptp_vmclock driver (7.0+)
serves the hypervisor's struct vmclock_abi at /dev/vmclock0, to mmap and,
when VMCLOCK_FLAG_NOTIFICATION_PRESENT is set, to poll.

The page is read under the ABI's seqlock in C (native/shim/vmclock.c): Python has
no memory fences.  poll() on the device reports POLLIN while seq_count
differs from what this file last read(); acknowledge() reads it.
"""

import errno
import mmap
import os
import stat
from typing import NamedTuple

from ._cuse import ffi, lib

DEVICE = "/dev/vmclock0"
PAGE_SIZE = mmap.PAGESIZE       # the driver maps (and reads) one page


class VmclockUnavailable(Exception):
    """No usable VMClock device; the message says why."""


class VmclockReading(NamedTuple):
    vm_generation_counter: int
    disruption_marker: int
    seq_count: int
    generation_present: bool
    notification_present: bool


class VmclockDevice:
    """A VMClock page mapped read-only: the kernel's device, or a file laid
    out the same way (the host tests)."""

    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            self._map = mmap.mmap(self._fd, PAGE_SIZE, mmap.MAP_SHARED,
                                  mmap.PROT_READ)
        except (OSError, ValueError) as e:
            os.close(self._fd)
            raise VmclockUnavailable(f"{path}: cannot map it: {e}") from e
        self._ptr = ffi.cast("const void *", ffi.from_buffer(self._map))
        self._out = ffi.new("struct vmgenid_vmclock_reading *")

    def fileno(self) -> int:
        return self._fd

    def read(self) -> VmclockReading:
        """One consistent read; VmclockUnavailable if the magic is wrong
        or seq_count stayed odd or moving through every retry."""
        err = lib.vmgenid_vmclock_read(self._ptr, self._out)
        if err:
            why = ("not a VMClock page (wrong magic)" if err == -errno.EINVAL
                   else "no consistent read (seq_count held odd or moving)")
            raise VmclockUnavailable(f"{self.path}: {why}")
        out = self._out
        return VmclockReading(out.vm_generation_counter,
                              out.disruption_marker, out.seq_count,
                              bool(out.generation_present),
                              bool(out.notification_present))

    def acknowledge(self) -> None:
        """Read the device once, so that poll() waits for the next update
        (the driver compares with what this file last read)."""
        try:
            os.pread(self._fd, PAGE_SIZE, 0)
        except OSError:
            pass    # ETIMEDOUT on a count held odd: read() says so

    def close(self) -> None:
        if self._fd >= 0:
            self._ptr = None
            self._map.close()
            os.close(self._fd)
            self._fd = -1


def open_kernel_device(path: str = DEVICE) -> VmclockDevice:
    """The kernel's own VMClock device at @path, if it is one and it
    advertises the generation counter; VmclockUnavailable says why not.
    A symlink there is not the kernel's (it may be this daemon's own
    --vmclock-link)."""
    try:
        st = os.lstat(path)
    except OSError as e:
        raise VmclockUnavailable(f"{path}: {e.strerror}") from e
    if not stat.S_ISCHR(st.st_mode):
        raise VmclockUnavailable(f"{path} is not the kernel's device (not "
                                 "a character device)")
    return open_device(path)


def open_device(path: str) -> VmclockDevice:
    """The VMClock page at @path (any file), if it advertises the
    generation counter; VmclockUnavailable says why not."""
    try:
        device = VmclockDevice(path)
    except OSError as e:
        raise VmclockUnavailable(f"{path}: {e.strerror}") from e
    try:
        reading = device.read()
        if not reading.generation_present:
            raise VmclockUnavailable(f"{path} has no generation counter "
                                     "(VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT "
                                     "clear)")
    except VmclockUnavailable:
        device.close()
        raise
    return device
