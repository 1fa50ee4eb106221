# SPDX-License-Identifier: MIT
"""The daemon: wires the state machine, the CUSE transport, the page, the
state file and the change sources, and runs the loop on the main thread."""

import errno
import logging
import os
import signal
import stat
import time
from typing import Optional

from vmgenid import procinfo
from vmgenid.status import STATUS_SCHEMA, ChangeReason

from ..device import privilege, statefile
from ..device.errors import DeviceError
from ..device.page import KeptLink, Page
from ..device.publisher import Publication, Publisher
from ..device.session import CuseSession, Served
from ..device.state import COUNTER_MAX, GenerationState
from ..device.transport import Caller, CuseTransport, LazyWhy, Why, why_text
from ..device.vmclockpage import VmclockPage, page_path as vmclock_page_path
from ..sources import Change, open_source
from .status import StatusFile
from . import sdnotify
from .signals import HintSignal

log = logging.getLogger(__name__)

# The status file lists at most this many outdated watchers.
MAX_LISTED_WATCHERS = 256
# One line at most this often for what transport.c refused (unknown
# ioctls) or could not send: a flood costs no more than that.
REPORT_INTERVAL_S = 10.0


class Daemon:
    def __init__(self, options):
        self.options = options
        _check_node_free(options.devname)   # before touching any file
        self._urandom = _open_urandom()
        # First, while descriptors are plenty: see privilege.Reserve.
        self._reserve = privilege.Reserve()
        self.source = open_source(options.source, options.poll_interval_ms)
        self.page = Page(options.page)
        # The links the daemon made, checked after each publication
        # (_check_files()).
        self._links: list[KeptLink] = []
        self._files_due = False
        if options.page_link:
            try:
                self._links.append(KeptLink(options.page_link, self.page))
            except OSError as e:
                log.error("no page link: %s", e)
        self.boot_id = statefile.current_boot_id()
        self.state_file = statefile.StateFile(options.state, self.boot_id)
        # From here a failure ends the start: the next save's temporary
        # file, made ready, goes with it.
        try:
            counter, missed = self._resume()
            self.vmclock_page = self._vmclock_page(counter)
            # Every bump from here on: one path (publisher.py); what the
            # source keeps for the restart rule goes with each commit.
            self.publisher = Publisher(
                self.state_file, self.page, counter, mark=self.source.mark,
                vmclock_page=self.vmclock_page,
                rng_fd=-1 if self._urandom is None else self._urandom)
            self.state = GenerationState(counter, options.max_watchers_per_uid,
                                         self.publisher)
            self.transport = CuseTransport(
                self.state,
                bump=lambda why, minimum: self.bump(why, minimum,
                                                    ChangeReason.FORCED),
                notify=lambda why: self.look(why, ChangeReason.NOTIFY),
                authorize=lambda caller: privilege.authorize_change(
                    caller.pid, self._reserve),
                on_ready=self._ready, publisher=self.publisher)
            self._persist()
            # The counter resumed from, where readers look (not a bump).
            self.page.store(counter)
            if self.vmclock_page is not None:
                self.vmclock_page.store(counter)
            self.last_change: Optional[dict] = None
            # Without --status the report still goes to systemd (STATUS=).
            self.status = StatusFile(options.status, self._status_report,
                                     self._watcher_lists,
                                     self.state.outdated_by_uid,
                                     published=self._tell_systemd_status)
            self._systemd_status: Optional[str] = None   # the last STATUS= sent
            self._started = procinfo.start_time(os.getpid())
            if missed:
                why, change = missed
                if counter >= COUNTER_MAX:
                    raise ValueError(
                        f"{options.state}: the counter is at its maximum "
                        f"({counter}), so the change this restart may have "
                        "missed cannot be published; reboot (a new boot starts "
                        "at 0)")
                self.bump(why, reason=ChangeReason.RESTART, change=change)
            self.source.start(self.publisher)
        except BaseException:
            self._not_serving()
            raise
        self._stop = False
        self._next_look: Optional[float] = None
        # transport.c's report: when it may be logged next (None: none
        # due), and when it last was.
        self._report_at: Optional[float] = None
        self._last_report = -REPORT_INTERVAL_S

    def _vmclock_page(self, counter: int) -> Optional[VmclockPage]:
        """The VMClock-ABI page and its link, with --vmclock-link."""
        if not self.options.vmclock_link:
            return None
        try:
            page = VmclockPage(vmclock_page_path(self.options.page), counter)
        except OSError as e:
            # The device matters more: it serves without this page.
            log.error("no VMClock page: %s", e)
            return None
        try:
            self._links.append(KeptLink(self.options.vmclock_link, page))
        except OSError as e:
            log.error("no VMClock link: %s", e)
        return page

    def _check_files(self) -> None:
        """After a publication: each page still at its path, each link the
        daemon made still leading to its page; what is not is put right
        and logged in one line (docs/interface.rst, "The page")."""
        self._files_due = False
        for page in (self.page, self.vmclock_page):
            if page is None:
                continue
            try:
                line = page.replaced()
            except OSError as e:
                log.error("%s", e)
                continue
            if line:
                log.warning("%s", line)
        for link in self._links:
            link.check()

    def _mark_status(self) -> None:
        self.status.mark_dirty()

    def _requests_answered(self, served: Served) -> None:
        """An open, close or ack changes a figure the status shows; a read
        or a query changes none, and a stream of them writes no status.
        (The listed outdated watchers only change with these figures:
        between bumps their set can only shrink.)  Requests keep the
        status's write off their path while they come (status.py).
        What transport.c refused is logged in one line at most every
        REPORT_INTERVAL_S (_report)."""
        if served.last_request:
            self.status.busy(served.last_request)
        if served.figures:
            self._mark_status()
        if served.report and self._report_at is None:
            self._report_at = self._last_report + REPORT_INTERVAL_S

    def _report(self, now: float, end: bool = False) -> None:
        """transport.c's count of unknown ioctls and replies not sent,
        when due (or at the end)."""
        if not end and (self._report_at is None or now < self._report_at):
            return
        self._report_at = None
        line = self.transport.take_report()
        if line:
            self._last_report = now
            log.info("%s", line)

    # -- generation changes ----------------------------------------------

    def _resume(self) -> tuple[int, Optional[tuple[str, Optional[Change]]]]:
        """The starting counter (statefile.resume(): the page is repaired
        from it by the store that follows), and why to bump once, with the
        source's change if it saw one (None: no bump)."""
        saved = self.state_file.load()
        same_boot = saved is not None and saved.boot_id == self.boot_id
        change = self.source.restart(saved if same_boot else None)
        resumed = statefile.resume(
            saved, self.boot_id,
            None if self.page.created else self.page.load(), self.page.path)
        if resumed.warning:
            log.warning("%s", resumed.warning)
        elif resumed.same_boot:
            log.info("same boot: resuming at %d", resumed.counter)
        else:
            log.info("new boot: counter starts at 0")
        if resumed.same_boot and change is not None:
            note = change.why
            return resumed.counter, ("restart: a change may have been "
                                     f"missed (source {self.source.name}"
                                     f"{': ' + note if note else ''})",
                                     change)
        if resumed.bump_why:
            # The source's own change, if it saw one, asks for its reseed.
            return resumed.counter, (resumed.bump_why, change)
        return resumed.counter, None

    def bump(self, why: Why, minimum: Optional[int] = None,
             reason: ChangeReason = ChangeReason.FORCED,
             change: Optional[Change] = None) -> None:
        """The daemon's own bump, one C call (transport.bump()): the
        state machine chooses the counter, the publisher publishes it
        (docs/interface.rst's order), chosen again if the GUID poll thread
        published since.  @change: the source's, if it saw one; if the
        kernel did not reseed its RNG for it (change.reseed), the
        publisher does first."""
        self._take_publications()   # the thread's, logged as its own
        reseed = change is not None and change.reseed
        self.transport.bump(minimum, self.publisher.kept(),
                            change.generation if reseed else None)
        self._published(why, reason)

    def _published(self, why: Why, reason: ChangeReason,
                   publication: Optional[Publication] = None) -> None:
        """After a publication (taken here if not given): what the daemon
        owes besides the blocked reads (the publisher answered those):
        pollers and WAIT_WATCHERS callers, the log, the status.
        why goes to the log (never a GUID: docs/interface.rst, Privacy),
        only its class to the world-readable status."""
        if publication is None:
            publication = self.publisher.take()
        self.transport.adopt()
        if publication is None:
            return
        why = why_text(why)
        if publication.hardware and reason is not ChangeReason.HARDWARE:
            # The thread published one in between: both are in the count.
            what = "kernel log record" if publication.records \
                else "new GUID"
            why += (f"; and {publication.hardware} {what} published by "
                    "the poll thread")
        if publication.statefile_error:
            log.error("cannot write %s: %s", self.state_file.path,
                      os.strerror(publication.statefile_error))
        self.page.report_store(publication.counter, publication.page_result)
        log.info("generation %d -> %d: %s (%d reads answered)",
                 publication.bumped_from, publication.counter, why,
                 publication.replies)
        reseed = publication.reseed_note()
        if reseed:
            (log.error if publication.reseed_error else log.info)(reseed)
        self.last_change = {"time": time.time(),
                            "from": publication.bumped_from,
                            "to": publication.counter,
                            "reason": reason.value}
        self._files_due = True   # checked by the loop, after this returns
        self._mark_status()   # written by the loop, after this returns

    def _take_publications(self) -> None:
        """The source's thread's publications since the daemon looked."""
        publication = self.publisher.take()
        if publication is None:
            return
        self._published(self.source.published(publication),
                        ChangeReason.HARDWARE, publication)

    def look(self, why: Why, reason: ChangeReason = ChangeReason.HINT) -> bool:
        """A hint (SIGUSR1, VMGENID_NOTIFY, the source's interval): the
        source looks, and what it saw is published (reason: the hint's
        class, for a change without a GUID to compare)."""
        self._take_publications()
        return self._take_change(self.source.check(), why, reason)

    def _take_change(self, change: Optional[Change], why: Why,
                     reason: ChangeReason) -> bool:
        """Publish what the source saw on hint why; True if published."""
        if change is None:
            log.debug("hint (%s): no change", LazyWhy(why))
            return False
        if change.seen_on:
            why = change.seen_on
        if change.guid is not None:
            # Compared with the last GUID published, whoever read it.
            published = self.publisher.hardware(change.guid,
                                                not change.reseed)
            if published < 0:
                return self._at_the_end("GUID changed", why, reason)
            if published == 0:
                log.debug("hint (%s): GUID unchanged", LazyWhy(why))
                return False
            self._published(
                lambda: f"GUID changed (seen on {why_text(why)})",
                ChangeReason.HARDWARE)
            return True
        # No GUID to compare: a GUID read later is new (a missed change
        # would be a security bug).
        self.publisher.set_guid(None)
        note = change.why
        try:
            self.bump(lambda: f"{note} (seen on {why_text(why)})" if note
                      else f"hint: {why_text(why)}", reason=reason,
                      change=change)
        except DeviceError as e:
            if e.errno != errno.EOVERFLOW:
                raise
            return self._at_the_end(note or "a change", why, reason)
        return True

    @staticmethod
    def _at_the_end(what: str, why: Why, reason: ChangeReason) -> bool:
        """A change due with the counter at 0xffffffff, where it never
        wraps: VMGENID_NOTIFY's caller is told (EOVERFLOW); a hint nobody
        waits on (a signal, the source) is one line in the log."""
        if reason is ChangeReason.NOTIFY:
            raise DeviceError(errno.EOVERFLOW, "no counter left to bump to")
        log.error("%s (seen on %s) cannot be published: the counter is at "
                  "its maximum (%d); reboot (a new boot starts at 0)", what,
                  why_text(why), COUNTER_MAX)
        return False

    def _persist(self) -> None:
        """The state file with what is published (not a bump: at start and
        at the end, for the kernel-log tier's records read)."""
        result = self.publisher.save()
        if result < 0:
            log.error("cannot write %s: %s", self.state_file.path,
                      os.strerror(-result))

    # -- serving ---------------------------------------------------------

    def _ready(self) -> None:
        node = f"/dev/{self.options.devname}"
        for _ in range(100):
            if _chmod_node(self.options.devname, self.options.mode):
                break
            time.sleep(0.01)
        else:
            raise RuntimeError(f"{node} did not appear")
        log.info("serving %s (mode %o) at generation %d, page %s",
                 node, self.options.mode, self.state.counter, self.page.path)
        self._systemd_status = self._status_line()
        _notify_systemd(f"READY=1\nSTATUS={self._systemd_status}")

    def _status_line(self) -> str:
        """systemd's STATUS=: the figures `systemctl status` shows."""
        return (f"generation {self.state.counter}, "
                f"{self.state.watcher_count()} watchers, "
                f"{self.state.outdated_count()} outdated, "
                f"source {self.source.name}")

    def _tell_systemd_status(self, report: dict) -> None:
        """With each status report (rate-limited with the file), if the
        line changed."""
        if self._systemd_status is None:
            return      # not serving yet: READY=1 carries the first
        line = self._status_line()
        if line != self._systemd_status:
            self._systemd_status = line
            _notify_systemd(f"STATUS={line}")

    def _connection_ended(self) -> None:
        """Our node goes with our connection: one still there is another
        daemon's, which won a race to start (the kernel then refuses the
        second one and CUSE does not say why)."""
        node = f"/dev/{self.options.devname}"
        if os.path.exists(node):
            log.error("fatal: %s is already served (by another "
                      "cuse-vmgenid?): the kernel refused a second one; "
                      "stop it or choose another --devname", node)
        else:
            log.error("the kernel ended the CUSE connection")

    def _not_serving(self) -> None:
        """A start that fails once the state file is open: the source's
        thread publishes no more, and the next save's temporary file is
        removed (a clean stop's close() removes it too)."""
        self.source.stop()
        self.state_file.discard()

    def _on_signal(self, signum, frame) -> None:
        self._stop = True

    def _on_reload(self, signum, frame) -> None:
        # Nothing to reload (hooks run in cuse-vmgenid-hooks); SIGHUP's
        # default would end the daemon, and every client would reseed.
        log.info("SIGHUP: nothing to reload")

    def serve(self) -> int:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_reload)
        hint_signal = HintSignal()

        try:
            session = CuseSession(self.options.devname, self.transport,
                                  self.options.fuse_debug)
        except BaseException:
            self._not_serving()
            raise
        source_fds = self.source.fds()
        self._next_look = self._look_after(time.monotonic())
        try:
            while not self._stop:
                watched = [wake_r, hint_signal.fileno(), *source_fds]
                try:
                    served = session.serve(watched, self._timeout_ms(),
                                           self.status.dirty)
                except EOFError:
                    self._connection_ended()
                    return 1
                if self.transport.fatal is not None:
                    return 1
                # Pollers and waiters, if a request found a bump the thread
                # published.
                self.transport.adopt()
                self._requests_answered(served)
                for fd in served.ready:
                    if fd == wake_r:
                        _drain(wake_r)
                    elif fd == hint_signal.fileno():
                        self._guarded("SIGUSR1 hint", self._signal_hints,
                                      hint_signal)
                    else:
                        self._guarded("source", self._source_ready, fd)
                now = time.monotonic()
                deadline = self.state.next_deadline()
                if deadline is not None and now >= deadline:
                    self.transport.expire(now)
                if self._next_look is not None and now >= self._next_look:
                    self._next_look = self._look_after(now)
                    self._guarded("periodic check", self.look,
                                  "periodic check")
                # After every reply and wake-up of this round.
                if self._files_due:
                    self._guarded("file check", self._check_files)
                self._guarded("status", self._write_status, now)
                self._guarded("report", self._report, now)
            log.info("stopping at generation %d", self.state.counter)
            self._persist()     # the kernel-log tier: the records read
            return 0
        finally:
            _notify_systemd("STOPPING=1")
            # The thread lets go of the publisher; what it published is
            # logged.
            self.source.stop()
            self._take_publications()
            self.transport.abort_pending()
            self._report(time.monotonic(), end=True)
            session.close()
            self.transport.close()
            self.publisher.close()
            self.page.close()
            if self.vmclock_page is not None:
                self.vmclock_page.close()
            self.state_file.close()
            hint_signal.close()
            self.source.close()
            signal.set_wakeup_fd(-1)
            os.close(wake_r)
            os.close(wake_w)

    @staticmethod
    def _guarded(what: str, work, *args) -> None:
        """The loop's own work: an exception is logged with its traceback
        and the loop goes on; only SIGTERM or a fatal condition, named in
        one line, ends the daemon."""
        try:
            work(*args)
        except Exception:
            log.exception("%s failed; the daemon goes on", what)

    def _signal_hints(self, hint_signal: HintSignal) -> None:
        for pid, uid in hint_signal.senders():
            caller = Caller(pid, uid)
            self.look(lambda caller=caller: "SIGUSR1 from "
                      + caller.describe(), ChangeReason.SIGNAL)

    def _source_ready(self, fd: int) -> None:
        change = self.source.ready(fd)
        self._take_publications()
        self._take_change(change, "source", ChangeReason.HINT)

    def _look_after(self, now: float) -> Optional[float]:
        interval = self.source.interval
        return None if interval is None else now + interval

    def _write_status(self, now: float) -> None:
        try:
            self.status.write_if_due(now)
        except OSError as e:
            log.error("cannot write %s: %s", self.status.path, e)

    def _status_report(self) -> dict:
        """The world-readable status: counts and classes, no GUID, no
        other user's process (status.py)."""
        return {
            "schema": STATUS_SCHEMA,
            "daemon_pid": os.getpid(),
            # With the pid: tells the daemon from a later process that got
            # the same pid (a stale file).
            "daemon_start": self._started,
            "device": f"/dev/{self.options.devname}",
            "page": self.page.path,
            "counter": self.state.counter,
            "watchers": self.state.watcher_count(),
            "outdated": self.state.outdated_count(),
            "source": {"name": self.source.name,
                       "guid_available": self.publisher.guid() is not None,
                       "detection": self.source.detection,
                       "unseen": self.source.unseen},
            "last_change": self.last_change,
            "written": time.time(),
        }

    def _watcher_lists(self) -> list[dict]:
        """The outdated watchers, oldest first, each under the uid it
        counts against; status.py gives each uid its own list, with how
        many it holds in all (state.outdated_by_uid: the list is cut)."""
        # Only the listed watchers are copied and looked up in /proc: with
        # thousands outdated, a full snapshot stalled the loop for seconds.
        listed = self.state.outdated_watchers(MAX_LISTED_WATCHERS)
        return [{"pid": pid, "uid": uid, "comm": procinfo.comm(pid),
                 "acknowledged": acked}
                for _, uid, pid, acked in listed]

    def _timeout_ms(self) -> int:
        return poll_timeout_ms(
            (self.state.next_deadline(), self._next_look,
             self._report_at,
             self.status.due()), time.monotonic())


