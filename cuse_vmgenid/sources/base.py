# SPDX-License-Identifier: MIT
"""What every change source is to the daemon (docs/design.rst, "Change
sources"): the interface, the change it reports, what it keeps for the
restart rule, and the one exception of a tier that cannot serve.

In the shape of chrony's refclock drivers (`RefclockDriver {init, fini,
poll}`): a tier's module has an `open(poll_interval_ms)` (init) that
returns a Source or raises SourceUnavailable; the Source registers its
own descriptors (fds()), says what one of them being ready means
(ready()), looks when asked (check()), judges a restart (restart()), says
what the state file keeps for the next one (mark()) and ends (close(),
fini).  The daemon never asks which tier it has: what differs is in the
Change a source returns.
"""

from typing import NamedTuple, Optional

# What a source says when hardware changes will not be seen: the one line
# the log, the status file and `vmgenid status` show (docs/interface.rst,
# "Where changes come from").
UNSEEN = "HARDWARE CHANGES WILL NOT BE SEEN (snapshot restores, clones)"


def unseen(why: str) -> str:
    return f"{UNSEEN}: {why}"


class SourceUnavailable(Exception):
    """This tier cannot serve here; reason says exactly why (no device,
    no /dev/mem, kernel lockdown, an ADDR form not read, no VMClock, the
    kernel's driver bound to nothing...).  The ladder logs it and tries
    the next tier."""

    @property
    def reason(self) -> str:
        return str(self)


class Change(NamedTuple):
    """What a source saw: a change of generation to publish.

    why: what the source saw, for the log (None: nothing more than the
    hint that made it look).  reseed: the kernel has not reseeded its RNG
    for this change, so the publisher does before anyone wakes (with the
    GUID if there is one, else with the CPU's random words and
    @generation).  guid: where the hardware's identity is, a live view of
    the hypervisor's page, if the tier has one: the publisher reads it
    under its lock and compares it with the last one published, so one
    new GUID is one bump whoever looks first (a copy read earlier could
    be older than what the poll thread published meanwhile: a restore can
    fall in between); a change without one is always published, and the
    last GUID is forgotten.  seen_on: what
    made the source look, when it was one of its own descriptors (ready()),
    for the log."""
    why: Optional[str]
    reseed: bool = False
    guid: Optional[memoryview] = None
    generation: int = 0
    seen_on: str = ""


class Mark(NamedTuple):
    """What the state file keeps of a source for the restart rule: the
    GUID published, the last kernel record accounted for, the VMClock
    counter; None where the tier has no such thing."""
    guid: Optional[bytes] = None
    kmsg_seq: Optional[int] = None
    vmclock_counter: Optional[int] = None


class Source:
    """A change source (a tier).  The defaults are those of a tier with
    nothing to watch; each tier's module overrides what it has."""
    name: str = ""
    # None, or the loud line (unseen()) when hardware changes will not be
    # seen: the status file and `vmgenid status` show it.
    unseen: Optional[str] = None
    # Seconds between looks (check()) when nothing would tell the daemon
    # of a change; None: never.
    interval: Optional[float] = None
    # How a change is seen, for the log and the status: "event" (something
    # tells: no periodic wake-up in any thread), "poll" (looked at every
    # --poll-interval-ms), None (not seen at all).
    detection: Optional[str] = None

    def fds(self) -> list[int]:
        """The descriptors the daemon's loop polls for this source."""
        return []

    def ready(self, fd: int) -> Optional[Change]:
        """One of fds() is readable: the change it tells of, or None."""
        return None

    def check(self) -> Optional[Change]:
        """Asked to look now (SIGUSR1, VMGENID_NOTIFY, the interval): the
        change, or None."""
        return None

    def restart(self, saved) -> Optional[Change]:
        """At start, with this boot's saved state (a statefile.SavedState,
        None on a new boot): the change that may have been missed while
        the daemon was down, or None.  Such a change is always published."""
        return None

    def mark(self) -> Mark:
        """What the state file keeps now, for the next restart()."""
        return Mark()

    def start(self, publisher) -> None:
        """From now on, publish the changes a thread of this source sees
        itself through publisher (device.publisher.Publisher)."""

    def stop(self) -> None:
        """No more publications from a thread (none under way when this
        returns)."""

    def published(self, publication) -> str:
        """Why this source's thread published (a publisher.Publication),
        for the log."""
        return publication.by_the_thread()

    def close(self) -> None:
        pass
