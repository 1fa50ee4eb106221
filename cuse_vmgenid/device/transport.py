# SPDX-License-Identifier: MIT
"""The CUSE transport's Python half: the file operations the daemon
answers itself.

native/shim/transport.c answers the kernel's requests, one function per
file operation like libfuse's example/cuse.c, and everything a watcher
does all day (read, ack, poll, close, GET_OUTDATED_WATCHERS,
WAIT_WATCHERS) without entering Python.  It hands over the operations that
need the daemon: open (whose user namespace the watcher counts against, a
/proc read) and the ioctls that change the generation (who may, the log,
the status); C reaches this object through the handle it was given
(ffi.new_handle).  Here a DeviceError becomes fuse_reply_err in one place
(`_answer`), and any other exception EIO, so no request is ever left
without a reply.  An unknown ioctl never comes here: transport.c refuses
it (EINVAL) and counts it, with every reply that could not be sent, for
the daemon's log (`take_report`).

The daemon's own transitions that owe others replies (its adoption of a
bump, a close the kernel could not deliver, WAIT_WATCHERS timeouts, the end)
go through transport.c too, which applies what they owe.
"""

import errno
import logging
import os
from dataclasses import dataclass
from typing import Callable, Optional, Union

from vmgenid import procinfo

from .._cuse import ffi, lib
from .errors import DeviceError, check
from .ioctls import force_min_value
from . import privilege
from .publisher import Publisher
from .state import GenerationState

log = logging.getLogger(__name__)

# Why a bump: the text, or a function that makes it once the wake-ups are
# done (who asked is a /proc read).
Why = Union[str, Callable[[], str]]


def why_text(why: Why) -> str:
    return why() if callable(why) else why


class LazyWhy:
    """For a log call's argument: made into text only if the line is
    written (a debug line usually is not)."""

    def __init__(self, why: Why):
        self.why = why

    def __str__(self) -> str:
        return why_text(self.why)


@dataclass
class Caller:
    """Who sent a request (the pid is the calling thread's id)."""
    pid: int
    uid: int

    @classmethod
    def of(cls, req) -> "Caller":
        ctx = lib.fuse_req_ctx(req)
        return cls(ctx.pid, ctx.uid)

    def describe(self) -> str:
        name = procinfo.comm(self.pid) or "?"
        return f"pid {self.pid} ({name}) uid {self.uid}"


