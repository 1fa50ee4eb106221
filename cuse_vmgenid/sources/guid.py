# SPDX-License-Identifier: MIT
"""The GUID in guest memory: the source of the tiers fwcfg and acpi
(docs/interface.rst, "Where changes come from", 1), which differ only in
how they find its address (fwcfg.py, acpi.py).

The page holding the GUID is mapped from /dev/mem once (memory.py), so a
read is a 16-byte memory load.  A C thread (guidpoll.py) compares it at
once when the kernel logs its VM fork line, and publishes a new one
itself; the daemon is woken after.  Where the kernel logs every change
(kernellog.logs_every_change()) that is all it does, no timer: the event
path.  Elsewhere it also compares every interval: the poll path.  The
publisher reads the GUID itself, under its lock, whoever asks it to look
(the thread, the daemon), and compares it with the last one published:
one new GUID is one bump.  Without that thread there is no GUID tier: the
ladder goes on.
"""

import logging
import os
from typing import Optional

from .base import Change, Mark, Source, SourceUnavailable
from .guidpoll import GuidPoller
from .kernellog import logs_every_change
from .kmsg import DEV_KMSG, VMFORK_LINE, KmsgReader
from .memory import DEV_MEM, GuidMapping, guid_string

log = logging.getLogger(__name__)

# Why the thread woke the daemon, for the log.
KERNEL_LOG_HINT = f"kernel log: {VMFORK_LINE.decode()}"
POLL_THREAD = "GUID poll thread"


class MappedGuid:
    """The VM Generation ID at a known address, mapped for reading."""

    def __init__(self, name: str, address: int, origin: str,
                 mapping: GuidMapping):
        self.name = name          # "fwcfg" or "acpi": how it was found
        self.address = address    # guest-physical address of the GUID
        self.origin = origin      # how the address was read
        self._mapping = mapping

    def read(self) -> str:
        """The GUID now, spelled as QEMU's -device vmgenid,guid=."""
        return self._mapping.read()

    def read_bytes(self) -> bytes:
        """The 16 bytes as they are in memory."""
        return self._mapping.read_bytes()

    def view(self) -> memoryview:
        """The 16 bytes in memory, live (release it before close())."""
        return self._mapping.view()

    def describe(self) -> str:
        return (f"{self.name}: GUID at {self.address:#x} ({self.origin}), "
                f"mapped from {DEV_MEM} page {self._mapping.base:#x}")

    def close(self) -> None:
        self._mapping.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def map_guid(name: str, address: int, origin: str,
             dev_mem: str = DEV_MEM) -> MappedGuid:
    """The GUID at @address mapped; SourceUnavailable says why not."""
    return MappedGuid(name, address, origin, GuidMapping(address, dev_mem))


class GuidSource(Source):
    """The hypervisor's GUID in guest memory, watched by the GUID poll
    thread (which reads the kernel log too, and publishes)."""

    def __init__(self, guid: MappedGuid, kmsg: Optional[KmsgReader],
                 poll_interval_ms: int, kernel_tells: Optional[str] = None):
        """kernel_tells: why the kernel logs every change (with kmsg: the
        event path), or None.  SourceUnavailable if the GUID poll thread
        cannot start."""
        self._guid = guid
        self._live = guid.view()    # what a look hands the publisher
        self._kmsg = kmsg
        self._at_start: Optional[bytes] = None     # restart()'s read
        self._poll_interval_ms = poll_interval_ms
        self.name = guid.name
        event = kmsg is not None and kernel_tells is not None
        self.detection = "event" if event else "poll"
        # For the log.
        self.detection_why = (
            f"{kernel_tells}: it logs every change" if event else
            f"every {poll_interval_ms} ms: nothing tells of a change here")
        try:
            self._poller = GuidPoller(guid.view(), poll_interval_ms,
                                      kmsg.fileno() if kmsg else -1,
                                      kmsg_tells=event)
        except OSError as e:
            self._live.release()
            raise SourceUnavailable(f"cannot start the GUID poll thread: "
                                    f"{e.strerror}") from None

    def _look(self, kernel_reseeded: bool, seen_on: str = "") -> Change:
        """The publisher loads the GUID from the live page under its lock
        and compares it: a look copies nothing."""
        return Change(None, reseed=not kernel_reseeded, guid=self._live,
                      seen_on=seen_on)

    def fds(self) -> list[int]:
        return [self._poller.fileno()]   # it reads the kernel log too

    def ready(self, fd: int) -> Optional[Change]:
        """The thread woke us: it published a new GUID itself (the daemon
        takes that from the publisher), or the kernel logged its line;
        the publisher reads the GUID again and compares."""
        if not self._poller.take():
            return None
        err = self._poller.kmsg_error()
        if err and self.detection == "event":
            self.detection = "poll"
            self.detection_why = (f"every {self._poll_interval_ms} ms: "
                                  f"cannot read {DEV_KMSG}: "
                                  f"{os.strerror(err)}")
            log.error("GUID poll thread: %s", self.detection_why)
        if self._poller.take_kernel_log():
            # The kernel's driver mixed the GUID into its RNG and reseeded
            # it (its line says so): the publisher need not again.
            return self._look(True, f"{KERNEL_LOG_HINT} (read by the "
                              f"{POLL_THREAD})")
        return self._look(False, POLL_THREAD)

    def check(self) -> Optional[Change]:
        return self._look(False)

    def restart(self, saved) -> Optional[Change]:
        """A GUID other than the saved one is a change missed while the
        daemon was down.  (A read of the mapped page is a memory load: it
        cannot fail.)"""
        self._at_start = self._guid.read_bytes()
        if guid_string(self._at_start) != (saved.guid if saved else None):
            return Change(None)
        return None

    def mark(self) -> Mark:
        """The GUID read at start: the publisher's first to compare with
        (from then on it compares with the last one it published)."""
        return Mark(guid=self._at_start)

    def start(self, publisher) -> None:
        self._poller.publish_to(publisher)

    def stop(self) -> None:
        self._poller.publish_to(None)

    def published(self, publication) -> str:
        seen_on = KERNEL_LOG_HINT if publication.kernel_log else POLL_THREAD
        return (f"GUID changed (seen on {seen_on}; "
                f"{publication.by_the_thread()})")

    def close(self) -> None:
        """The poll thread first: it reads the mapping closed last."""
        self._poller.close()
        self._live.release()
        if self._kmsg:
            self._kmsg.close()
        self._guid.close()


def open_tier(guid: MappedGuid, poll_interval_ms: int) -> GuidSource:
    """The GUID tier of @guid (fwcfg.py's or acpi.py's mapped_guid()),
    which it then owns; SourceUnavailable says why not."""
    try:
        kmsg = KmsgReader()
    except OSError as e:
        kmsg = None
        log.warning("no kernel log hint (%s): relying on the %d ms "
                    "poll", e, poll_interval_ms)
    try:
        source = GuidSource(guid, kmsg, poll_interval_ms,
                            logs_every_change())
    except SourceUnavailable:
        if kmsg:
            kmsg.close()
        guid.close()
        raise
    log.info("GUID source: %s", guid.describe())
    log.info("GUID source: looked at on %s, %s", source.detection,
             source.detection_why)
    return source
