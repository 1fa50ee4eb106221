# SPDX-License-Identifier: MIT
"""The page: a 4096-byte file whose first 4 bytes always hold the counter.

Programs map it and read the counter without a system call, so the file is
created once per boot and never unlinked, renamed or truncated afterwards
(a mapping keeps its file across daemon restarts), and the counter changes
with one aligned 32-bit atomic store (native/shim/page.c).

A page someone cut short (a careless `truncate`) is repaired in place,
never a reason to stop: at start, and at every store (native/shim/page.c).  A
name in its place that is not a regular file (a planted symlink), or a
file someone but the daemon could write, is replaced by a new page at
start, never followed or read.

A page replaced at its path (`mv new page`) or removed is noticed by
replaced(), which the daemon runs after each publication: a new file of
the page's own, with its content, is renamed into place, and every later
store goes to it and to the files programs mapped before (up to
MAX_FILES of them).  The links to the page are checked likewise
(check_link()).
"""

import errno
import logging
import mmap
import os
import stat
import sys
from typing import Optional

from .. import safefiles
from .._cuse import ffi, lib
from .errors import check

log = logging.getLogger(__name__)

PAGE_SIZE = lib.VMGENID_PAGE_SIZE
PAGE_MODE = 0o444
COUNTER_SIZE = lib.VMGENID_COUNTER_SIZE
# The files a page keeps writing: the one at its path and older ones.
MAX_FILES = lib.VMGENID_PAGE_FILES


