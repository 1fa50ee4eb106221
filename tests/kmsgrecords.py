# SPDX-License-Identifier: MIT
"""/dev/kmsg records as the GUID poll thread parses them (native/shim/
kmsg.c's vmgenid_kmsg_parse), for the host tests, the guest tests and the
restore scenarios: the package only feeds records to that C
(kernellog.RecordCounter, the poll thread) and never asks this."""

from cuse_vmgenid._cuse import ffi, lib


def parse_record(record: bytes) -> tuple[int, bool] | None:
    """(sequence number, is it the kernel's VM fork record?) of a record
    in /dev/kmsg's format "prio,seq,usec,flags;text" then optional
    " KEY=value" lines; None if it is not in that format."""
    seq = ffi.new("int64_t *")
    kind = lib.vmgenid_kmsg_parse(record, len(record), seq)
    return None if kind < 0 else (seq[0], kind == 1)


def is_vmfork_record(record: bytes) -> bool:
    """The kernel's own record whose whole text is kmsg.VMFORK_LINE."""
    parsed = parse_record(record)
    return parsed is not None and parsed[1]
