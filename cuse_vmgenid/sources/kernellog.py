# SPDX-License-Identifier: MIT
"""The tier kernel-log (docs/interface.rst, "Where changes come from",
3): no GUID to read (kernel lockdown closes /dev/mem; an ADDR form not
read), but the kernel's own vmgenid driver is bound to the device, and on
every GUID change it has random.c log "crng reseeded due to virtual
machine fork", after its own compare of the old and the new GUID.  So
each such kernel record is exactly one change: one bump per record.

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

from .._cuse import ffi, lib
from .base import Change, Mark, Source, SourceUnavailable, unseen
from .guidpoll import RecordPoller
from .kmsg import DEV_KMSG, VMFORK_LINE, KmsgReader

log = logging.getLogger(__name__)

DRIVERS = "/sys/bus/*/drivers/vmgenid"
# In a driver's folder, everything but the bound devices' links.
DRIVER_FILES = frozenset({"bind", "unbind", "uevent", "module", "new_id",
                          "remove_id"})


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


def logs_every_change(drivers: str = DRIVERS) -> Optional[str]:
    """Why the kernel logs its VM fork record on every change of the
    GUID here (the facts it exposes: its vmgenid driver bound to a device,
    its RNG initialized), or None.  Then the GUID tier needs no timer."""
    devices = bound_devices(drivers)
    if not devices:
        return None
    try:
        # random.c logs the record only once its RNG is initialized; from
        # then on getrandom() no longer blocks.
        os.getrandom(1, os.GRND_NONBLOCK)
    except BlockingIOError:
        return None
    return f"the kernel's vmgenid driver is bound to {', '.join(devices)}"


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


class KernelLogSource(Source):
    """Changes from the kernel's own records; no GUID.  The kernel's
    driver reseeded its RNG before it logged: no Change asks for a
    reseed."""
    name = "kernel-log"
    detection = "event"         # its thread waits on the records alone

    def __init__(self, reader: KmsgReader, devices: list[str]):
        self._reader = reader
        self.devices = devices
        self._counter = RecordCounter(None)
        self._thread: Optional[RecordPoller] = None

    def _records(self):
        while (record := self._reader.read_record()) is not None:
            yield record

    def restart(self, saved) -> Optional[Change]:
        """The restart rule (@saved: this boot's saved state, or None):
        a change if a record after the saved one is the kernel's VM fork
        record, or if records after it were lost."""
        try:
            if saved is None:
                self._counter.missed(self._records())   # history
                return None
            if saved.kmsg_seq is None:
                self._counter.missed(self._records())
                return Change("no kernel log position saved (a state file "
                              "of another tier or version)")
            self._counter = RecordCounter(saved.kmsg_seq)
            missed = self._counter.missed(self._records())
        except OSError as e:
            return Change(f"cannot read the kernel log: {e.strerror}")
        if not missed:
            return None
        more = f" and {len(missed) - 1} more" if len(missed) > 1 else ""
        return Change(f"{missed[0]}{more}, after record {saved.kmsg_seq}")

    def mark(self) -> Mark:
        """The last record accounted for: the thread's once it reads."""
        if self._thread is not None:
            return Mark(kmsg_seq=self._thread.kmsg_seq)
        return Mark(kmsg_seq=self._counter.applied)

    def start(self, publisher) -> None:
        """From the records after those restart() read on, each change is
        published by publisher, from the thread.  OSError if the thread
        cannot start."""
        if self._thread is None:
            self._thread = RecordPoller(publisher, self._counter.applied,
                                        self._reader.fileno())

    def stop(self) -> None:
        """The thread reads no more: the records left stay for the
        restart rule."""
        if self._thread is not None:
            self._thread.publish_to(None)

    def fds(self) -> list[int]:
        return [] if self._thread is None else [self._thread.fileno()]

    def ready(self, fd: int) -> Optional[Change]:
        """The thread published (the daemon takes that from the
        publisher), or it could not read the kernel log: a hint has
        nothing to look at here (check()), the thread reads every record
        as it comes."""
        self._thread.take()
        err = self._thread.kmsg_error()
        if err and self.unseen is None:
            self.unseen = unseen(f"cannot read {DEV_KMSG}: "
                                 f"{os.strerror(err)}")
            log.error("%s", self.unseen)
        return None

    def published(self, publication) -> str:
        return thread_note(publication)

    def close(self) -> None:
        """The thread first: it reads the fd closed next."""
        if self._thread is not None:
            self._thread.close()
        self._reader.close()


def open_tier(poll_interval_ms: int, drivers: str = DRIVERS,
              kmsg: str = DEV_KMSG) -> KernelLogSource:
    """The tier kernel-log (no interval: the thread waits on the kernel
    log), or SourceUnavailable saying why not."""
    devices = bound_devices(drivers)
    if not devices:
        raise SourceUnavailable(
            "the kernel's vmgenid driver is bound to no device (a kernel "
            "before 5.18 or without CONFIG_VMGENID, or no VM Generation ID "
            "device)")
    try:
        reader = KmsgReader(kmsg, from_start=True)
    except OSError as e:
        raise SourceUnavailable(f"cannot read {kmsg}: {e.strerror}") from None
    log.info("source: kernel-log: the kernel's vmgenid driver is bound to "
             "%s; one bump per kernel record %r in %s", ", ".join(devices),
             VMFORK_LINE.decode(), kmsg)
    return KernelLogSource(reader, devices)
