# SPDX-License-Identifier: MIT
"""Which /dev/kmsg record is the kernel's VM fork record, as the GUID poll
thread parses it (kmsg.parse_record, native/shim/kmsg.c): for the host
tests, the guest tests and the restore scenarios."""

from cuse_vmgenid.sources.kmsg import parse_record


def is_vmfork_record(record: bytes) -> bool:
    """The kernel's own record whose whole text is kmsg.VMFORK_LINE."""
    parsed = parse_record(record)
    return parsed is not None and parsed[1]
