# SPDX-License-Identifier: MIT
"""The kernel-log tier (docs/interface.rst, "Where changes come from", (c)): no GUID
to read (kernel lockdown closes /dev/mem; an ADDR form not read), but the
kernel's own vmgenid driver is bound to the device, and on every GUID
change it has random.c log "crng reseeded due to virtual machine fork",
after its own compare of the old and the new GUID.  So each such kernel
record is exactly one change: one bump per record.

The daemon's main loop wakes on /dev/kmsg (POLLIN), reads the record and
bumps through the publisher (publisher.py), like every bump.  The C GUID
poll thread needs a GUID to compare and has none here; the kernel has
already compared, so all that is left is a read of one record, and the
bump.

Restart rule: the state file keeps the sequence number of the last record
applied.  A restarted daemon reads /dev/kmsg from the oldest record the
ring holds, and bumps once if a record newer than that one is the kernel's
VM fork record, or if records after it are gone (the ring overwrote them:
one of them may have been a change).  A new boot's records are history:
the counter starts at 0 there anyway.
"""

import glob
import os
from typing import Iterable, Optional

from .guid.kmsg import DEV_KMSG, MARKER, KmsgReader, parse_record
from .hint import Hint

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
    """Which /dev/kmsg records are changes not applied yet: pure.

    @applied: the sequence number of the last record accounted for, or
    None (a new boot: the first record fed starts the count, as history).
    """

    def __init__(self, applied: Optional[int]):
        self.applied = applied

    def feed(self, record: bytes) -> Optional[str]:
        """Why @record makes one bump, or None."""
        parsed = parse_record(record)
        if parsed is None:
            return None
        seq, vmfork = parsed
        if self.applied is not None and seq <= self.applied:
            return None             # read before, or older than the start
        lost = None
        if self.applied is not None and seq > self.applied + 1:
            lost = (self.applied + 1, seq - 1)
        self.applied = seq
        if vmfork:
            return f"kernel log record {seq}: {MARKER.decode()}"
        if lost:
            return (f"the kernel log lost records {lost[0]}-{lost[1]} "
                    "before the daemon read them (one may have been a "
                    "change)")
        return None

    def missed(self, records: Iterable[bytes]) -> list[str]:
        """The reasons @records give, in order (each one bump when live;
        at a restart, any of them makes one)."""
        return [why for why in map(self.feed, records) if why]


class KernelLogSource:
    """Changes from the kernel's own records; no GUID."""
    name = "kernel-log"
    poll_interval: Optional[float] = None
    has_guid = False
    unseen: Optional[str] = None
    vmclock_counter: Optional[int] = None

    def __init__(self, reader: KmsgReader, devices: list[str]):
        self._reader = reader
        self.devices = devices
        self._counter = RecordCounter(None)
        self.change_note: Optional[str] = None   # why the last change

    @property
    def kmsg_seq(self) -> Optional[int]:
        """The state file's record of what was applied."""
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
        """Whether the next pending record is a change: at most one per
        call, so each record is one bump (later ones keep the fd
        readable, and the loop comes back)."""
        for record in self._records():
            why = self._counter.feed(record)
            if why:
                self.change_note = why
                return True, None
        return False, None

    def guid_bytes(self) -> Optional[bytes]:
        return None

    def publish_to(self, publisher) -> None:
        """No thread here: the daemon publishes each record's bump."""

    def hint_fds(self) -> list[int]:
        return [self._reader.fileno()]

    def take_hint(self, fd: int) -> Hint:
        """/dev/kmsg is readable: changed() reads what came."""
        return Hint(f"{DEV_KMSG} readable", kernel_reseeded=True)

    def describe(self) -> str:
        return (f"kernel-log: the kernel's vmgenid driver is bound to "
                f"{', '.join(self.devices)}; one bump per kernel record "
                f"{MARKER.decode()!r} in {DEV_KMSG}")

    def close(self) -> None:
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
