"""The page: a 4096-byte file whose first 4 bytes always hold the counter.

Programs map it and read the counter without a system call, so the file is
created once per boot and never unlinked, renamed or truncated afterwards
(a mapping keeps its file across daemon restarts), and the counter changes
with one aligned 32-bit atomic store (decl/page.c).
"""

import mmap
import os

from ._cuse import ffi, lib

PAGE_SIZE = 4096
PAGE_MODE = 0o444


class Page:
    def __init__(self, path: str):
        self.path = path
        self.created = not os.path.exists(path)
        if self.created:
            self._create(path)
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            if os.fstat(fd).st_size < PAGE_SIZE:
                raise OSError(f"{path} is shorter than one page")
            self._map = mmap.mmap(fd, PAGE_SIZE, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self._ptr = ffi.from_buffer(self._map)

    @staticmethod
    def _create(path: str) -> None:
        """Full size before it appears: nobody may map a short file."""
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        tmp = f"{path}.new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                     PAGE_MODE)
        try:
            os.write(fd, bytes(PAGE_SIZE))
            os.fchmod(fd, PAGE_MODE)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)

    def link(self, path: str) -> None:
        """Expose the page at a second path, as a symlink, for libraries
        that map a plain file (AWS-LC reads /dev/sysgenid).  Never a device
        node: an existing but unmappable device makes such a library treat
        detection as failed and reseed on every call."""
        if os.path.islink(path):
            if os.readlink(path) == self.path:
                return
        elif os.path.lexists(path):
            raise FileExistsError(f"{path} exists and is not a symlink: "
                                  "left alone")
        tmp = f"{path}.new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(self.path, tmp)
        os.rename(tmp, path)

    @property
    def c_pointer(self):
        """The mapping, for the armed bump, which stores to it in C."""
        return self._ptr

    def load(self) -> int:
        return lib.vmgenid_page_load(self._ptr)

    def store(self, value: int) -> None:
        lib.vmgenid_page_store(self._ptr, value)
