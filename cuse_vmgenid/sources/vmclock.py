# SPDX-License-Identifier: MIT
"""The tier vmclock (docs/interface.rst, "Where changes come from", 2):
the kernel's own VMClock device, Linux's ptp_vmclock driver (7.0+), which
serves the hypervisor's struct vmclock_abi at /dev/vmclock0, to mmap and,
when VMCLOCK_FLAG_NOTIFICATION_PRESENT is set, to poll.

The page is read under the ABI's seqlock in C (native/shim/vmclock.c):
Python has no memory fences.  poll() on the device reports POLLIN while seq_count
differs from what this file last read(); acknowledge() reads it.
"""

import errno
import logging
import mmap
import os
import stat
from typing import NamedTuple, Optional

from .._cuse import ffi, lib
from .base import Change, Mark, Source, SourceUnavailable

log = logging.getLogger(__name__)

DEVICE = "/dev/vmclock0"
PAGE_SIZE = mmap.PAGESIZE       # the driver maps (and reads) one page


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
            raise SourceUnavailable(f"{path}: cannot map it: {e}") from e
        self._ptr = ffi.cast("const void *", ffi.from_buffer(self._map))
        self._out = ffi.new("struct vmgenid_vmclock_reading *")

    def fileno(self) -> int:
        return self._fd

    def read(self) -> VmclockReading:
        """One consistent read; SourceUnavailable if the magic is wrong
        or seq_count stayed odd or moving through every retry."""
        err = lib.vmgenid_vmclock_read(self._ptr, self._out)
        if err:
            why = ("not a VMClock page (wrong magic)" if err == -errno.EINVAL
                   else "no consistent read (seq_count held odd or moving)")
            raise SourceUnavailable(f"{self.path}: {why}")
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
    advertises the generation counter; SourceUnavailable says why not.
    A symlink there is not the kernel's (it may be this daemon's own
    --vmclock-link)."""
    try:
        st = os.lstat(path)
    except OSError as e:
        raise SourceUnavailable(f"{path}: {e.strerror}") from e
    if not stat.S_ISCHR(st.st_mode):
        raise SourceUnavailable(f"{path} is not the kernel's device (not "
                                "a character device)")
    return open_device(path)


def open_device(path: str) -> VmclockDevice:
    """The VMClock page at @path (any file), if it advertises the
    generation counter; SourceUnavailable says why not."""
    try:
        device = VmclockDevice(path)
    except OSError as e:
        raise SourceUnavailable(f"{path}: {e.strerror}") from e
    try:
        reading = device.read()
        if not reading.generation_present:
            raise SourceUnavailable(f"{path} has no generation counter "
                                    "(VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT "
                                    "clear)")
    except SourceUnavailable:
        device.close()
        raise
    return device


class VmclockSource(Source):
    """One change per new vm_generation_counter, read under the seqlock.
    The kernel's driver (ptp_vmclock) does not reseed the kernel RNG on a
    change: each Change asks the publisher to, before anyone wakes.

    A new disruption_marker alone (a live migration: the clock moved, the
    guest's memory did not fork) is not a change of generation, as the ABI
    says; only vm_generation_counter counts."""
    name = "vmclock"

    def __init__(self, device: VmclockDevice, poll_interval_ms: int):
        self._device = device
        first = device.read()
        self.pollable = first.notification_present
        if self.pollable:
            device.acknowledge()    # poll() then waits for what is new
        # Its poll() tells: that is the wait; else the interval.
        self.interval: Optional[float] = (
            None if self.pollable else poll_interval_ms / 1000.0)
        self.detection = "event" if self.pollable else "poll"
        # The counter the last change (or the start) was made for.
        self._known: Optional[int] = first.vm_generation_counter
        self._marker = first.disruption_marker
        self._unreadable = False

    def _change(self, why: Optional[str], seen_on: str = "") -> Change:
        return Change(why, reseed=True, generation=self._known or 0,
                      seen_on=seen_on)

    def check(self, seen_on: str = "") -> Optional[Change]:
        """A change if vm_generation_counter changed since the last one.
        Unreadable (a count held odd, the magic or the flag gone) is taken
        as a change once; the next good read is compared with the last
        good one."""
        try:
            now = self._device.read()
            if not now.generation_present:
                raise SourceUnavailable(f"{self._device.path}: the "
                                        "generation counter flag is gone")
        except SourceUnavailable as e:
            if self._unreadable:
                return None
            self._unreadable = True
            log.error("cannot read the VMClock generation counter: %s", e)
            return self._change("VMClock generation counter unreadable",
                                seen_on)
        self._unreadable = False
        if now.disruption_marker != self._marker:
            self._marker = now.disruption_marker
            log.info("VMClock: clock disrupted (disruption_marker changed)")
        if now.vm_generation_counter == self._known:
            return None
        log.info("VMClock: vm_generation_counter %s -> %d", self._known,
                 now.vm_generation_counter)
        self._known = now.vm_generation_counter
        return self._change(None, seen_on)

    def restart(self, saved) -> Optional[Change]:
        """Compared with the counter the state file kept (None: unknown,
        so a restart in the same boot bumps once)."""
        self._known = saved.vmclock_counter if saved is not None else None
        return self.check()

    def mark(self) -> Mark:
        return Mark(vmclock_counter=self._known)

    def fds(self) -> list[int]:
        return [self._device.fileno()] if self.pollable else []

    def ready(self, fd: int) -> Optional[Change]:
        """The device notified an update: read it, so that poll() waits
        for the next one, and look."""
        self._device.acknowledge()
        return self.check("VMClock notification")

    def close(self) -> None:
        self._device.close()


def open_tier(poll_interval_ms: int, path: str = DEVICE) -> VmclockSource:
    """The tier vmclock; SourceUnavailable says why not."""
    device = open_kernel_device(path)
    try:
        source = VmclockSource(device, poll_interval_ms)
    except SourceUnavailable:
        device.close()
        raise
    log.info("VMClock source: %s, %s", device.path,
             "its poll() tells of each update" if source.pollable
             else f"no notifications: looking every {poll_interval_ms} ms")
    return source
