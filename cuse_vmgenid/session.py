# SPDX-License-Identifier: MIT
"""The libfuse CUSE session, driven by the daemon's own loop.

We open /dev/cuse ourselves (libfuse would open it without O_CLOEXEC, and a
child holding it would keep a dead device alive) and hand it over as
/dev/fd/N.  The daemon polls the fd with its other fds and feeds each buffer
to libfuse on the main thread, where Python's signal handlers run.
"""

import errno
import os

from . import transport
from ._cuse import ffi, lib

CUSE_DEVICE = "/dev/cuse"
# A bound above any burst of real clients (each has at most a few requests
# queued): the loop answers everything queued before it polls again, but
# a flood cannot starve signals, interrupts and the hint sources.
MAX_BATCH = 16384


class SessionError(Exception):
    pass


class CuseSession:
    def __init__(self, devname: str, cuse_transport: "transport.CuseTransport",
                 fuse_debug: bool = False):
        self._keep = []  # cdata that libfuse points into must outlive it
        transport.current = cuse_transport

        dev_info = ffi.new("char[]", f"DEVNAME={devname}".encode())
        dev_info_argv = ffi.new("const char *[]", [dev_info])
        info = ffi.new("struct cuse_info *")
        info.dev_info_argc = 1
        info.dev_info_argv = dev_info_argv

        ops = ffi.new("struct cuse_lowlevel_ops *")
        ops.init_done = lib.vmgenid_init_done
        ops.open = lib.vmgenid_open
        ops.read = lib.vmgenid_read
        ops.write = lib.vmgenid_write
        ops.release = lib.vmgenid_release
        ops.ioctl = lib.vmgenid_ioctl
        ops.poll = lib.vmgenid_poll

        argv_strings = [ffi.new("char[]", b"cuse-vmgenid")]
        if fuse_debug:
            argv_strings.append(ffi.new("char[]", b"-d"))
        argv = ffi.new("char *[]", argv_strings + [ffi.NULL])
        args = ffi.new("struct fuse_args *")
        args.argc = len(argv_strings)
        args.argv = argv
        self._keep += [dev_info, dev_info_argv, info, ops, argv_strings,
                       argv, args]

        self._se = lib.cuse_lowlevel_new(args, info, ops, ffi.NULL)
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
        # Non-blocking: the loop answers every queued request, then does
        # its housekeeping once, not once per request.
        os.set_blocking(self.fd, False)
        self._buf = ffi.new("struct fuse_buf *")

    def process_pending(self) -> bool:
        """Answer every request the kernel has queued (up to MAX_BATCH);
        False once the kernel ended us."""
        res = lib.vmgenid_session_drain(self._se, self._buf, MAX_BATCH)
        if res == -errno.ENODEV:
            return False
        if res < 0:
            raise SessionError(f"reading {CUSE_DEVICE}: {os.strerror(-res)}")
        return True

    def close(self) -> None:
        if self._se is None:
            return
        # Closes the fd: the kernel removes the node and ends every open file.
        lib.fuse_session_destroy(self._se)
        self._se = None
        transport.current = None
