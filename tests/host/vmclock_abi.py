# SPDX-License-Identifier: MIT
"""struct vmclock_abi as the kernel's <linux/vmclock-abi.h> lays it out,
written independently of native/shim/vmclock_abi.h so that the host
tests check the daemon's C against the ABI, not against itself (the C
layout test, native/tests/vmclock-layout.c, checks the header against the
kernel's own)."""

import struct

MAGIC = 0x4B4C4356                  # "VCLK"
COUNTER_INVALID = 0xFF
STATUS_UNKNOWN = 0
FLAG_VM_GEN_COUNTER_PRESENT = 1 << 8
FLAG_NOTIFICATION_PRESENT = 1 << 9
SIZE = 112

# name: (offset, struct format), little-endian
FIELDS = {
    "magic": (0, "<I"), "size": (4, "<I"), "version": (8, "<H"),
    "counter_id": (10, "<B"), "time_type": (11, "<B"),
    "seq_count": (12, "<I"), "disruption_marker": (16, "<Q"),
    "flags": (24, "<Q"), "clock_status": (34, "<B"),
    "vm_generation_counter": (104, "<Q"),
}


def get(buf, name: str) -> int:
    offset, fmt = FIELDS[name]
    return struct.unpack_from(fmt, buf, offset)[0]


def put(buf, name: str, value: int) -> None:
    offset, fmt = FIELDS[name]
    struct.pack_into(fmt, buf, offset, value)


def device_page(counter: int = 0, flags: int = FLAG_VM_GEN_COUNTER_PRESENT,
                seq: int = 2, marker: int = 1) -> bytearray:
    """A page as a hypervisor's VMClock device would hold it."""
    page = bytearray(4096)
    for name, value in (("magic", MAGIC), ("size", 4096), ("version", 1),
                        ("counter_id", 1), ("seq_count", seq),
                        ("disruption_marker", marker), ("flags", flags),
                        ("clock_status", 2),
                        ("vm_generation_counter", counter)):
        put(page, name, value)
    return page
