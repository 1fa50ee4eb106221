# SPDX-License-Identifier: MIT
"""The VMClock page in a QEMU migration stream (a saved guest), patched as
Firecracker updates its own device's page at each restore
(src/vmm/src/devices/acpi/vmclock.rs, post_load_update): the flag
VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT set and vm_generation_counter + 1.

QEMU's -device vmclock (hw/acpi/vmclock.c) never sets that flag nor steps
that counter; at a restore it steps only disruption_marker (its
post_load).  Its page is a RAM block of its own, "vmclock_page", so it
travels with the guest's RAM, not in the device's vmstate section (which
holds only the page's physical address): a page the stream sends whole
is its header (offset and flags, big-endian), the block's name (a length
byte, then the name) and the 4096 bytes.  QEMU's post_load then runs on
the page as loaded, so the patch stays, and a reader sees the new
counter under a new seq_count.
"""

import mmap
import re
from pathlib import Path

from tests.host import vmclock_abi as abi

from .cache import HarnessError

BLOCK = b"vmclock_page"
PAGE_SIZE = 4096
MAGIC = abi.MAGIC.to_bytes(4, "little")     # "VCLK"


def find_pages(stream) -> list[int]:
    """The offsets of the vmclock_page block's page where the stream
    sends it whole: the block's name (after its length byte), then the
    page, with the ABI's magic and version 1."""
    found = []
    for match in re.finditer(re.escape(BLOCK + MAGIC), stream):
        page = match.start() + len(BLOCK)
        # The name may carry a device path: "<path>/vmclock_page".
        named = any(stream[start - 1] == page - start
                    and stream[start:page].endswith(BLOCK)
                    for start in range(max(1, page - 255), match.start() + 1))
        if named and abi.get(stream[page:page + abi.SIZE], "version") == 1:
            found.append(page)
    return found


def patch_vmclock(path: Path | str, *, counter_step: int = 1) -> dict:
    """Set the generation counter flag in the saved guest at @path and add
    @counter_step to vm_generation_counter (0: the flag only), in place.
    The page's fields before the patch; HarnessError unless the stream
    holds the page exactly once."""
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as stream:
        pages = find_pages(stream)
        if len(pages) != 1:
            raise HarnessError(f"{path}: the VMClock page is sent "
                               f"{len(pages)} times in the stream, not once")
        page = bytearray(stream[pages[0]:pages[0] + PAGE_SIZE])
        before = {name: abi.get(page, name) for name in abi.FIELDS}
        abi.put(page, "flags",
                before["flags"] | abi.FLAG_VM_GEN_COUNTER_PRESENT)
        abi.put(page, "vm_generation_counter",
                before["vm_generation_counter"] + counter_step)
        stream[pages[0]:pages[0] + PAGE_SIZE] = page
        stream.flush()
    return before
