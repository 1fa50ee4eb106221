# SPDX-License-Identifier: MIT
"""The VMClock-ABI page (docs/interface.rst, "The page"): the counter laid
out as the kernel's struct vmclock_abi, for libraries that map a VMClock
device (AWS-LC's newest VM-UBE detection maps /dev/vmclock0 first).

Not a clock: counter_id INVALID, clock_status UNKNOWN; only
VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT, vm_generation_counter = the counter and
disruption_marker advanced per change, under the ABI's seqlock
(native/shim/vmclock.c, which the publisher calls).  The file's life is
the counter page's (page.py): created once per boot, 0444, 4096 bytes,
never unlinked, renamed or truncated.
"""

import os
import stat

from .._cuse import ffi, lib
from .page import PAGE_SIZE, Page

PAGE_NAME = "vmclock"
# The seqlock writer, run by the page's guarded writer (native/shim/page.c) as
# the counter's store is.
STORE = ffi.addressof(lib, "vmgenid_vmclock_store")


def page_path(counter_page: str) -> str:
    """Where the VMClock-ABI page lives: beside the counter page."""
    return os.path.join(os.path.dirname(counter_page), PAGE_NAME)


class VmclockPage:
    def __init__(self, path: str, counter: int):
        """Open (or create) the page at @path and lay it out if it is not
        a VMClock page with the generation counter yet (new, or from a
        daemon that had none)."""
        self._file = Page(path)
        self.path = path
        reading = ffi.new("struct vmgenid_vmclock_reading *")
        if (lib.vmgenid_vmclock_read(self.c_pointer, reading) != 0
                or not reading.generation_present):
            if lib.vmgenid_vmclock_init(self.c_pointer, PAGE_SIZE,
                                        counter) < 0:
                raise OSError(f"{path}: cannot lay out a VMClock page")

    @property
    def c_pointer(self):
        """The mapping."""
        return self._file.c_pointer

    @property
    def c_handle(self):
        """The page file, for the publisher, which stores to it in C."""
        return self._file.c_handle

    def store(self, counter: int) -> bool:
        """Publish @counter under the seqlock; False if it held it.  A
        page cut short is repaired first, as the counter page is."""
        changed = ffi.new("int *")
        self._file.report_store(counter, lib.vmgenid_page_write(
            self._file.c_handle, STORE, counter, changed))
        return bool(changed[0])

    def close(self) -> None:
        """After the publisher let go of it (Page.close())."""
        self._file.close()

    def replaced(self):
        """The page put back at its path if it was replaced or removed:
        Page.replaced()."""
        return self._file.replaced()

    def link(self, path: str) -> None:
        """Expose the page at @path (e.g. /dev/vmclock0) as a symlink.
        Only ever creates one, never replaces anything: @path may be the
        kernel's own VMClock device, which must never be shadowed, and a
        symlink to anything but this page is someone else's."""
        try:
            os.symlink(self.path, path)     # fails if anything is there
            return
        except FileExistsError:
            pass
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
            if target == self.path:
                return
            raise FileExistsError(f"{path} is a symlink to {target}, not to "
                                  f"{self.path}: left alone")
        kind = ("a character device (a real VMClock device is never "
                "shadowed)" if stat.S_ISCHR(st.st_mode)
                else "not a symlink")
        raise FileExistsError(f"{path} exists and is {kind}: left alone")
