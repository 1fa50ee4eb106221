# SPDX-License-Identifier: MIT
"""The armed bump (decl/armedbump.c): the next hardware generation, made
ready by the daemon, that the GUID poll thread publishes the moment it
sees a new GUID (state file, page, replies to the waiting reads), without
waiting for the interpreter.

Right after a restore under emulation, every code path run for the first
time costs milliseconds, and the daemon's own path to the replies took
longer than the kernel's whole reaction.  The state machine stays the only
truth: the daemon arms the bump with the counter its next bump gives and the
GUID it knows, and takes a fired bump (which disarms it) before it handles
anything else, applying the same bump to the state machine.
"""

from typing import NamedTuple, Optional

from ._cuse import ffi, lib


class FiredBump(NamedTuple):
    counter: int        # published in the state file, page and replies
    guid: bytes         # the GUID it fired on
    state_error: int    # the state file's commit: 0 or an errno
    replies: int        # reads it answered
    kernel_log: bool    # the kernel's VM fork line woke the thread
    # From the thread's wake-up, in ms: firing began, state file written,
    # reads answered.
    timings: tuple[float, float, float]
    page_result: int    # the page's store: 0, 1 repaired, or -errno


class ArmedBump:
    def __init__(self, state_file, page, reply=None, vmclock_page=None):
        """reply: the C function that answers a read (fuse_reply_buf; a
        test passes its own); vmclock_page: the VMClock-ABI page
        (vmclock.py), stored right after the page, or None."""
        if reply is None:
            reply = ffi.addressof(lib, "fuse_reply_buf")
        self._reply = reply     # a test's callback must outlive us
        self._ab = lib.vmgenid_armed_bump_new(
            state_file.c_handle, page.c_handle,
            ffi.NULL if vmclock_page is None else vmclock_page.c_handle,
            reply)
        if self._ab == ffi.NULL:
            raise MemoryError("armed bump")
        self._fired_out = ffi.new("struct vmgenid_fired_bump *")

    @property
    def c_handle(self):
        """For the GUID poll thread, which fires it."""
        return self._ab

    def arm(self, counter: int, guid: bytes) -> None:
        """Fire with counter on any GUID other than guid."""
        lib.vmgenid_armed_bump_arm(self._ab, counter, guid)

    @property
    def fired_flag(self):
        """Whether it fired since the last take, as an int cdata to load
        (flag[0], no lock) before every request: cheaper than a call, on
        the daemon's hottest path."""
        return lib.vmgenid_armed_bump_fired_flag(self._ab)

    def take(self) -> Optional[FiredBump]:
        """Disarm; the bump it fired since the last take, if any."""
        out = self._fired_out
        if not lib.vmgenid_armed_bump_take(self._ab, out):
            return None
        return FiredBump(out.counter, bytes(ffi.buffer(out.guid, 16)),
                         -out.state_err, out.replies, bool(out.kernel_log),
                         (out.fire_us / 1000, out.committed_us / 1000,
                          out.replied_us / 1000), out.page_result)

    def add_read(self, req):
        """A read now waits: firing answers it.  None if out of memory
        (the daemon then answers it alone)."""
        read = lib.vmgenid_armed_read_add(self._ab, req)
        return None if read == ffi.NULL else read

    def take_read(self, read) -> bool:
        """The daemon is about to answer read: True if it still may, False
        if a fired bump answered it.  read is freed either way."""
        return bool(lib.vmgenid_armed_read_take(self._ab, read))

    def close(self) -> None:
        """After the thread let go of it and every read was taken."""
        if self._ab is not None:
            lib.vmgenid_armed_bump_free(self._ab)
            self._ab = None