# poll(2) takes an int of ms: a later deadline (a WAIT_WATCHERS timeout
# may be 49 days) wakes the loop early, and it looks again.
MAX_POLL_MS = 0x7FFFFFFF


def poll_timeout_ms(deadlines, now: float) -> int:
    """poll()'s timeout for the nearest of deadlines (None: none), or -1.
    Any float: one beyond MAX_POLL_MS (inf and nan too) waits MAX_POLL_MS,
    one past (-inf too) 0."""
    deadlines = [d for d in deadlines if d is not None]
    if not deadlines:
        return -1
    left_ms = (min(deadlines) - now) * 1000
    if not left_ms < MAX_POLL_MS:
        return MAX_POLL_MS
    if left_ms < 0:
        return 0
    return int(left_ms) + 1


# A daemon that just died leaves its node to devtmpfs, which removes it a
# moment later (asynchronously): a restart waits that long for it to go.
NODE_GONE_WAIT_S = 2.0


def _check_node_free(devname: str) -> None:
    """A second daemon for a served node would bump the first one's page
    and state file behind its back before the kernel refuses it."""
    node = f"/dev/{devname}"
    deadline = time.monotonic() + NODE_GONE_WAIT_S
    # lexists: a symbolic link there (even a dangling one) is taken too.
    while os.path.lexists(node) and time.monotonic() < deadline:
        time.sleep(0.05)
    if os.path.islink(node):
        raise FileExistsError(f"{node} is a symbolic link, not a node: "
                              "remove it or choose another --devname")
    if os.path.lexists(node):
        raise FileExistsError(
            f"{node} is already served (by another cuse-vmgenid?): stop it "
            "or choose another --devname")