class Page:
    def __init__(self, path: str):
        self.path = path
        safefiles.private_folder(os.path.dirname(path) or ".")
        fd = self._open_existing(path)
        self.created = fd is None
        if self.created:
            fd = self._create(path)
        self._fd = fd
        size = os.fstat(fd).st_size
        if size < PAGE_SIZE:
            log.error("%s is shorter than one page (%d bytes): its size is "
                      "restored in place; the counter resumes from what is "
                      "left of it and the state file", path, size)
            os.ftruncate(fd, PAGE_SIZE)
        self._map = mmap.mmap(fd, PAGE_SIZE, mmap.MAP_SHARED,
                              mmap.PROT_READ | mmap.PROT_WRITE)
        self._pointer = ffi.from_buffer(self._map)
        self._page = lib.vmgenid_page_new(fd, self._pointer)
        if self._page == ffi.NULL:
            raise MemoryError("page")
        # (fd, mapping, pointer) of every file the page writes, newest
        # (the one at its path) first.
        self._files = [(fd, self._map, self._pointer)]
        # What was at the path when a repair last failed: not logged again.
        self._unrepaired = None

    @staticmethod
    def _open_existing(path: str):
        """The page's read-write descriptor, or None if there is no page
        (or, logged, something else in its place, which is never
        followed)."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK
                         | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                raise
            log.error("%s is not a regular file (%s): a new page replaces "
                      "it", path, e.strerror)
            return None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            log.error("%s is not a regular file: a new page replaces it",
                      path)
            return None
        # A restart may resume from the page: only the daemon may write it.
        why = safefiles.others_can_write(st)
        if why:
            os.close(fd)
            log.error("%s is %s: its value is not taken, and a new page "
                      "replaces it", path, why)
            return None
        os.set_blocking(fd, True)
        return fd

    @staticmethod
    def _create(path: str) -> int:
        """Full size before it appears: nobody may map a short file."""
        fd, tmp = safefiles.create_exclusive(path, PAGE_MODE)
        try:
            os.ftruncate(fd, PAGE_SIZE)
            os.fsync(fd)
            os.rename(tmp, path)
        except OSError:
            os.close(fd)
            os.unlink(tmp)
            raise
        return fd

    def link(self, path: str) -> None:
        """Expose the page at a second path, as a symlink, for libraries
        that map a plain file (AWS-LC reads /dev/sysgenid).  Never a device
        node: an existing but unmappable device makes such a library treat
        detection as failed and reseed on every call.  Only its own
        symlink is ever replaced; nothing is deleted."""
        if os.path.islink(path):
            if os.readlink(path) == self.path:
                return
        elif os.path.lexists(path):
            raise FileExistsError(f"{path} exists and is not a symlink: "
                                  "left alone")
        tmp = safefiles.unique_name(path)
        os.symlink(self.path, tmp)
        try:
            os.rename(tmp, path)
        except OSError:
            os.unlink(tmp)
            raise

    def replaced(self) -> Optional[str]:
        """None if the file at the page's path is the page's own newest
        file; else (replaced or removed) a new file of its own, with its
        content, is renamed into place and the log line is returned, or
        raised (OSError) if it could not be done.  Never follows a
        symlink.  Programs that mapped the old file keep seeing stores."""
        mine = os.fstat(self._fd)
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and (st.st_dev, st.st_ino) == (mine.st_dev,
                                                         mine.st_ino):
            self._unrepaired = None
            return None
        found = "removed" if st is None else (
            "replaced by another file" if stat.S_ISREG(st.st_mode)
            else "replaced by something that is not a regular file")
        key = None if st is None else (st.st_dev, st.st_ino)
        try:
            self._put_back()
        except OSError as e:
            if key == self._unrepaired:
                return None     # logged when it was found
            self._unrepaired = key
            raise OSError(e.errno, f"{self.path} was {found} and cannot be "
                          f"put back: {e.strerror}") from None
        self._unrepaired = None
        return (f"{self.path} was {found}: a new page with the counter "
                f"({self.load()}) is in its place (programs that mapped the "
                "old one keep seeing changes)")

    def _put_back(self) -> None:
        """A new file, with the newest one's content and every later store
        (native/shim/page.c), renamed to the page's path."""
        fd, tmp = safefiles.create_exclusive(self.path, PAGE_MODE)
        try:
            os.ftruncate(fd, PAGE_SIZE)
            mapping = mmap.mmap(fd, PAGE_SIZE, mmap.MAP_SHARED,
                                mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError:
            os.close(fd)
            os.unlink(tmp)
            raise
        pointer = ffi.from_buffer(mapping)
        if len(self._files) == MAX_FILES:
            self._forget(self._files[-1])
        err = lib.vmgenid_page_adopt(self._page, fd, pointer)
        try:
            check(err, self.path, OSError)
            os.rename(tmp, self.path)
        except OSError:
            if err == 0:
                lib.vmgenid_page_forget(self._page, pointer)
            os.close(fd)    # the mapping goes with its last reference
            os.unlink(tmp)
            raise
        self._files.insert(0, (fd, mapping, pointer))
        self._fd, self._map, self._pointer = fd, mapping, pointer

    def _forget(self, file) -> None:
        """Stop writing the oldest file (its readers see no more changes)."""
        fd, _, pointer = file
        lib.vmgenid_page_forget(self._page, pointer)
        self._files.remove(file)
        log.error("%s was replaced more than %d times: a program that "
                  "mapped its oldest file (inode %d) sees no more changes",
                  self.path, MAX_FILES - 1, os.fstat(fd).st_ino)
        os.close(fd)    # the mapping goes with its last reference

    def close(self) -> None:
        """After the publisher let go of it: its C half freed and its
        files closed.  They stay in place, holding the last counter, for
        the readers mapping them and the next start."""
        if self._page is None:
            return
        lib.vmgenid_page_free(self._page)
        self._page = None
        for fd, mapping, pointer in self._files:
            ffi.release(pointer)
            mapping.close()
            os.close(fd)
        self._files = []
        self._fd = -1

    @property
    def c_pointer(self):
        """The mapping itself, for C that lays out a page of its own kind
        (vmclock.py) before any reader can map it."""
        return self._pointer

    @property
    def c_handle(self):
        """The page for the publisher, which stores to it in C."""
        return self._page

    def load(self) -> int:
        """The counter as the file holds it; bytes missing from a short
        file count as 0 (read(2), which cannot fault as a mapping can)."""
        data = os.pread(self._fd, COUNTER_SIZE, 0)
        return int.from_bytes(data.ljust(COUNTER_SIZE, b"\0"), sys.byteorder)

    def store(self, value: int) -> None:
        """Never fails: the state file and the replies carry the value
        too, and a missed wake-up is worse than a stale page."""
        self.report_store(value, lib.vmgenid_page_store(self._page, value))

    def report_store(self, value: int, result: int) -> None:
        """Log what a store of value found (vmgenid_page_store's result,
        here or in the GUID poll thread)."""
        if result > 0:
            log.error("%s was cut shorter than one page: its size is "
                      "restored in place and the counter (%d) rewritten",
                      self.path, value)
        elif result < 0:
            log.error("cannot store %d in %s: %s", value, self.path,
                      os.strerror(-result))


_LEADS = ("leads",)     # KeptLink's when the link is as it was made


class KeptLink:
    """A link the daemon made to a page (--page-link, --vmclock-link),
    kept: after each publication it is made again, as at start, if it no
    longer leads to the page (docs/interface.rst, "The page"); what cannot
    be made again is logged once, and again only when what stands there
    changes, and left alone."""

    def __init__(self, path: str, page):
        """@page: a Page or a VMClock page, whose link() makes it; OSError
        if it cannot be made."""
        page.link(path)
        self.path = path
        self._page = page
        # What stood at the path when it last could not be made again
        # ((st_dev, st_ino), or None if nothing could be seen), or
        # _LEADS: it leads to the page.
        self._found = _LEADS

    def check(self) -> None:
        try:
            if os.readlink(self.path) == self._page.path:
                self._found = _LEADS
                return
        except OSError:
            pass
        try:
            self._page.link(self.path)
        except OSError as e:
            try:
                st = os.lstat(self.path)
                found = (st.st_dev, st.st_ino)
            except OSError:
                found = None
            if found != self._found:
                self._found = found
                log.error("%s no longer leads to %s: %s", self.path,
                          self._page.path, e)
            return
        self._found = _LEADS
        log.warning("%s no longer led to %s: the link is made again",
                    self.path, self._page.path)
