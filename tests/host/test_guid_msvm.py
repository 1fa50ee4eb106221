# SPDX-License-Identifier: MIT
"""Hyper-V's and Azure's ADDR form, in a table of the form Microsoft
publishes for its guest firmware (microsoft/mu_msvm's DSDT): the GENC
device and the BIOS region it reads, written for this project from that
form's facts (fixtures/msvm/GENC.asl; fetched code is never committed),
compiled by iasl into fixtures/msvm/GENC.aml.  No live Hyper-V here: this
is the proof that the published form is read, with a file standing in for
/dev/mem.

The firmware (MsvmPkg/AcpiPlatformDxe/Dsdt.c) finds the bytes of
`OperationRegion(BIOS, SystemMemory, 0xffffff00, ...)` in the DSDT and
writes its data page's address over the placeholder; patch_region() does
the same here.  GCAL/GCAH are the 5th and 6th DWords of that page.
"""

import os
import shutil
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from cuse_vmgenid.sources import SourceUnavailable, acpi, aml
from cuse_vmgenid.sources.acpi import UnsupportedAddrForm
from cuse_vmgenid.sources.memory import GuidMapping, read_physical

MSVM = os.path.join(os.path.dirname(__file__), "fixtures", "msvm")
GENC = "\\_SB_.GENC"
# OpRegionOp, "BIOS", SystemMemory, DWordPrefix: Dsdt.c's
# DSDT_AML_DESCRIPTOR_SIGNATURE; the 32-bit address follows.
REGION_SIGNATURE = b"\x5b\x80BIOS\x00\x0c"
PLACEHOLDER = (0xFFFFFF00).to_bytes(4, "little")
GCAL_OFFSET, GCAH_OFFSET = 16, 20
REGION = 0x3FFF0000         # where a firmware might put its data page
GUID = "9a3e4b5c-1d2e-4f60-8172-93a4b5c6d7e8"


def compiled() -> bytes:
    with open(os.path.join(MSVM, "GENC.aml"), "rb") as f:
        return f.read()


def patch_region(data: bytes, address: int) -> aml.Table:
    """What the firmware does at boot, and the table checksum after it."""
    at = data.index(REGION_SIGNATURE) + len(REGION_SIGNATURE)
    assert data[at:at + 4] == PLACEHOLDER
    patched = bytearray(data)
    patched[at:at + 4] = address.to_bytes(4, "little")
    patched[9] = 0
    patched[9] = -sum(patched) % 256
    return aml.load_table("DSDT", bytes(patched))


