# SPDX-License-Identifier: MIT
"""The kernel-log tier (docs/interface.rst, "Where changes come from", (c)): no GUID
to read (kernel lockdown closes /dev/mem; an ADDR form not read), but the
kernel's own vmgenid driver is bound to the device, and on every GUID
change it has random.c log "crng reseeded due to virtual machine fork",
after its own compare of the old and the new GUID.  So each such kernel
record is exactly one change: one bump per record.

The record rule (which record is a change) is C's, native/shim/kmsg.c,
in one place for both its users: the poll thread (guidpoll.RecordPoller),
which reads /dev/kmsg while the daemon serves and publishes each change
the moment it reads it (publisher.c: state file, page, replies), then
wakes the daemon to log it; and the restart rule below, here in Python.

Restart rule: the state file keeps the sequence number of the last record
applied.  A restarted daemon reads /dev/kmsg from the oldest record the
ring holds, and bumps once if a record newer than that one is the kernel's
VM fork record, or if records after it are gone (the ring overwrote them:
one of them may have been a change).  A new boot's records are history:
the counter starts at 0 there anyway.
"""

import glob
import logging
import os
from typing import Iterable, Optional

from ._cuse import ffi, lib
from .guid.kmsg import DEV_KMSG, VMFORK_LINE, KmsgReader
from .guidpoll import RecordPoller
from .unseen import unseen

log = logging.getLogger(__name__)

DRIVERS = "/sys/bus/*/drivers/vmgenid"
# In a driver's folder, everything but the bound devices' links.
DRIVER_FILES = frozenset({"bind", "unbind", "uevent", "module", "new_id",
                          "remove_id"})


class TierUnavailable(Exception):
    """The kernel-log tier cannot serve here: the message says why."""


def bound_devices(drivers: str = DRIVERS) -> list[str]:
    """The devices the kernel's vmgenid driver is bound to, as
    "bus/name": an ACPI driver on 5.18-6.9, a platform driver from 6.10."""
    found = []
    for folder in sorted(glob.glob(drivers)):
        bus = folder.split(os.sep)[-3]
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        found += [f"{bus}/{name}" for name in names
                  if name not in DRIVER_FILES
                  and os.path.islink(os.path.join(folder, name))]
    return found


class RecordCounter:
    """Which /dev/kmsg records are changes not applied yet: the rule of
    native/shim/kmsg.c, with the reasons for the log.

    @applied: the sequence number of the last record accounted for, or
    None (a new boot: the first record fed starts the count, as history).
    """

    def __init__(self, applied: Optional[int]):
        if applied is not None and applied < 0:
            raise ValueError(f"record {applied}")
        self._records = ffi.new("struct vmgenid_kmsg_records *",
                                {"applied": -1 if applied is None
                                 else applied})

    @property
    def applied(self) -> Optional[int]:
        applied = self._records.applied
        return None if applied < 0 else applied

    def feed(self, record: bytes) -> Optional[str]:
        """Why @record makes one bump, or None."""
        before = self._records.applied
        change = lib.vmgenid_kmsg_feed(self._records, record, len(record))
        if change == lib.VMGENID_KMSG_VMFORK:
            return record_note(self._records.applied)
        if change == lib.VMGENID_KMSG_LOST:
            return (f"the kernel log lost records {before + 1}-"
                    f"{self._records.applied - 1} before the daemon read "
                    "them (one may have been a change)")
        return None

    def missed(self, records: Iterable[bytes]) -> list[str]:
        """The reasons @records give, in order (each one bump when live;
        at a restart, any of them makes one)."""
        return [why for why in map(self.feed, records) if why]


def record_note(seq: int) -> str:
    return f"kernel log record {seq}: {VMFORK_LINE.decode()}"


def thread_note(publication) -> str:
    """Why the thread published (a publisher.Publication), for the log."""
    if publication.lost:
        why = ("kernel log records lost before the thread read them (one "
               "may have been a change)")
    else:
        why = record_note(publication.kmsg_seq)
    if publication.records > 1:
        why += (f", {publication.records} records up to "
                f"{publication.kmsg_seq}")
    return f"{why} ({publication.by_the_thread()})"


