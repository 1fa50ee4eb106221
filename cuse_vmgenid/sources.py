"""Where changes of generation come from (docs/interface.rst, same title):
a ladder of tiers, best first; `--source auto` takes the first that works.

A source answers one question, "did the hardware generation change since
this GUID?", and says which fds hint that it is worth asking now.  The
daemon asks on every hint and every poll interval and bumps once per new
GUID, however many hints arrive.  The kernel-log tier (kernellog.py) has
no GUID: each kernel VM fork record is one change.  Without any tier
(`none`) every hint is taken as a change, and hardware changes are not
seen at all: the log, the status file and `vmgenid status` say so.
"""

import logging
from typing import Callable, Optional

from . import kernellog
from .guid import GuidSource, GuidUnavailable, KmsgReader, discover
from .guid.memory import guid_string
from .guidpoll import GuidPoller
from .hint import KERNEL_LOG_HINT, Hint

log = logging.getLogger(__name__)

# The tiers, best first.  VMClock's tier (SPEC.md's (b)) goes between the
# GUID in memory and the kernel log.
TIERS = ("fwcfg", "acpi", "kernel-log")
SOURCE_CHOICES = ("auto", *TIERS, "none")
UNSEEN = "HARDWARE CHANGES WILL NOT BE SEEN (snapshot restores, clones)"


class NoSource:
    """No tier: every hint and every restart is taken as a change."""
    name = "none"
    poll_interval: Optional[float] = None
    kmsg_seq: Optional[int] = None
    change_note: Optional[str] = None

    def __init__(self, why: str):
        # What the log, the status file and `vmgenid status` say.
        self.unseen = f"{UNSEEN}: {why}"

    def changed(self, known_guid: Optional[str]) -> tuple[bool, Optional[str]]:
        """(did the hardware generation change?, the GUID now)."""
        return True, None

    def changed_since(self, saved) -> tuple[bool, Optional[str]]:
        """At start: did a change happen while the daemon was down?"""
        return True, None

    def guid_bytes(self) -> Optional[bytes]:
        return None

    def rng_reseeded_with(self, guid: bytes) -> bool:
        return False

    @property
    def fires_bumps(self) -> bool:
        """Whether a thread of this source can fire an armed bump."""
        return False

    def fire(self, armed) -> None:
        pass

    def hint_fds(self) -> list[int]:
        return []

    def take_hint(self, fd: int) -> Optional[Hint]:
        return None

    def close(self) -> None:
        pass


class GuidWatcher:
    """The hypervisor's GUID in guest memory, watched by the GUID poll
    thread (which reads the kernel log too, and fires the armed bump); the
    daemon's own kernel log reader and periodic look only when that thread
    could not start."""
    kmsg_seq: Optional[int] = None
    change_note: Optional[str] = None
    unseen: Optional[str] = None

    def __init__(self, guid: GuidSource, kmsg: Optional[KmsgReader],
                 poll_interval_ms: int, rng_fd: int = -1):
        self._guid = guid
        self._kmsg = kmsg
        self._last_read: Optional[bytes] = None
        self.name = guid.name
        self.poll_interval: Optional[float] = None
        try:
            self._poller: Optional[GuidPoller] = GuidPoller(
                guid.view(), poll_interval_ms, rng_fd,
                kmsg.fileno() if kmsg else -1)
        except OSError as e:
            self._poller = None
            self.poll_interval = poll_interval_ms / 1000.0
            log.warning("no GUID poll thread (%s): looking every %d ms "
                        "from the main loop", e, poll_interval_ms)

    def changed(self, known_guid: Optional[str]) -> tuple[bool, Optional[str]]:
        try:
            self._last_read = self._guid.read_bytes()
        except OSError as e:
            # Unreadable: a missed change would be a security bug.
            self._last_read = None
            log.error("cannot read the GUID: %s", e)
            return True, None
        now = guid_string(self._last_read)
        return now != known_guid, now

    def changed_since(self, saved) -> tuple[bool, Optional[str]]:
        return self.changed(saved.guid if saved else None)

    def guid_bytes(self) -> Optional[bytes]:
        """The bytes behind changed()'s last answer: the RNG is reseeded
        with the GUID that made the bump, read once after a restore."""
        return self._last_read

    def rng_reseeded_with(self, guid: bytes) -> bool:
        """Whether the poll thread already reseeded the RNG with guid."""
        return self._poller is not None and self._poller.reseeded(guid)

    @property
    def fires_bumps(self) -> bool:
        return self._poller is not None

    def fire(self, armed) -> None:
        """Let the poll thread fire @armed (None: no longer)."""
        if self._poller is not None:
            self._poller.fire(armed)

    def hint_fds(self) -> list[int]:
        if self._poller:
            return [self._poller.fileno()]  # it reads the kernel log too
        return [self._kmsg.fileno()] if self._kmsg else []

    def take_hint(self, fd: int) -> Optional[Hint]:
        """Why to look at the GUID now, or None for kernel log chatter."""
        if self._poller and fd == self._poller.fileno():
            if not self._poller.take():
                return None
            if self._poller.take_kernel_log():
                return Hint(KERNEL_LOG_HINT + " (read by the GUID poll "
                            "thread)", kernel_reseeded=True)
            return Hint("GUID poll thread")
        if self._kmsg and self._kmsg.drain():
            return Hint(KERNEL_LOG_HINT, kernel_reseeded=True)
        return None

    def close(self) -> None:
        """The poll thread first: it reads the mapping closed last."""
        if self._poller:
            self._poller.close()
        if self._kmsg:
            self._kmsg.close()
        self._guid.close()


def _guid_tier(name: str) -> Callable[[int, int], GuidWatcher]:
    def open_tier(poll_interval_ms: int, rng_fd: int) -> GuidWatcher:
        guid = discover(name)
        try:
            kmsg = KmsgReader()
        except OSError as e:
            kmsg = None
            log.warning("no kernel log hint (%s): relying on the %d ms "
                        "poll", e, poll_interval_ms)
        log.info("GUID source: %s", guid.describe())
        return GuidWatcher(guid, kmsg, poll_interval_ms, rng_fd)
    return open_tier


def _kernel_log_tier(poll_interval_ms: int, rng_fd: int):
    source = kernellog.open_tier()
    log.info("source: %s", source.describe())
    return source


TIER_OPENERS = {"fwcfg": _guid_tier("fwcfg"), "acpi": _guid_tier("acpi"),
                "kernel-log": _kernel_log_tier}


def open_source(choice: str, poll_interval_ms: int, rng_fd: int = -1):
    """The first tier that works of those @choice allows (auto: all, best
    first), with one log line per tier skipped and why; `none` (loudly)
    if none works.  rng_fd: /dev/urandom, for the poll thread to reseed
    the RNG with."""
    if choice == "none":
        source = NoSource("--source none was asked for")
        log.warning("source tier none: %s", source.unseen)
        return source
    skipped = []
    for name in TIERS:
        if choice not in ("auto", name):
            continue
        try:
            source = TIER_OPENERS[name](poll_interval_ms, rng_fd)
        except (GuidUnavailable, kernellog.TierUnavailable) as e:
            log.warning("source tier %s skipped: %s", name, e)
            skipped.append(f"{name}: {e}")
            continue
        log.info("source tier %s (--source %s)", name, choice)
        return source
    source = NoSource("; ".join(skipped))
    log.error("source tier none (--source %s): %s; every hint and every "
              "restart bumps", choice, source.unseen)
    return source