def fake_memory(path, region: int, low: int, high: int) -> str:
    """A sparse file standing in for /dev/mem: the region's GCAL/GCAH."""
    with open(path, "wb") as f:
        f.seek(region + GCAL_OFFSET)
        f.write(low.to_bytes(4, "little") + high.to_bytes(4, "little"))
        f.truncate((region // 4096 + 2) * 4096)     # whole pages
    return str(path)


def reader(dev_mem: str):
    return lambda address, size: read_physical(address, size, dev_mem)


def test_the_fixture_is_what_iasl_makes_of_the_published_asl(tmp_path):
    """compile.sh's output, but for the compiler's own header fields."""
    iasl = shutil.which("iasl")
    assert iasl, "iasl missing: tools/bootstrap installs acpica-tools"
    shutil.copy(os.path.join(MSVM, "GENC.asl"), tmp_path)
    subprocess.run([iasl, "-p", "GENC", "GENC.asl"], cwd=tmp_path,
                   check=True, capture_output=True)
    fresh, kept = (tmp_path / "GENC.aml").read_bytes(), compiled()
    # Checksum (9) and creator id and revision (28-35) may differ.
    assert fresh[:9] + fresh[10:28] == kept[:9] + kept[10:28]
    assert fresh[36:] == kept[36:]


def test_the_published_table_is_read_whole():
    table = patch_region(compiled(), REGION)
    assert sum(table.data) % 256 == 0
    ns = aml.read_namespace([table])
    assert ns.problems == []
    assert [d.kind for d in ns.lookup(("_SB_", "GENC", "ADDR"))] == ["method"]
    [region] = ns.lookup(("BIOS",))
    assert region.value == aml.Region(0, REGION, 0xFF)
    [gcal] = ns.lookup(("GCAL",))
    [gcah] = ns.lookup(("GCAH",))
    assert (gcal.value.bit_offset, gcal.value.bits) == (128, 32)
    assert (gcah.value.bit_offset, gcah.value.bits) == (160, 32)


def test_hyper_v_form_reads_gcal_and_gcah_from_the_region(tmp_path):
    guid_at = 0x3FFE1234
    mem = fake_memory(tmp_path / "mem", REGION, guid_at, 0)
    found = acpi.resolve_addr([patch_region(compiled(), REGION)], GENC,
                              reader(mem))
    assert found.form == "hyper-v"
    assert found.address == guid_at
    assert "GCAL = 0x3ffe1234 (at 0x3fff0010 in \\BIOS)" in found.detail
    assert "GCAH = 0x0 (at 0x3fff0014 in \\BIOS)" in found.detail
    # And the GUID there is read as for any other form.
    import uuid
    with open(mem, "r+b") as f:
        f.seek(guid_at)
        f.write(uuid.UUID(GUID).bytes_le)
    mapping = GuidMapping(found.address, mem)
    try:
        assert mapping.read() == GUID
    finally:
        mapping.close()


@settings(max_examples=50, deadline=None)
@given(low=st.integers(0, 0xFFFFFFFF), high=st.integers(0, 0xFFFFFFFF),
       region=st.integers(1, 0xFFFFF).map(lambda n: n << 4))
def test_hyper_v_address_is_high_then_low(tmp_path_factory, low, high,
                                          region):
    mem = fake_memory(tmp_path_factory.mktemp("m") / "mem", region, low,
                      high)
    table = patch_region(compiled(), region)
    if low == high == 0:
        with pytest.raises(SourceUnavailable, match="gives 0"):
            acpi.resolve_addr([table], GENC, reader(mem))
        return
    found = acpi.resolve_addr([table], GENC, reader(mem))
    assert found.address == high << 32 | low


def test_an_unpatched_region_is_unavailable_not_guessed(tmp_path):
    mem = fake_memory(tmp_path / "mem", REGION, 0x1000, 0)
    with pytest.raises(SourceUnavailable, match="did not patch"):
        acpi.resolve_addr([patch_region(compiled(), 0)], GENC, reader(mem))


def test_a_closed_dev_mem_is_unavailable(tmp_path):
    with pytest.raises(SourceUnavailable, match="no .*nothere"):
        acpi.resolve_addr([patch_region(compiled(), REGION)], GENC,
                          reader(str(tmp_path / "nothere")))


def edited(old: bytes, new: bytes) -> aml.Table:
    data = patch_region(compiled(), REGION).data
    assert data.count(old) == 1 and len(old) == len(new)
    return aml.load_table("DSDT", data.replace(old, new))


@pytest.mark.parametrize("old, new, why", [
    # Both stores into element 0.
    (b"GCAH\x88LPKG\x01", b"GCAH\x88LPKG\x00", "element 0"),
    # GCAH a 16-bit field.
    (b"GCAH ", b"GCAH\x10", "16 bits"),
    # Returns something else.
    (b"\xa4LPKG", b"\xa4GCAL", r"Return\(LPKG\)"),
    # The region in SystemIO.
    (b"BIOS\x00\x0c", b"BIOS\x01\x0c", "not SystemMemory"),
])
def test_other_variants_fall_through(tmp_path, old, new, why):
    mem = fake_memory(tmp_path / "mem", REGION, 0x1000, 0)
    with pytest.raises(UnsupportedAddrForm, match=why) as info:
        acpi.resolve_addr([edited(old, new)], GENC, reader(mem))
    assert "ADDR form not read" in str(info.value) \
        or "not SystemMemory" in str(info.value) \
        or "16 bits" in str(info.value)


def test_find_device_by_hyper_v_ids(tmp_path):
    d = tmp_path / "MSFT1002:00"
    d.mkdir()
    (d / "modalias").write_text(
        "acpi:MSFT1002:VM_GEN_COUNTER:VMGENCTR:HYPER_V_GEN_COUNTER_V1:\n")
    (d / "path").write_text(GENC + "\n")
    assert acpi.find_device(str(tmp_path)) == ("MSFT1002:00", GENC)
