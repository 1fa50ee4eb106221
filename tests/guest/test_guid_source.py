# SPDX-License-Identifier: MIT
"""The hardware GUID source in the guest: QEMU 7.2 with -device vmgenid.

The harness picks the GUID (`python -m tests.harness run --guid UUID`); pass
it on with `--env VMGENID_EXPECTED_GUID=UUID` to have it checked.  Without
it the tests still check the GUID against fw_cfg's own copy, and the two
ways of finding it (fw_cfg, ACPI) against each other.
"""

import errno
import os
import select
import uuid

import pytest

from cuse_vmgenid.sources import SourceUnavailable, acpi, fwcfg, open_source
from cuse_vmgenid.sources.kmsg import KmsgReader
from cuse_vmgenid.sources.memory import GuidMapping
from tests.kmsgrecords import is_vmfork_record

EXPECTED = os.environ.get("VMGENID_EXPECTED_GUID")
FW_CFG_GUID = os.path.join(fwcfg.FW_CFG_DIR, "by_name/etc/vmgenid_guid/raw")
GUID_OFFSET = 40  # QEMU's VMGENID_GUID_OFFSET in the etc/vmgenid_guid blob


def test_fwcfg_and_acpi_find_the_same_address():
    found = acpi.locate()
    assert fwcfg.locate() == found.address, found.detail
    assert acpi.find_device() == ("QEMUVGID:00", "\\_SB_.VGEN")
    assert found.form == "qemu"
    assert f"+ {GUID_OFFSET:#x}" in found.detail


def test_fwcfg_and_acpi_read_the_same_guid():
    with fwcfg.mapped_guid() as by_fwcfg, acpi.mapped_guid() as by_acpi:
        guid = by_fwcfg.read()
        assert guid == by_acpi.read()
        assert by_fwcfg.read_bytes() == by_acpi.read_bytes()
    assert uuid.UUID(guid).int != 0
    assert str(uuid.UUID(guid)) == guid  # canonical spelling
    if EXPECTED is not None:
        assert guid == str(uuid.UUID(EXPECTED))


def test_memory_holds_what_qemu_put_in_fw_cfg():
    # Until a restore changes it, the GUID in memory is the one QEMU put in
    # its etc/vmgenid_guid blob at boot: same bytes, same order.
    with open(FW_CFG_GUID, "rb") as f:
        blob = f.read()
    with fwcfg.mapped_guid() as guid:
        assert guid.read_bytes() == blob[GUID_OFFSET:GUID_OFFSET + 16]
        assert guid.read() == str(uuid.UUID(
            bytes_le=blob[GUID_OFFSET:GUID_OFFSET + 16]))


def test_auto_takes_fwcfg_and_says_where(caplog):
    caplog.set_level("INFO")
    source = open_source("auto", 100)
    try:
        assert source.name == "fwcfg"
    finally:
        source.close()
    address = fwcfg.locate()
    assert f"GUID source: fwcfg: GUID at {address:#x} ({fwcfg.ORIGIN})" \
        in caplog.text
    assert "source tier fwcfg (--source auto)" in caplog.text


def test_dev_mem_read_fails_there_so_the_page_is_mapped():
    # Why memory.py maps: read()/pread() of this page give EFAULT.
    address = fwcfg.locate()
    fd = os.open("/dev/mem", os.O_RDONLY)
    try:
        with pytest.raises(OSError) as info:
            os.pread(fd, 16, address)
        assert info.value.errno == errno.EFAULT
    finally:
        os.close(fd)


def test_a_device_that_cannot_map_says_why():
    with pytest.raises(SourceUnavailable, match="mmap /dev/null"):
        GuidMapping(fwcfg.locate(), "/dev/null")


def kmsg_history() -> int:
    """How many records /dev/kmsg holds now, read from the oldest."""
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    count = 0
    try:
        while True:
            try:
                os.read(fd, 8192)
                count += 1
            except BlockingIOError:
                return count
            except BrokenPipeError:
                continue
    finally:
        os.close(fd)


def drain(reader: KmsgReader) -> list[bytes]:
    """The records there are now."""
    records = []
    while (record := reader.read_record()) is not None:
        records.append(record)
    return records


def test_kmsg_reader_starts_at_the_end_and_ignores_user_records():
    history = kmsg_history()
    assert history > 0  # the boot log
    with KmsgReader() as reader:
        # Nothing spurious at start: the boot log is history, not news.
        start = drain(reader)
        assert not any(map(is_vmfork_record, start))
        assert len(start) < history
        # A process can write the words, but only as LOG_USER: a record
        # that is read, and not taken for the kernel's.
        with open("/dev/kmsg", "w") as k:
            k.write("cuse-vmgenid test: crng reseeded due to virtual "
                    "machine fork\n")
        poller = select.poll()
        poller.register(reader.fileno(), select.POLLIN)
        assert poller.poll(30_000), "no POLLIN after a /dev/kmsg write"
        news = drain(reader)
        assert any(b"cuse-vmgenid test: crng reseeded" in record
                   for record in news), news
        assert not any(map(is_vmfork_record, news))


def test_kernel_log_tier_finds_the_bound_driver_and_counts_no_user_line(
        tmp_path):
    """The kernel-log tier on the real /dev/kmsg: the kernel's vmgenid
    driver bound (ACPI on 6.1, platform from 6.10), the boot log history
    at a new boot, and the kernel's words written by a process (root: only
    it may write /dev/kmsg, and still as LOG_USER) are no change: the
    poll thread reads that record and publishes nothing."""
    import time

    from cuse_vmgenid._cuse import lib
    from cuse_vmgenid.sources import kernellog
    from cuse_vmgenid.device.page import Page
    from cuse_vmgenid.device.publisher import Publisher
    from cuse_vmgenid.device.statefile import StateFile
    [device] = kernellog.bound_devices()
    assert device.split("/")[0] in ("acpi", "platform")
    source = kernellog.open_tier(200)
    state_file = StateFile(str(tmp_path / "state"), "boot")
    publisher = Publisher(state_file, Page(str(tmp_path / "page")), 0)
    try:
        assert source.restart(None) is None
        history = source.mark().kmsg_seq
        assert history is not None
        source.start(publisher)
        with open("/dev/kmsg", "w") as k:
            k.write("cuse-vmgenid test: crng reseeded due to virtual "
                    "machine fork\n")
        # Until the thread read it (no wake-up: it is no change).
        deadline = time.monotonic() + 30
        while (source.mark().kmsg_seq == history
               and time.monotonic() < deadline):
            time.sleep(0.05)
        assert source.mark().kmsg_seq > history    # read, and not a change
        source.stop()
        assert publisher.take() is None
        assert lib.vmgenid_publisher_settle(publisher.c_handle) == 0
    finally:
        source.close()
        publisher.close()
        state_file.close()
