# SPDX-License-Identifier: MIT
"""The libfuse CUSE session, driven by the daemon's own loop.

We open /dev/cuse ourselves (libfuse would open it without O_CLOEXEC, and a
child holding it would keep a dead device alive) and hand it over as
/dev/fd/N.  The daemon's loop hands its fds and its next deadline to
`serve` (native/shim/session.c), which polls them with the session's,
answers requests on the main thread and returns as soon as the daemon has
something to do, so Python's signal handlers run.
"""

import errno
import os
import select
from typing import NamedTuple, Optional

from . import transport
from .._cuse import ffi, lib

CUSE_DEVICE = "/dev/cuse"


class SessionError(Exception):
    pass


class Served(NamedTuple):
    """Why serve() returned, and what the daemon takes from it."""
    ready: list[int]        # of its fds, readable
    figures: bool           # a figure the status shows changed
    report: bool            # something refused to report (take_report())
    last_request: float     # monotonic time of the last batch, or 0


class CuseSession:
    def __init__(self, devname: str, cuse_transport: "transport.CuseTransport",
                 fuse_debug: bool = False):
        self._keep = []  # cdata that libfuse points into must outlive it

        dev_info = ffi.new("char[]", f"DEVNAME={devname}".encode())
        dev_info_argv = ffi.new("const char *[]", [dev_info])
        info = ffi.new("struct cuse_info *")
        info.dev_info_argc = 1
        info.dev_info_argv = dev_info_argv

        argv_strings = [ffi.new("char[]", b"cuse-vmgenid")]
        if fuse_debug:
            argv_strings.append(ffi.new("char[]", b"-d"))
        argv = ffi.new("char *[]", argv_strings + [ffi.NULL])
        args = ffi.new("struct fuse_args *")
        args.argc = len(argv_strings)
        args.argv = argv
        self._keep += [dev_info, dev_info_argv, info, argv_strings, argv,
                       args]

        self._transport = cuse_transport.c_handle
        self._se = lib.cuse_lowlevel_new(args, info,
                                         lib.vmgenid_transport_cuse_ops(),
                                         self._transport)
        if self._se == ffi.NULL:
            raise SessionError("cuse_lowlevel_new failed")
        try:
            fd = os.open(CUSE_DEVICE, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            lib.fuse_session_destroy(self._se)
            raise SessionError(f"cannot open {CUSE_DEVICE}: {e.strerror} "
                               "(is the cuse module loaded?)") from e
        if lib.fuse_session_mount(self._se, f"/dev/fd/{fd}".encode()) != 0:
            os.close(fd)
            lib.fuse_session_destroy(self._se)
            raise SessionError("fuse_session_mount failed")
        self.fd = lib.fuse_session_fd(self._se)
        # Non-blocking: the loop answers every queued request, then looks
        # at the daemon's fds, not once per request.
        os.set_blocking(self.fd, False)
        self._buf = ffi.new("struct fuse_buf *")
        self._last_request = ffi.new("double *")
        # Built at the first serve(): the session's fd and the daemon's.
        self._fds = None
        self._watched: Optional[list[int]] = None

    def serve(self, fds: list[int], timeout_ms: int,
              status_dirty: bool) -> Served:
        """Answer requests until one of fds is readable, a signal came,
        timeout_ms (-1: none) passed, a request wants the daemon, or a
        figure changed while the status is clean (not status_dirty).
        EOFError once the kernel ended us."""
        if fds != self._watched:
            self._fds = ffi.new("struct pollfd[]", 1 + len(fds))
            for i, fd in enumerate([self.fd] + fds):
                self._fds[i].fd = fd
                self._fds[i].events = select.POLLIN
            self._watched = list(fds)
        res = lib.vmgenid_session_serve(self._se, self._buf, self._transport,
                                        self._fds, 1 + len(fds), timeout_ms,
                                        status_dirty, self._last_request)
        if res == -errno.ENODEV:
            raise EOFError("the kernel ended the CUSE session")
        if res < 0:
            raise SessionError(f"serving {CUSE_DEVICE}: {os.strerror(-res)}")
        return Served([fd for i, fd in enumerate(fds, 1)
                       if self._fds[i].revents],
                      bool(res & lib.VMGENID_SERVE_FIGURES),
                      bool(res & lib.VMGENID_SERVE_REPORT),
                      self._last_request[0])

    def close(self) -> None:
        if self._se is None:
            return
        # Closes the fd: the kernel removes the node and ends every open
        # file; and frees the request buffer libfuse allocated.
        lib.vmgenid_session_end(self._se, self._buf)
        self._se = None