def _chmod_node(devname: str, mode: int) -> bool:
    """The mode of our node, /dev/<devname> (a name options.devname
    checked: no '/', not '..'), set on the node itself: opened in /dev
    without following a symbolic link, and only if it is a character
    device.  False while it is not there yet."""
    dev = os.open("/dev", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = os.open(devname, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=dev)
    except FileNotFoundError:
        return False
    finally:
        os.close(dev)
    try:
        if not stat.S_ISCHR(os.fstat(fd).st_mode):
            raise FileExistsError(f"/dev/{devname} is not a character "
                                  "device: its mode is left alone")
        # An O_PATH descriptor has no fchmod(); its /proc link is the
        # inode itself (what fchmodat(AT_SYMLINK_NOFOLLOW) does in glibc).
        os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)
    return True


def _notify_systemd(message: str) -> None:
    """sd_notify, if systemd started us; a lost datagram costs a status
    line, never the daemon."""
    try:
        sdnotify.notify(message)
    except OSError as e:
        log.warning("cannot notify systemd (%s): %s",
                    message.split("=", 1)[0], e)


def _open_urandom() -> Optional[int]:
    """/dev/urandom, opened once: the reseed runs right after a restore,
    where every code path touched for the first time costs."""
    try:
        return os.open("/dev/urandom", os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        log.warning("cannot open /dev/urandom (no reseed of the kernel "
                    "RNG on a hardware change): %s", e)
        return None


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
