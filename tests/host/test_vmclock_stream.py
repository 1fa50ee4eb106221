# SPDX-License-Identifier: MIT
"""tests/harness/vmclockstream.py: the VMClock page found in a saved
QEMU stream where QEMU sends it (its RAM block's name, then the page),
never where the magic or the name only appear (guest memory holding
"VCLK", the stream's list of RAM blocks), and patched as Firecracker's
restore updates its page."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.harness.cache import HarnessError
from tests.harness.vmclockstream import find_pages, patch_vmclock

from . import vmclock_abi as abi

RAM_SAVE_FLAG_PAGE = 0x08


def qemu_page(marker: int = 3, counter: int = 0) -> bytearray:
    """As QEMU's device holds it: no flag, no counter."""
    return abi.device_page(counter=counter, flags=0, marker=marker)


def sent(name: bytes, page: bytes, offset: int = 0) -> bytes:
    """A page as QEMU's RAM migration sends it whole: offset and flags
    (big-endian), the block's name (a length byte, the name), the page."""
    return (struct.pack(">Q", offset | RAM_SAVE_FLAG_PAGE)
            + bytes([len(name)]) + name + bytes(page))


# The stream's list of RAM blocks (name, then its size), and guest memory
# that holds the magic (ptp_vmclock's code compares with it).
DECOYS = [bytes([12]) + b"vmclock_page" + struct.pack(">Q", 4096),
          abi.MAGIC.to_bytes(4, "little") + struct.pack("<I", 4096),
          sent(b"pc.ram", abi.MAGIC.to_bytes(4, "little") + bytes(4092))]


@given(before=st.lists(st.sampled_from(DECOYS) | st.binary(max_size=64),
                       max_size=6),
       after=st.lists(st.sampled_from(DECOYS) | st.binary(max_size=64),
                      max_size=6),
       name=st.sampled_from([b"vmclock_page", b"/vmclock/vmclock_page"]))
def test_the_page_is_found_where_its_block_sends_it(before, after, name):
    head = b"".join(before)
    stream = head + sent(name, qemu_page()) + b"".join(after)
    assert find_pages(stream) == [len(head) + 8 + 1 + len(name)]


def test_the_patch_sets_the_flag_and_steps_the_counter(tmp_path):
    path = tmp_path / "saved"
    head = b"".join(DECOYS)
    path.write_bytes(head + sent(b"vmclock_page", qemu_page(counter=4))
                     + b"".join(DECOYS))
    at = len(head) + 8 + 1 + len(b"vmclock_page")
    before = patch_vmclock(path)
    assert (before["flags"], before["vm_generation_counter"]) == (0, 4)
    data = path.read_bytes()
    page = data[at:at + 4096]
    assert abi.get(page, "flags") == abi.FLAG_VM_GEN_COUNTER_PRESENT
    assert abi.get(page, "vm_generation_counter") == 5
    # Nothing else moved: QEMU's post_load steps the marker and seq_count.
    assert abi.get(page, "disruption_marker") == 3
    assert data[:len(head)] == head
    assert len(data) == len(head) + 8 + 13 + 4096 + len(b"".join(DECOYS))
    patch_vmclock(path, counter_step=0)     # the flag only
    assert abi.get(path.read_bytes()[at:], "vm_generation_counter") == 5


@pytest.mark.parametrize("times", [0, 2])
def test_a_stream_without_exactly_one_page_is_refused(tmp_path, times):
    path = tmp_path / "saved"
    path.write_bytes(b"".join(DECOYS)
                     + sent(b"vmclock_page", qemu_page()) * times)
    with pytest.raises(HarnessError, match=f"sent {times} times"):
        patch_vmclock(path)
