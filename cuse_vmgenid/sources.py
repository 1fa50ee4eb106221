# SPDX-License-Identifier: MIT
"""Where changes of generation come from (docs/interface.rst, same title):
a ladder of tiers, best first; `--source auto` takes the first that works.

A GUID source reads the GUID, and the publisher (publisher.py) compares
it with the last one published: one bump per new GUID, however many hints
arrive and whoever reads it first (the daemon, or the source's GUID poll
thread).  A source without a GUID answers "did the generation change?"
itself.  Each says which fds hint that it is worth looking now.  The
kernel-log tier (kernellog.py) has no GUID: each kernel VM fork record is
one change.  Without any tier
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
from .unseen import unseen
from .vmclockdevice import VmclockUnavailable, open_kernel_device

log = logging.getLogger(__name__)

# The tiers, best first (docs/interface.rst, "Where changes come from").
TIERS = ("fwcfg", "acpi", "vmclock", "kernel-log")
SOURCE_CHOICES = ("auto", *TIERS, "none")


class NoSource:
    """No tier: every hint and every restart is taken as a change."""
    name = "none"
    has_guid = False
    poll_interval: Optional[float] = None
    kmsg_seq: Optional[int] = None
    vmclock_counter: Optional[int] = None   # VmclockSource's alone
    change_note: Optional[str] = None
    # A change this tier sees is one the kernel did not reseed its RNG
    # for: the daemon reseeds it (publisher.change()).  Not without a tier
    # (a hint is no hardware change); the GUID tier reseeds with the GUID.
    daemon_reseeds = False

    def __init__(self, why: str):
        # What the log, the status file and `vmgenid status` say.
        self.unseen = unseen(why)

    def changed(self, known_guid: Optional[str]) -> tuple[bool, Optional[str]]:
        """(did the hardware generation change?, the GUID now)."""
        return True, None

    def changed_since(self, saved) -> tuple[bool, Optional[str]]:
        """At start: did a change happen while the daemon was down?"""
        return True, None

    def guid_bytes(self) -> Optional[bytes]:
        return None

    def publish_to(self, publisher) -> None:
        """Only a GUID source has a thread that publishes."""

    def hint_fds(self) -> list[int]:
        return []

    def take_hint(self, fd: int) -> Optional[Hint]:
        return None

    def close(self) -> None:
        pass


class GuidWatcher:
    """The hypervisor's GUID in guest memory, watched by the GUID poll
    thread (which reads the kernel log too, and publishes).  Without that
    thread there is no GUID tier: the ladder goes on to the next."""
    has_guid = True
    poll_interval: Optional[float] = None
    kmsg_seq: Optional[int] = None
    vmclock_counter: Optional[int] = None
    change_note: Optional[str] = None
    daemon_reseeds = False      # the publisher reseeds with the GUID
    unseen: Optional[str] = None

    def __init__(self, guid: GuidSource, kmsg: Optional[KmsgReader],
                 poll_interval_ms: int):
        """GuidUnavailable if the GUID poll thread cannot start."""
        self._guid = guid
        self._kmsg = kmsg
        self._last_read: Optional[bytes] = None
        self.name = guid.name
        try:
            self._poller = GuidPoller(guid.view(), poll_interval_ms,
                                      kmsg.fileno() if kmsg else -1)
        except OSError as e:
            raise GuidUnavailable(f"cannot start the GUID poll thread: "
                                  f"{e.strerror}") from None

    def read_guid(self) -> Optional[bytes]:
        """The GUID now, or None if it cannot be read (the daemon then
        bumps: a missed change would be a security bug)."""
        try:
            self._last_read = self._guid.read_bytes()
        except OSError as e:
            self._last_read = None
            log.error("cannot read the GUID: %s", e)
        return self._last_read

    def changed_since(self, saved) -> tuple[bool, Optional[str]]:
        """At start: whether the GUID differs from the saved one, and the
        GUID now (None: unreadable, which counts as a change)."""
        now = self.read_guid()
        if now is None:
            return True, None
        return guid_string(now) != (saved.guid if saved else None), \
            guid_string(now)

    def guid_bytes(self) -> Optional[bytes]:
        """The bytes of the last read."""
        return self._last_read

    def publish_to(self, publisher) -> None:
        """Let the poll thread publish through publisher (None: no
        longer)."""
        self._poller.publish_to(publisher)

    def hint_fds(self) -> list[int]:
        return [self._poller.fileno()]  # it reads the kernel log too

    def take_hint(self, fd: int) -> Optional[Hint]:
        """Why to look at the GUID now, or None."""
        if not self._poller.take():
            return None
        if self._poller.take_kernel_log():
            return Hint(KERNEL_LOG_HINT + " (read by the GUID poll "
                        "thread)", kernel_reseeded=True)
        return Hint("GUID poll thread")

    def close(self) -> None:
        """The poll thread first: it reads the mapping closed last."""
        self._poller.close()
        if self._kmsg:
            self._kmsg.close()
        self._guid.close()


def _guid_tier(name: str) -> Callable[[int], GuidWatcher]:
    def open_tier(poll_interval_ms: int) -> GuidWatcher:
        guid = discover(name)
        try:
            kmsg = KmsgReader()
        except OSError as e:
            kmsg = None
            log.warning("no kernel log hint (%s): relying on the %d ms "
                        "poll", e, poll_interval_ms)
        try:
            watcher = GuidWatcher(guid, kmsg, poll_interval_ms)
        except GuidUnavailable:
            if kmsg:
                kmsg.close()
            guid.close()
            raise
        log.info("GUID source: %s", guid.describe())
        return watcher
    return open_tier


def _kernel_log_tier(poll_interval_ms: int):
    source = kernellog.open_tier()
    log.info("source: %s", source.describe())
    return source


class VmclockSource(NoSource):
    """The kernel's own VMClock device (vmclockdevice.py): one change per
    new vm_generation_counter, read under the seqlock.  Like NoSource it
    has no GUID (no thread that publishes), but it answers whether the
    generation changed.  The kernel's driver (ptp_vmclock) does not
    reseed the kernel RNG on a change: the daemon does, before anyone
    wakes (daemon_reseeds).

    A new disruption_marker alone (a live migration: the clock moved, the
    guest's memory did not fork) is not a change of generation, as the ABI
    says; only vm_generation_counter counts."""
    name = "vmclock"
    unseen: Optional[str] = None
    daemon_reseeds = True

    def __init__(self, device, poll_interval_ms: int):
        self._device = device
        first = device.read()
        self.notifies = first.notification_present
        if self.notifies:
            device.acknowledge()    # poll() then waits for what is new
        # Notified: the device's poll() is the wait; else the interval.
        self.poll_interval: Optional[float] = (
            None if self.notifies else poll_interval_ms / 1000.0)
        # The counter the last change (or the start) was made for.
        self._known: Optional[int] = first.vm_generation_counter
        self._marker = first.disruption_marker
        self._unreadable = False

    @property
    def vmclock_counter(self) -> Optional[int]:
        """For the state file: what a restart compares with."""
        return self._known

    def changed_since(self, saved) -> tuple[bool, Optional[str]]:
        """Compared with the counter the state file kept (None: unknown,
        so a restart in the same boot bumps once)."""
        self._known = saved.vmclock_counter if saved is not None else None
        return self.changed(None)

    def changed(self, known_guid: Optional[str]) -> tuple[bool, Optional[str]]:
        """(did vm_generation_counter change since the last change?, None).
        Unreadable (a count held odd, the magic or the flag gone) is taken
        as a change once, as an unreadable GUID is; the next good read is
        compared with the last good one."""
        try:
            now = self._device.read()
            if not now.generation_present:
                raise VmclockUnavailable(f"{self._device.path}: the "
                                         "generation counter flag is gone")
        except VmclockUnavailable as e:
            if self._unreadable:
                return False, None
            self._unreadable = True
            log.error("cannot read the VMClock generation counter: %s", e)
            return True, None
        self._unreadable = False
        if now.disruption_marker != self._marker:
            self._marker = now.disruption_marker
            log.info("VMClock: clock disrupted (disruption_marker changed)")
        if now.vm_generation_counter == self._known:
            return False, None
        log.info("VMClock: vm_generation_counter %s -> %d", self._known,
                 now.vm_generation_counter)
        self._known = now.vm_generation_counter
        return True, None

    def hint_fds(self) -> list[int]:
        return [self._device.fileno()] if self.notifies else []

    def take_hint(self, fd: int) -> Optional[Hint]:
        """The device notified an update: read it, so that poll() waits
        for the next one, and look."""
        self._device.acknowledge()
        return Hint("VMClock notification")

    def close(self) -> None:
        self._device.close()


def _vmclock_tier(poll_interval_ms: int) -> VmclockSource:
    """VmclockUnavailable says why not."""
    device = open_kernel_device()
    try:
        source = VmclockSource(device, poll_interval_ms)
    except VmclockUnavailable:
        device.close()
        raise
    log.info("VMClock source: %s, %s", device.path,
             "notified (poll)" if source.notifies
             else f"no notifications: looking every {poll_interval_ms} ms")
    return source


TIER_OPENERS = {"fwcfg": _guid_tier("fwcfg"), "acpi": _guid_tier("acpi"),
                "vmclock": _vmclock_tier, "kernel-log": _kernel_log_tier}


def open_source(choice: str, poll_interval_ms: int):
    """The first tier that works of those @choice allows (auto: all, best
    first), with one log line per tier skipped and why; `none` (loudly)
    if none works."""
    if choice == "none":
        source = NoSource("--source none was asked for")
        log.warning("source tier none: %s", source.unseen)
        return source
    skipped = []
    for name in TIERS:
        if choice not in ("auto", name):
            continue
        try:
            source = TIER_OPENERS[name](poll_interval_ms)
        except (GuidUnavailable, VmclockUnavailable,
                kernellog.TierUnavailable) as e:
            # Normal where the hypervisor has no such device: INFO.  If
            # no tier works, the error below repeats every reason.
            log.info("source tier %s skipped: %s", name, e)
            skipped.append(f"{name}: {e}")
            continue
        log.info("source tier %s (--source %s)", name, choice)
        return source
    source = NoSource("; ".join(skipped))
    log.error("source tier none (--source %s): %s; every hint and every "
              "restart bumps", choice, source.unseen)
    return source