class KernelLogSource:
    """Changes from the kernel's own records; no GUID."""
    name = "kernel-log"
    poll_interval: Optional[float] = None
    has_guid = False
    vmclock_counter: Optional[int] = None
    daemon_reseeds = False      # the kernel's driver reseeded (its line)

    def __init__(self, reader: KmsgReader, devices: list[str]):
        self._reader = reader
        self.devices = devices
        self._counter = RecordCounter(None)
        self._thread: Optional[RecordPoller] = None
        self.change_note: Optional[str] = None   # why the last change
        self.unseen: Optional[str] = None

    @property
    def kmsg_seq(self) -> Optional[int]:
        """The state file's record of what was applied."""
        if self._thread is not None:
            return self._thread.kmsg_seq
        return self._counter.applied

    def _records(self):
        while (record := self._reader.read_record()) is not None:
            yield record

    def changed_since(self, saved) -> tuple[bool, Optional[str]]:
        """At start (@saved: this boot's saved state, or None): whether a
        change happened while the daemon was down (the restart rule)."""
        if saved is None:
            self._counter.missed(self._records())   # history
            return False, None
        if saved.kmsg_seq is None:
            self._counter.missed(self._records())
            self.change_note = ("no kernel log position saved (a state "
                                "file of another tier or version)")
            return True, None
        self._counter = RecordCounter(saved.kmsg_seq)
        missed = self._counter.missed(self._records())
        if not missed:
            return False, None
        more = f" and {len(missed) - 1} more" if len(missed) > 1 else ""
        self.change_note = f"{missed[0]}{more}, after record {saved.kmsg_seq}"
        return True, None

    def changed(self, known_guid: Optional[str]
                ) -> tuple[bool, Optional[str]]:
        """A hint (a signal): nothing to look at here, the thread reads
        every record as it comes and publishes the changes itself."""
        return False, None

    def guid_bytes(self) -> Optional[bytes]:
        return None

    def publish_to(self, publisher) -> None:
        """From the records after those changed_since() read on, each
        change is published by publisher, from the thread (None: the
        thread reads no more; those left stay for the restart rule).
        OSError if the thread cannot start."""
        if publisher is None:
            if self._thread is not None:
                self._thread.publish_to(None)
        elif self._thread is None:
            self._thread = RecordPoller(publisher, self._counter.applied,
                                        self._reader.fileno())

    def hint_fds(self) -> list[int]:
        return [] if self._thread is None else [self._thread.fileno()]

    def take_hint(self, fd: int) -> None:
        """The thread published (the daemon takes that from the
        publisher), or it could not read the kernel log."""
        self._thread.take()
        err = self._thread.kmsg_error()
        if err and self.unseen is None:
            self.unseen = unseen(f"cannot read {DEV_KMSG}: "
                                 f"{os.strerror(err)}")
            log.error("%s", self.unseen)
        return None

    def describe(self) -> str:
        return (f"kernel-log: the kernel's vmgenid driver is bound to "
                f"{', '.join(self.devices)}; one bump per kernel record "
                f"{VMFORK_LINE.decode()!r} in {DEV_KMSG}")

    def close(self) -> None:
        """The thread first: it reads the fd closed next."""
        if self._thread is not None:
            self._thread.close()
        self._reader.close()


def open_tier(drivers: str = DRIVERS, kmsg: str = DEV_KMSG
              ) -> KernelLogSource:
    """The kernel-log tier, or TierUnavailable saying why not."""
    devices = bound_devices(drivers)
    if not devices:
        raise TierUnavailable(
            "the kernel's vmgenid driver is bound to no device (a kernel "
            "before 5.18 or without CONFIG_VMGENID, or no VM Generation ID "
            "device)")
    try:
        reader = KmsgReader(kmsg, from_start=True)
    except OSError as e:
        raise TierUnavailable(f"cannot read {kmsg}: {e.strerror}") from None
    return KernelLogSource(reader, devices)
