"""The daemon: wires the state machine, the CUSE transport, the page, the
state file and the change sources, and runs the loop on the main thread."""

import fcntl
import logging
import os
import select
import signal
import time
from typing import Optional

from . import privilege, sdnotify, statefile
from .hintsignal import HintSignal
from .page import Page
from .session import CuseSession
from .sources import open_source
from .state import Changes, GenerationState
from .transport import Caller, CuseTransport

log = logging.getLogger(__name__)

RNDRESEEDCRNG = 0x5207  # _IO('R', 0x07), linux/random.h


class Daemon:
    def __init__(self, options):
        self.options = options
        self.source = open_source(options.source, options.poll_interval_ms)
        self.page = Page(options.page)
        if options.page_link:
            try:
                self.page.link(options.page_link)
            except OSError as e:
                log.error("no page link: %s", e)
        self.boot_id = statefile.current_boot_id()
        self.state_file = statefile.StateFile(options.state)
        self._urandom = _open_urandom()
        self.guid: Optional[str] = None
        counter, missed_why = self._resume()
        self.state = GenerationState(counter, options.max_watchers_per_uid)
        self.transport = CuseTransport(
            self.state, bump=self.bump, notify=self.notify,
            authorize=lambda caller: privilege.authorize_change(caller.pid),
            on_ready=self._ready)
        self._persist()
        self.page.store(counter)
        if missed_why:
            self.bump(missed_why)
        self._stop = False
        self._next_guid_poll: Optional[float] = None

    # -- generation changes ----------------------------------------------

    def _resume(self) -> tuple[int, Optional[str]]:
        """The starting counter, and why to bump once (None: no bump)."""
        saved = self.state_file.load()
        changed, self.guid = self.source.changed(saved.guid if saved else None)
        same_boot = saved is not None and saved.boot_id == self.boot_id
        if same_boot:
            counter = max(saved.counter, self.page.load())
            log.info("same boot: resuming at %d (state %d, page %d)",
                     counter, saved.counter, self.page.load())
            if changed:
                return counter, ("restart: a change may have been missed "
                                 f"(source {self.source.name})")
            return counter, None
        if not self.page.created:
            counter = self.page.load()
            log.warning("no state file for this boot but %s holds %d: "
                        "resuming from it", self.page.path, counter)
            return counter, "restart without a state file"
        log.info("new boot: counter starts at 0")
        return 0, None

    def bump(self, why: str, minimum: Optional[int] = None) -> Changes:
        """State file, then page, then wake readers: SPEC.md's order."""
        changes = self.state.bump(minimum)
        self._persist()
        self.page.store(self.state.counter)
        self.transport.apply(changes)
        try:
            self.state_file.prepare()   # off the next bump's critical path
        except OSError as e:
            log.error("cannot prepare %s: %s", self.state_file.path, e)
        log.info("generation %d -> %d: %s", changes.bumped_from,
                 self.state.counter, why)  # after the wake-ups: they wait
        return changes

    def notify(self, why: str) -> bool:
        """A hint: bump iff the hardware generation changed."""
        changed, guid = self.source.changed(self.guid)
        if not changed:
            log.debug("hint (%s): GUID unchanged", why)
            return False
        old_guid, self.guid = self.guid, guid
        if guid is None:
            self.bump(f"hint: {why}")
            return True
        # Before anyone wakes: two clones of one snapshot share the RNG's
        # state, and a woken reader's first draw must already differ.
        self._reseed_rng()
        self.bump(f"GUID {old_guid} -> {guid} (seen on {why})")
        return True

    def _reseed_rng(self) -> None:
        """Mix the new GUID into the kernel RNG (the seed's
        add_device_randomness) and reseed it now: a write alone only feeds
        the input pool, which the crng draws from later."""
        data = self.source.guid_bytes()
        if data is None or self._urandom is None:
            return
        try:
            os.write(self._urandom, data)
            fcntl.ioctl(self._urandom, RNDRESEEDCRNG)
        except OSError as e:
            log.warning("cannot reseed the kernel RNG: %s", e)

    def _persist(self) -> None:
        saved = statefile.SavedState(self.boot_id, self.state.counter,
                                     self.guid)
        try:
            self.state_file.save(saved)
        except OSError as e:
            # The bump goes on: a missed wake-up is worse than a stale file.
            log.error("cannot write %s: %s", self.state_file.path, e)

    # -- serving ---------------------------------------------------------

    def _ready(self) -> None:
        node = f"/dev/{self.options.devname}"
        for _ in range(100):
            try:
                os.chmod(node, self.options.mode)
                break
            except FileNotFoundError:
                time.sleep(0.01)
        else:
            raise RuntimeError(f"{node} did not appear")
        log.info("serving %s (mode %o) at generation %d, page %s",
                 node, self.options.mode, self.state.counter, self.page.path)
        sdnotify.notify(f"READY=1\nSTATUS=generation {self.state.counter}")

    def _on_signal(self, signum, frame) -> None:
        self._stop = True

    def serve(self) -> int:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        hint_signal = HintSignal()

        session = CuseSession(self.options.devname, self.transport,
                              self.options.fuse_debug)
        poller = select.poll()
        poller.register(session.fd, select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        poller.register(hint_signal.fileno(), select.POLLIN)
        hint_fds = self.source.hint_fds()
        for fd in hint_fds:
            poller.register(fd, select.POLLIN)
        self._next_guid_poll = self._guid_poll_after(time.monotonic())
        try:
            while not self._stop:
                events = poller.poll(self._timeout_ms())
                for fd, _ in events:
                    if fd == wake_r:
                        _drain(wake_r)
                    elif fd == hint_signal.fileno():
                        for pid, uid in hint_signal.senders():
                            self.notify("SIGUSR1 from "
                                        + Caller(pid, uid).describe())
                    elif fd in hint_fds:
                        why = self.source.take_hint(fd)
                        if why:
                            self.notify(why)
                    elif not session.process_one():
                        log.error("the kernel ended the CUSE connection")
                        return 1
                    if self.transport.fatal is not None:
                        return 1
                    self.transport.answer_interrupts()
                now = time.monotonic()
                self.transport.expire(now)
                if self._next_guid_poll is not None \
                        and now >= self._next_guid_poll:
                    self.notify("periodic check")
                    self._next_guid_poll = self._guid_poll_after(now)
            log.info("stopping at generation %d", self.state.counter)
            return 0
        finally:
            self.transport.abort_pending()
            session.close()
            self.state_file.close()
            hint_signal.close()
            signal.set_wakeup_fd(-1)
            os.close(wake_r)
            os.close(wake_w)

    def _guid_poll_after(self, now: float) -> Optional[float]:
        interval = self.source.poll_interval
        return None if interval is None else now + interval

    def _timeout_ms(self) -> int:
        deadlines = [d for d in (self.state.next_deadline(),
                                 self._next_guid_poll) if d is not None]
        if not deadlines:
            return -1
        return max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)


def _open_urandom() -> Optional[int]:
    """/dev/urandom, opened once: the reseed runs right after a restore,
    where every code path touched for the first time costs."""
    try:
        return os.open("/dev/urandom", os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        log.warning("cannot open /dev/urandom (no reseed on a GUID "
                    "change): %s", e)
        return None


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
