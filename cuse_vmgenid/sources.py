"""Where changes of generation come from (docs/interface.rst, same title).

A source answers one question, "did the hardware generation change since
this GUID?", and says which fds hint that it is worth asking now.  The
daemon asks on every hint and every poll interval and bumps once per new
GUID, however many hints arrive.  Without a GUID (`--source none`) every
hint is taken as a change.
"""

import logging
from typing import NamedTuple, Optional

from .guid import GuidSource, GuidUnavailable, KmsgReader, discover
from .guid.kmsg import MARKER
from .guid.memory import guid_string
from .guidpoll import GuidPoller

log = logging.getLogger(__name__)

SOURCE_CHOICES = ("auto", "fwcfg", "acpi", "none")
# The kernel's own words: one copy, in guid/kmsg.py.
KERNEL_LOG_HINT = f"kernel log: {MARKER.decode()}"


class Hint(NamedTuple):
    why: str
    # The kernel's own driver already mixed the GUID into its RNG and
    # reseeded it (its log line says so): the daemon need not again.
    kernel_reseeded: bool = False


class NoSource:
    """No GUID: every hint and every restart is taken as a change."""
    name = "none"
    poll_interval: Optional[float] = None

    def changed(self, known_guid: Optional[str]) -> tuple[bool, Optional[str]]:
        """(did the hardware generation change?, the GUID now)."""
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


def open_source(choice: str, poll_interval_ms: int, rng_fd: int = -1):
    """The source asked for; `none` with the reason logged if it fails.
    rng_fd: /dev/urandom, for the poll thread to reseed the RNG with."""
    if choice == "none":
        return NoSource()
    try:
        guid = discover(choice)
    except GuidUnavailable as e:
        log.warning("no GUID source (%s): %s; serving with --source none "
                    "(every hint and every restart bumps)", choice, e)
        return NoSource()
    try:
        kmsg = KmsgReader()
    except OSError as e:
        kmsg = None
        log.warning("no kernel log hint (%s): relying on the %d ms poll",
                    e, poll_interval_ms)
    log.info("GUID source: %s", guid.describe())
    return GuidWatcher(guid, kmsg, poll_interval_ms, rng_fd)
