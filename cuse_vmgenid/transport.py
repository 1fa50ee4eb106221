# SPDX-License-Identifier: MIT
"""The CUSE transport: one function per kernel file operation.

Shaped like libfuse's example/cuse.c.  Each operation asks the state
machine, which raises DeviceError for a bad call; `_answer` turns that into
fuse_reply_err in one place, and any other exception into EIO, so no request
is ever left without a reply.

An operation sends its own reply last, after any replies it owes others,
so an exception can never reach `_answer` after the request was answered.

Everything runs on the daemon's main thread, inside
fuse_session_process_buf().  Requests that must wait (a blocked read, a
WAIT_WATCHERS) are kept by token and answered later, when the state machine
hands back their Completion.  The interrupt callback may run under the
request's lock (libfuse calls it at once if the interrupt came first), so it
only queues the token; the loop answers it after process_buf returns.

A blocked read is registered with the publisher (publisher.py) and
answered there, by the next bump whoever publishes it, or by an interrupt
or the end; the transport keeps only the WAIT_WATCHERS calls that wait.
The state machine adopts what the publisher published before each of its
transitions, so no request is answered from a generation older than one a
reader may have seen.
"""

import errno
import logging
import os
import select
import time
from dataclasses import dataclass
from typing import Callable, Optional, Union

from . import ioctls, privilege, procinfo
from ._cuse import ffi, lib
from .errors import DeviceError
from .publisher import Publisher
from .state import Blocked, Changes, GenerationState

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

POLLIN_READY = select.POLLIN | select.POLLRDNORM


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
    """Answers the kernel's requests for one CUSE device."""

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
        self.publisher = publisher
        # WAIT_WATCHERS calls that wait, by token.
        self._waiting: dict[int, object] = {}
        self._next_token = 1
        self._interrupted: list[int] = []
        # An open, ack or close since the daemon last looked: a figure of
        # the status changed (a read or a query changes none).
        self.figures_changed = False
        self.fatal: Optional[BaseException] = None

    # -- file operations -------------------------------------------------

    def init_done(self) -> None:
        self._on_ready()

    def open(self, req, fi) -> None:
        caller = Caller.of(req)
        # The cap counts a user namespace's watchers against its owner.
        wid = self.state.open(privilege.counted_uid(caller.pid, caller.uid),
                              caller.pid)
        fi.fh = wid
        self.figures_changed = True
        # -ENOENT: the caller is gone and release will never come.
        if lib.fuse_reply_open(req, fi) == -errno.ENOENT:
            self.apply(self.state.release(wid))

    def read(self, req, size: int, off: int, fi) -> None:
        data = self.state.read(fi.fh, size, bool(fi.flags & os.O_NONBLOCK))
        if isinstance(data, Blocked):
            token = self._new_token()
            self._watch_interrupt(req, token)
            self.publisher.wait(req, token, data.counter)
            return
        lib.fuse_reply_buf(req, data, len(data))

    def write(self, req, buf, size: int, off: int, fi) -> None:
        self.apply(self.state.ack(fi.fh, ffi.buffer(buf, size)[:]))
        self.figures_changed = True
        lib.fuse_reply_write(req, size)

    def release(self, req, fi) -> None:
        self.apply(self.state.release(fi.fh))
        self.figures_changed = True
        lib.fuse_reply_err(req, 0)

    def poll(self, req, fi, ph) -> None:
        handle = ph if ph != ffi.NULL else None
        ready, changes = self.state.poll(fi.fh, handle)
        self.apply(changes)
        lib.fuse_reply_poll(req, POLLIN_READY if ready else 0)

    def ioctl(self, req, cmd: int, arg, fi, flags: int,
              in_buf, in_bufsz: int) -> None:
        cmd &= 0xFFFFFFFF
        if cmd == ioctls.GET_OUTDATED_WATCHERS:
            lib.fuse_reply_ioctl(req, self.state.outdated_count(),
                                 ffi.NULL, 0)
        elif cmd == ioctls.WAIT_WATCHERS:
            self._wait_watchers(req, fi, ioctls.wait_timeout_ms(
                int(ffi.cast("uintptr_t", arg))))
        elif cmd == ioctls.FORCE_GEN_UPDATE:
            caller = self._authorized(req)
            # Who asked goes to the log after the wake-ups (a /proc read).
            self._bump(lambda: f"FORCE_GEN_UPDATE by {caller.describe()}",
                       None)
            lib.fuse_reply_ioctl(req, 0, ffi.NULL, 0)
        elif cmd == ioctls.FORCE_GEN_UPDATE_MIN:
            caller = self._authorized(req)
            minimum = ioctls.force_min_value(
                ffi.buffer(in_buf, in_bufsz)[:] if in_bufsz else b"")
            self._bump(lambda: f"FORCE_GEN_UPDATE_MIN {minimum} by "
                       f"{caller.describe()}", minimum)
            lib.fuse_reply_ioctl(req, 0, ffi.NULL, 0)
        elif cmd == ioctls.NOTIFY:
            caller = self._authorized(req)
            bumped = self._notify(
                lambda: f"VMGENID_NOTIFY by {caller.describe()}")
            lib.fuse_reply_ioctl(req, int(bumped), ffi.NULL, 0)
        else:
            raise DeviceError(errno.EINVAL, f"unknown ioctl {cmd:#x}")

    def _wait_watchers(self, req, fi, timeout_ms: int) -> None:
        token = self._new_token()
        result = self.state.wait_watchers(fi.fh, timeout_ms,
                                          time.monotonic(), token)
        if result is None:
            self._waiting[token] = req
            self._watch_interrupt(req, token)
            return
        lib.fuse_reply_ioctl(req, result, ffi.NULL, 0)

    def _authorized(self, req) -> Caller:
        caller = Caller.of(req)
        self._authorize(caller)
        return caller

    # -- interrupts and later replies ------------------------------------

    def _new_token(self) -> int:
        token = self._next_token
        self._next_token += 1
        return token

    def _watch_interrupt(self, req, token: int) -> None:
        """Only for a call that waits (an interrupt that came first runs the
        callback now, which only queues the token)."""
        lib.fuse_req_interrupt_func(req, lib.vmgenid_interrupt,
                                    ffi.cast("void *", token))

    def interrupt_arrived(self, token: int) -> None:
        """Runs under the request's lock: queue only, never reply here."""
        self._interrupted.append(token)

    def answer_interrupts(self) -> None:
        """EINTR to each interrupted call still waiting: a WAIT_WATCHERS
        (here) or a read (the publisher's)."""
        while self._interrupted:
            token = self._interrupted.pop(0)
            self.apply(self.state.interrupt(token))
            self.publisher.cancel(token, errno.EINTR)

    def expire(self, now: float) -> None:
        self.apply(self.state.expire(now))

    def apply(self, changes: Changes) -> None:
        """Reply to completed requests, notify and free poll handles."""
        for done in changes.completions:
            req = self._waiting.pop(done.token, None)
            if req is None:
                log.error("completion for unknown token %s", done.token)
            elif done.error:
                lib.fuse_reply_err(req, done.error)
            else:
                lib.fuse_reply_ioctl(req, done.result, ffi.NULL, 0)
        for ph in changes.notify:
            lib.fuse_lowlevel_notify_poll(ph)
        for ph in changes.release:
            lib.fuse_pollhandle_destroy(ph)

    def abort_pending(self) -> None:
        """At exit: nothing may stay unanswered."""
        for req in self._waiting.values():
            lib.fuse_reply_err(req, errno.ECONNABORTED)
        self._waiting.clear()
        self.publisher.abort(errno.ECONNABORTED)


