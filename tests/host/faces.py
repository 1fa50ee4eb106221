# SPDX-License-Identifier: MIT
"""The faces of the publisher and the state file that only tests use: the
daemon's transport.c registers, cancels and aborts blocked reads in C,
and the publisher alone commits the state file."""

from typing import Optional

from cuse_vmgenid._cuse import ffi, lib
from cuse_vmgenid.device.publisher import Publisher
from cuse_vmgenid.device.statefile import StateFile
from cuse_vmgenid.device.errors import check


class TestPublisher(Publisher):
    """replies: a `struct vmgenid_reply_ops *` standing in for libfuse's;
    it must outlive the publisher."""
    __test__ = False    # not a pytest class

    def __init__(self, *args, replies, **kwargs):
        self._replies = replies
        super().__init__(*args, **kwargs)

    def _reply_ops(self):
        return self._replies

    def published_counter(self) -> int:
        """The counter published now (what the state machine adopts)."""
        return lib.vmgenid_publisher_settle(self.c_handle)

    def wait(self, req, token: int, seen: int) -> None:
        """A read blocks at seen: the next publication answers it (or this
        call, if one came since).  MemoryError if it cannot be kept."""
        if lib.vmgenid_publisher_wait(self.c_handle, req, token, seen) < 0:
            raise MemoryError("blocked read")

    def cancel(self, token: int, err: int) -> bool:
        """Answer the read waiting as token with err; False if none."""
        return bool(lib.vmgenid_publisher_cancel(self.c_handle, token, err))

    def abort(self, err: int) -> int:
        """Answer every blocked read with err; how many."""
        return lib.vmgenid_publisher_abort(self.c_handle, err)


def save_state(state_file: StateFile, counter: int, guid: Optional[str],
               kmsg_seq: Optional[int] = None,
               vmclock_counter: Optional[int] = None) -> bool:
    """Commit (counter, guid, kmsg_seq, vmclock_counter) for this boot, as
    the publisher does; False if the file held exactly that already."""
    state_file.set_vmclock(vmclock_counter)
    return check(lib.vmgenid_statefile_save(
        state_file.c_handle, counter,
        ffi.NULL if guid is None else guid.encode(),
        -1 if kmsg_seq is None else kmsg_seq), state_file.path,
        OSError) == 1


def stage_state(state_file: StateFile, counter: int, guid: Optional[str],
                kmsg_seq: Optional[int] = None) -> None:
    """Write (counter, guid, kmsg_seq) into the next commit's file now, as
    the publisher does after each publication: a commit of it, or of it
    with another GUID, then only overwrites what differs."""
    check(lib.vmgenid_statefile_stage(
        state_file.c_handle, counter,
        ffi.NULL if guid is None else guid.encode(),
        -1 if kmsg_seq is None else kmsg_seq), state_file.path, OSError)


class GuestMemory:
    """A file laid out as guest memory, the GUID at GUID_AT, for a GUID
    tier source mapping it as it maps /dev/mem."""
    GUID_AT = 0x1000

    def __init__(self, path, guid: bytes):
        self.path = path
        path.write_bytes(bytes(2 * self.GUID_AT))
        self.write(guid)

    def write(self, guid: bytes) -> None:
        """What the hypervisor does on a restore."""
        with open(self.path, "r+b") as f:
            f.seek(self.GUID_AT)
            f.write(guid)

    def source(self):
        """The fwcfg tier's source on it; its poll thread looks once a
        minute, so not during a test."""
        from cuse_vmgenid.sources.guid import GuidSource, map_guid
        return GuidSource(map_guid("fwcfg", self.GUID_AT, "test",
                                   str(self.path)), None, 60_000)