class CuseTransport:
    """The daemon's side of one CUSE device's transport (transport.c)."""

    def __init__(self, state: GenerationState, *,
                 bump: Callable[[Why, Optional[int]], None],
                 notify: Callable[[Why], bool],
                 authorize: Callable[[Caller], None],
                 on_ready: Callable[[], None],
                 publisher: Publisher):
        self.state = state
        self._bump = bump            # (why, minimum): published
        self._notify = notify        # (why) -> bumped?
        self._authorize = authorize  # raises DeviceError(EACCES)
        self._on_ready = on_ready
        self.fatal: Optional[BaseException] = None
        self._daemon_ops = ffi.new("struct vmgenid_daemon_ops *")
        self._daemon_ops.init_done = lib.vmgenid_init_done
        self._daemon_ops.open = lib.vmgenid_open
        self._daemon_ops.ioctl = lib.vmgenid_ioctl
        # What C hands back to the callbacks below: kept as long as C may.
        self._handle = ffi.new_handle(self)
        self._t = lib.vmgenid_transport_new(state.c_handle,
                                            publisher.c_handle,
                                            self._daemon_ops, self._handle)
        if self._t == ffi.NULL:
            raise MemoryError("transport")
        self._bump_args = ffi.new("struct vmgenid_bump *")
        self._report = ffi.new("struct vmgenid_transport_report *")

    @property
    def c_handle(self):
        """For the session: libfuse's userdata, the C loop's transport."""
        return self._t

    # -- file operations -------------------------------------------------

    def init_done(self) -> None:
        self._on_ready()

    def open(self, req, fi) -> None:
        caller = Caller.of(req)
        # The cap counts a user namespace's watchers against its owner.
        wid = self.state.open(privilege.counted_uid(caller.pid, caller.uid),
                              caller.pid)
        fi.fh = wid
        # -ENOENT: the caller is gone and release will never come.
        res = lib.fuse_reply_open(req, fi)
        _replied(res, "open")
        if res == -errno.ENOENT:
            self.release(wid)

    def ioctl(self, req, cmd: int, fi, in_buf, in_bufsz: int) -> None:
        """transport.c hands over the ioctls that change the generation."""
        if cmd == lib.VMGENID_FORCE_GEN_UPDATE:
            caller = self._authorized(req)
            # Who asked goes to the log after the wake-ups (a /proc read).
            self._bump(lambda: f"FORCE_GEN_UPDATE by {caller.describe()}",
                       None)
            _replied(lib.fuse_reply_ioctl(req, 0, ffi.NULL, 0),
                     "FORCE_GEN_UPDATE")
        elif cmd == lib.VMGENID_FORCE_GEN_UPDATE_MIN:
            caller = self._authorized(req)
            minimum = force_min_value(
                ffi.buffer(in_buf, in_bufsz)[:] if in_bufsz else b"")
            self._bump(lambda: f"FORCE_GEN_UPDATE_MIN {minimum} by "
                       f"{caller.describe()}", minimum)
            _replied(lib.fuse_reply_ioctl(req, 0, ffi.NULL, 0),
                     "FORCE_GEN_UPDATE_MIN")
        elif cmd == lib.VMGENID_NOTIFY:
            caller = self._authorized(req)
            bumped = self._notify(
                lambda: f"VMGENID_NOTIFY by {caller.describe()}")
            _replied(lib.fuse_reply_ioctl(req, int(bumped), ffi.NULL, 0),
                     "VMGENID_NOTIFY")
        else:   # transport.c sends no other
            raise DeviceError(errno.EINVAL, f"unknown ioctl {cmd:#x}")

    def _authorized(self, req) -> Caller:
        caller = Caller.of(req)
        self._authorize(caller)
        return caller

    # -- the daemon's own transitions (what they owe, transport.c applies)

    def bump(self, minimum: Optional[int] = None,
             kmsg_seq: Optional[int] = None,
             reseed_generation: Optional[int] = None) -> None:
        """The daemon's bump, whole, in one C call
        (vmgenid_publisher_bump(): the state machine chooses the counter,
        the publisher publishes it, chosen again if the GUID poll thread
        published since, and adopted).  minimum: FORCE_GEN_UPDATE_MIN's;
        kmsg_seq: the kernel record it applies; reseed_generation: the
        hypervisor's counter of a change the kernel did not reseed its RNG
        for, which the publisher reseeds first.  DeviceError(EOVERFLOW):
        no counter left."""
        bump = self._bump_args
        bump.minimum = -1 if minimum is None else minimum
        bump.kmsg_seq = -1 if kmsg_seq is None else kmsg_seq
        bump.reseed = reseed_generation is not None
        bump.generation = reseed_generation or 0
        check(lib.vmgenid_transport_bump(self._t, bump),
              "no counter left to bump to")

    def adopt(self) -> None:
        """The counter published since: EINTR to WAIT_WATCHERS callers,
        pollers notified."""
        lib.vmgenid_transport_adopt(self._t)

    def release(self, wid: int) -> None:
        check(lib.vmgenid_transport_release(self._t, wid))

    def expire(self, now: float) -> None:
        """WAIT_WATCHERS calls whose deadline passed get ETIME."""
        lib.vmgenid_transport_expire(self._t, now)

    def take_report(self) -> Optional[str]:
        """What transport.c refused or could not send since the last take,
        as one log line; None if nothing."""
        out = self._report
        if not lib.vmgenid_transport_take_report(self._t, out):
            return None
        parts = []
        if out.unknown_ioctls:
            pid = out.last_ioctl_pid
            parts.append(f"{out.unknown_ioctls} unknown ioctl(s) refused "
                         f"(EINVAL), the last {out.last_ioctl:#x} by pid "
                         f"{pid} ({procinfo.comm(pid) or '?'})")
        if out.failed_replies:
            parts.append(f"{out.failed_replies} reply(ies) not sent, the "
                         f"last: {os.strerror(-out.last_reply_err)}")
        return "; ".join(parts)

    def abort_pending(self) -> None:
        """At exit: nothing may stay unanswered."""
        lib.vmgenid_transport_abort(self._t, errno.ECONNABORTED)

    def close(self) -> None:
        if self._t is not None:
            lib.vmgenid_transport_free(self._t)
            self._t = None


def _replied(res: int, what: str) -> None:
    """A reply libfuse could not send: the caller is gone (ENOENT: it was
    interrupted), or worse."""
    if res < 0:
        (log.debug if res == -errno.ENOENT else log.warning)(
            "the reply to %s was not sent: %s", what, os.strerror(-res))


def _answer(op, daemon, req, *args) -> None:
    """Run one file operation; every failure becomes exactly one reply."""
    try:
        op(ffi.from_handle(daemon), req, *args)
    except DeviceError as e:
        log.debug("%s: %r", op.__name__, e)
        _replied(lib.fuse_reply_err(req, e.errno), op.__name__)
    except Exception:
        log.exception("%s failed; answering EIO", op.__name__)
        _replied(lib.fuse_reply_err(req, errno.EIO), op.__name__)


@ffi.def_extern()
def vmgenid_init_done(daemon):
    # An exception cannot cross libfuse: keep it for the loop, which stops.
    transport = ffi.from_handle(daemon)
    try:
        transport.init_done()
    except Exception as e:
        log.exception("init_done failed")
        transport.fatal = e


@ffi.def_extern()
def vmgenid_open(daemon, req, fi):
    _answer(CuseTransport.open, daemon, req, fi)


@ffi.def_extern()
def vmgenid_ioctl(daemon, req, cmd, fi, in_buf, in_bufsz):
    _answer(CuseTransport.ioctl, daemon, req, cmd, fi, in_buf, in_bufsz)