# The transport that the C callbacks below reach; set by the session.
current: Optional[CuseTransport] = None


def _answer(op, req, *args) -> None:
    """Run one file operation; every failure becomes exactly one reply."""
    try:
        op(current, req, *args)
    except DeviceError as e:
        log.debug("%s: %r", op.__name__, e)
        lib.fuse_reply_err(req, e.errno)
    except Exception:
        log.exception("%s failed; answering EIO", op.__name__)
        lib.fuse_reply_err(req, errno.EIO)


@ffi.def_extern()
def vmgenid_init_done(userdata):
    # An exception cannot cross libfuse: keep it for the loop, which stops.
    try:
        current.init_done()
    except Exception as e:
        log.exception("init_done failed")
        current.fatal = e


@ffi.def_extern()
def vmgenid_open(req, fi):
    _answer(CuseTransport.open, req, fi)


@ffi.def_extern()
def vmgenid_read(req, size, off, fi):
    _answer(CuseTransport.read, req, size, off, fi)


@ffi.def_extern()
def vmgenid_write(req, buf, size, off, fi):
    _answer(CuseTransport.write, req, buf, size, off, fi)


@ffi.def_extern()
def vmgenid_release(req, fi):
    _answer(CuseTransport.release, req, fi)


@ffi.def_extern()
def vmgenid_ioctl(req, cmd, arg, fi, flags, in_buf, in_bufsz, out_bufsz):
    _answer(CuseTransport.ioctl, req, cmd, arg, fi, flags, in_buf, in_bufsz)


@ffi.def_extern()
def vmgenid_poll(req, fi, ph):
    _answer(CuseTransport.poll, req, fi, ph)


@ffi.def_extern()
def vmgenid_interrupt(req, data):
    current.interrupt_arrived(int(ffi.cast("uintptr_t", data)))
