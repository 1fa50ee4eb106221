# SPDX-License-Identifier: MIT
"""The GUID source's parsing, on real and hand-built bytes.

fixtures/qemu-7.2-pc/{DSDT,SSDT}: dumped from a guest of this harness (QEMU
7.2, -machine pc, -m 3072, -device vmgenid), through base64 of each file (a
tar of /sys/firmware/acpi/tables came out zero-filled past 4 KiB).  The
sysfs tables are the ones in memory, after the firmware patched VGIA, so
the SSDT holds the real address; the same guest's fw_cfg etc/vmgenid_addr
read 28 f0 ff bf 00 00 00 00, i.e. QEMU_GUID_ADDRESS.

fixtures/firecracker-SSDT.aml: hand-assembled (fixtures/aml_asm.py).
"""

import mmap
import os
import uuid

import pytest
from hypothesis import given, strategies as st

from cuse_vmgenid.sources import SourceUnavailable, acpi, aml
from cuse_vmgenid.sources.acpi import UnsupportedAddrForm
from cuse_vmgenid.sources import fwcfg
from cuse_vmgenid.sources.memory import GuidMapping, guid_string
from tests.host.fixtures import aml_asm
from tests.kmsgrecords import is_vmfork_record

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
QEMU_DIR = os.path.join(FIXTURES, "qemu-7.2-pc")
QEMU_GUID_ADDRESS = 0xBFFFF028   # fw_cfg etc/vmgenid_addr in that guest
QEMU_VGIA = 0xBFFFF000           # the GUID page; the GUID is at +40
VGEN = "\\_SB_.VGEN"


def fixture_table(path: str, name: str = None) -> aml.Table:
    with open(path, "rb") as f:
        return aml.load_table(name or os.path.basename(path), f.read())


@pytest.fixture
def qemu_tables():
    return [fixture_table(os.path.join(QEMU_DIR, n)) for n in ("DSDT", "SSDT")]


def patched(table: aml.Table, old: bytes, new: bytes) -> aml.Table:
    """@table with the one occurrence of @old replaced (same length)."""
    assert len(old) == len(new) and table.data.count(old) == 1
    return aml.load_table(table.name, table.data.replace(old, new))


# -- the real QEMU tables ---------------------------------------------------

def test_qemu_fixture_tables_are_intact(qemu_tables):
    for t in qemu_tables:
        assert sum(t.data) % 256 == 0, f"{t.name}: bad checksum"
    assert qemu_tables[1].data[10:16] == b"BOCHS "
    assert qemu_tables[1].data[16:24] == b"VMGENID\0"


def test_qemu_tables_are_read_whole(qemu_tables):
    ns = aml.read_namespace(qemu_tables)
    assert ns.problems == []
    assert [d.kind for d in ns.lookup(("_SB_", "PCI0"))] == ["device"]
    assert [d.kind for d in ns.lookup(("_SB_", "VGEN", "ADDR"))] == ["method"]
    assert [d.kind for d in ns.lookup(("VGIA",))] == ["name"]


def test_qemu_form_resolves_to_the_fw_cfg_address(qemu_tables):
    found = acpi.resolve_addr(qemu_tables, VGEN)
    assert found.form == "qemu"
    assert found.address == QEMU_GUID_ADDRESS
    assert found.address == QEMU_VGIA + 40
    assert "VGIA 0xbffff000 + 0x28" in found.detail


def test_qemu_unpatched_vgia_is_unavailable_not_unsupported(qemu_tables):
    dsdt, ssdt = qemu_tables
    unpatched = patched(ssdt, b"VGIA\x0c\x00\xf0\xff\xbf",
                        b"VGIA\x0c\x00\x00\x00\x00")
    with pytest.raises(SourceUnavailable, match="VGIA is 0") as info:
        acpi.resolve_addr([dsdt, unpatched], VGEN)
    assert not isinstance(info.value, UnsupportedAddrForm)


@pytest.mark.parametrize("old, new, why", [
    # Add(VGIA, 0x28) -> Subtract(VGIA, 0x28)
    (b"\x70\x72VGIA", b"\x70\x74VGIA", "expected Add"),
    # Store(Zero, Index(Local0, One)) -> Index(Local0, Zero): twice index 0
    (b"\x70\x00\x88\x60\x01\x00", b"\x70\x00\x88\x60\x00\x00",
     "expected index 1"),
    # Return(Local0) -> Return(Local1)
    (b"\xa4\x60\x14\x19", b"\xa4\x61\x14\x19", "the same LocalN"),
    # Method(ADDR, 0) -> Method(ADDR, 1)
    (b"ADDR\x00\x70", b"ADDR\x01\x70", "takes 1 arguments"),
])
def test_qemu_method_variants_are_unsupported(qemu_tables, old, new, why):
    dsdt, ssdt = qemu_tables
    with pytest.raises(UnsupportedAddrForm, match=why):
        acpi.resolve_addr([dsdt, patched(ssdt, old, new)], VGEN)


def test_qemu_vgia_must_be_a_name(qemu_tables):
    dsdt, ssdt = qemu_tables
    # The method's VGIA -> VGIB, which is not declared anywhere.
    broken = patched(ssdt, b"\x72VGIA", b"\x72VGIB")
    with pytest.raises(SourceUnavailable, match="VGIB .* is not declared"):
        acpi.resolve_addr([dsdt, broken], VGEN)


def test_missing_tables_say_addr_is_absent(qemu_tables):
    with pytest.raises(SourceUnavailable, match=r"no \\_SB_.VGEN.ADDR"):
        acpi.resolve_addr(qemu_tables[:1], VGEN)


# -- the Firecracker form ----------------------------------------------------

def test_firecracker_fixture_is_what_aml_asm_builds():
    with open(aml_asm.FIRECRACKER_SSDT, "rb") as f:
        assert f.read() == aml_asm.firecracker_ssdt()


def test_firecracker_form_gives_low_and_high(qemu_tables):
    fc = fixture_table(aml_asm.FIRECRACKER_SSDT, "SSDT")
    assert sum(fc.data) % 256 == 0
    found = acpi.resolve_addr([fc], VGEN)
    assert (found.form, found.address) == ("firecracker", 0x0DFFF0F0)
    # Next to a whole real DSDT (another machine's, but a real walk).
    assert acpi.resolve_addr([qemu_tables[0], fc], VGEN).address == 0x0DFFF0F0


@pytest.mark.parametrize("low, high, low_form, high_form", [
    (0x0BADF000, 0x1, "dword", "one"),
    (0xF0F0, 0, "word", "zero"),
    (0x80, 0x2, "byte", "byte"),
    (0xFFFFF000, 0xABCD, "qword", "word"),
])
def test_firecracker_integer_encodings(low, high, low_form, high_form):
    data = aml_asm.firecracker_ssdt(low, high, low_form, high_form)
    found = acpi.resolve_addr([aml.load_table("SSDT", data)], VGEN)
    assert found.address == high << 32 | low


def ssdt_with_addr(addr_term: bytes) -> aml.Table:
    return aml.load_table("SSDT", aml_asm.table(aml_asm.vgen_device(
        addr_term)))


@pytest.mark.parametrize("addr_term, why", [
    # Method(ADDR) { Return(Package(2){low, high}) }: a constant, but in a
    # Method: neither form.
    (aml_asm.method("ADDR", b"\xa4" + aml_asm.package(
        aml_asm.integer(0x0DFFF0F0), aml_asm.integer(0))),
     "not QEMU's.*expected Store"),
    # Name(ADDR, Package(3){...})
    (aml_asm.name("ADDR", aml_asm.package(
        aml_asm.integer(1), aml_asm.integer(2), aml_asm.integer(3))),
     "NumElements 3"),
    # Name(ADDR, Package(2){low}): one initialised element
    (aml_asm.name("ADDR", aml_asm.package(aml_asm.integer(0x1000),
                                          count=2)),
     "Package.*low, high"),
    # Name(ADDR, Buffer(8){...})
    (aml_asm.name("ADDR", b"\x11\x0b\x0a\x08" + bytes(8)),
     "expected Package"),
    # Name(ADDR, "0x1000")
    (aml_asm.name("ADDR", aml_asm.string("0x1000")), "expected Package"),
    # Name(ADDR, Package(2){QWord > 32 bits, 0})
    (aml_asm.name("ADDR", aml_asm.package(
        aml_asm.integer(1 << 32, "qword"), aml_asm.integer(0))),
     "more than two 32-bit halves"),
])
def test_other_addr_forms_are_unsupported(addr_term, why):
    with pytest.raises(UnsupportedAddrForm, match=why):
        acpi.resolve_addr([ssdt_with_addr(addr_term)], VGEN)


def test_addr_declared_twice_is_unsupported():
    fc = aml.load_table("SSDT", aml_asm.firecracker_ssdt())
    with pytest.raises(UnsupportedAddrForm, match="declared 2 times"):
        acpi.resolve_addr([fc, fc], VGEN)


# -- AML primitives ----------------------------------------------------------

@pytest.mark.parametrize("encoded, length", [
    (b"\x3f", 0x3F),
    (b"\x46\x05", 0x56),            # Firecracker's Device above
    (b"\x41\x08", 0x81),            # QEMU's Scope(\_SB)
    (b"\x81\x34\x12", 0x12341),
    (b"\xc2\x01\x00\x01", 0x100012),  # 2 | 1 << 4 | 1 << 20
])
def test_pkg_length(encoded, length):
    data = encoded + bytes(length)
    assert aml.Cursor(data, 0, len(data)).pkg_length() == length
    if length < 0x1000:
        assert aml_asm.pkg_length(length - len(encoded)) == encoded


def test_pkg_length_reserved_bits_and_overrun():
    with pytest.raises(aml.AmlError, match="reserved"):
        aml.Cursor(b"\x51\x08" + bytes(0x200), 0, 0x202).pkg_length()
    with pytest.raises(aml.AmlError, match="outside"):
        aml.Cursor(b"\x10" + bytes(4), 0, 5).pkg_length()


@pytest.mark.parametrize("encoded, ref", [
    (b"VGIA", aml.NameRef(False, 0, ("VGIA",))),
    (b"\\VGIA", aml.NameRef(True, 0, ("VGIA",))),
    (b"^^VGIA", aml.NameRef(False, 2, ("VGIA",))),
    (b"\\\x2e_SB_VGEN", aml.NameRef(True, 0, ("_SB_", "VGEN"))),
    (b"\x2f\x03_SB_PCI0S08_", aml.NameRef(False, 0, ("_SB_", "PCI0", "S08_"))),
    (b"\x00", aml.NameRef(False, 0, ())),
])
def test_name_string(encoded, ref):
    c = aml.Cursor(encoded, 0, len(encoded))
    assert c.name_string() == ref and c.at_end()


def test_name_resolution():
    scope = ("_SB_", "VGEN", "ADDR")
    ref = aml.NameRef(False, 0, ("VGIA",))
    assert aml.search_paths(scope, ref) == [
        scope + ("VGIA",), ("_SB_", "VGEN", "VGIA"), ("_SB_", "VGIA"),
        ("VGIA",)]
    assert aml.resolve(scope, aml.NameRef(False, 2, ("X___",))) == \
        ("_SB_", "X___")
    with pytest.raises(aml.AmlError, match="above the root"):
        aml.resolve(("_SB_",), aml.NameRef(False, 2, ("X___",)))


def test_integers_and_table_width():
    c = aml.Cursor(b"\x00\x01\xff\x0a\x80\x0b\x34\x12\x0e" + bytes(8), 0, 17)
    assert [c.integer(0xFFFFFFFF) for _ in range(5)] == \
        [0, 1, 0xFFFFFFFF, 0x80, 0x1234]


def test_unknown_opcode_is_recorded_not_guessed():
    # Scope(\_SB_) { Device(VGEN) { Name(_HID, ...), <0x70 Store at the
    # top of a Device: not read here>, Name(ADDR, ...) } }
    dev = aml_asm.device(b"VGEN", aml_asm.name("_HID",
                                                aml_asm.string("VMGENCTR")),
                         b"\x70\x00\x60",
                         aml_asm.name("ADDR", aml_asm.package(
                             aml_asm.integer(0x1000), aml_asm.integer(0))))
    body = b"\\_SB_" + dev
    data = aml_asm.table(b"\x10" + aml_asm.pkg_length(len(body)) + body)
    ns = aml.read_namespace([aml.load_table("SSDT", data)])
    assert len(ns.problems) == 1 and "opcode 0x70" in ns.problems[0]
    assert ns.lookup(("_SB_", "VGEN", "_HID"))
    with pytest.raises(SourceUnavailable, match="AML not read.*0x70"):
        acpi.resolve_addr([aml.load_table("SSDT", data)], VGEN)


# -- sysfs: the device, the tables, fw_cfg ----------------------------------

def make_device(root, name, modalias, path=VGEN):
    d = root / name
    d.mkdir(parents=True)
    (d / "modalias").write_text(modalias + "\n")
    (d / "path").write_text(path + "\n")


@pytest.mark.parametrize("modalias", [
    "acpi:QEMUVGID:VM_GEN_COUNTER:", "acpi:VMGENCTR:VM_GEN_COUNTER:",
    "acpi:FCVMGID:VM_GEN_COUNTER:", "acpi:VMGENCTR:"])
def test_find_device_by_ids(tmp_path, modalias):
    make_device(tmp_path, "PNP0501:00", "acpi:PNP0501:", "\\_SB_.COM1")
    make_device(tmp_path, "X:00", modalias)
    assert acpi.find_device(str(tmp_path)) == ("X:00", VGEN)


def test_find_device_none_or_two(tmp_path):
    make_device(tmp_path, "PNP0501:00", "acpi:PNP0501:", "\\_SB_.COM1")
    with pytest.raises(SourceUnavailable, match="no VM Generation ID device"):
        acpi.find_device(str(tmp_path))
    make_device(tmp_path, "A:00", "acpi:QEMUVGID:VM_GEN_COUNTER:")
    make_device(tmp_path, "B:00", "acpi:VMGENCTR:VM_GEN_COUNTER:")
    with pytest.raises(SourceUnavailable, match="2 VM Generation ID devices"):
        acpi.find_device(str(tmp_path))


def test_locate_through_sysfs_layout(tmp_path):
    devices, tables = tmp_path / "devices", tmp_path / "tables"
    make_device(devices, "QEMUVGID:00", "acpi:QEMUVGID:VM_GEN_COUNTER:")
    tables.mkdir()
    for name in ("DSDT", "SSDT"):
        (tables / name).write_bytes(open(os.path.join(QEMU_DIR, name),
                                         "rb").read())
    (tables / "FACP").write_bytes(b"FACP" + bytes(100))  # not read
    assert acpi.locate(str(devices), str(tables)).address == \
        QEMU_GUID_ADDRESS


def test_fwcfg_address(tmp_path):
    with pytest.raises(SourceUnavailable,
                       match="no .*absent .*CONFIG_FW_CFG_SYSFS"):
        fwcfg.locate(str(tmp_path / "absent"), load=False)
    (tmp_path / "by_name" / "etc").mkdir(parents=True)
    with pytest.raises(SourceUnavailable, match="without -device vmgenid"):
        fwcfg.locate(str(tmp_path), load=False)
    raw = tmp_path / "by_name" / "etc" / "vmgenid_addr"
    raw.mkdir()
    (raw / "raw").write_bytes(bytes(8))
    with pytest.raises(SourceUnavailable, match="has not allocated"):
        fwcfg.locate(str(tmp_path), load=False)
    (raw / "raw").write_bytes(bytes.fromhex("28f0ffbf00000000"))
    assert fwcfg.locate(str(tmp_path), load=False) == QEMU_GUID_ADDRESS


# -- memory and byte order ---------------------------------------------------

# In the guest booted with -device vmgenid,guid=12345678-9abc-def0-1122-
# 334455667788, fw_cfg's etc/vmgenid_guid held at offset 40 (and memory at
# etc/vmgenid_addr): QEMU's qemu_uuid_bswap of the big-endian spelling.
QEMU_GUID = "12345678-9abc-def0-1122-334455667788"
QEMU_GUID_BYTES = bytes.fromhex("78563412bc9af0de1122334455667788")


@pytest.mark.parametrize("address", [0x1028, 0xFF8])  # 0xFF8 spans 2 pages
def test_mapping_reads_qemu_byte_order(tmp_path, address):
    fake = tmp_path / "mem"
    image = bytearray(3 * mmap.PAGESIZE)
    image[address:address + 16] = QEMU_GUID_BYTES
    fake.write_bytes(bytes(image))
    m = GuidMapping(address, str(fake))
    try:
        assert m.read_bytes() == QEMU_GUID_BYTES
        assert m.read() == QEMU_GUID
        assert uuid.UUID(m.read()).bytes_le == QEMU_GUID_BYTES
        # The mapping is live: a change shows without remapping.
        with open(fake, "r+b") as f:
            f.seek(address)
            f.write(bytes(16))
        assert m.read() == "00000000-0000-0000-0000-000000000000"
    finally:
        m.close()


def test_mapping_without_dev_mem(tmp_path):
    with pytest.raises(SourceUnavailable, match="no .*nothere"):
        GuidMapping(0x1000, str(tmp_path / "nothere"))


@given(st.binary(min_size=16, max_size=16))
def test_guid_string_spells_the_guid_as_uuid_does(raw):
    assert guid_string(raw) == str(uuid.UUID(bytes_le=raw))


def test_mapping_permission_denied(tmp_path):
    fake = tmp_path / "mem"
    fake.write_bytes(bytes(8192))
    fake.chmod(0)
    # Root opens any file: try it as nobody, in a child.
    pid = os.fork()
    if pid == 0:
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            GuidMapping(0x1000, str(fake))
        except SourceUnavailable as e:
            os._exit(0 if "permission denied" in str(e) else 2)
        except BaseException:
            os._exit(3)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# -- kmsg records ------------------------------------------------------------

@pytest.mark.parametrize("record, expected", [
    (b"5,1234,567890,-;random: crng reseeded due to virtual machine fork\n",
     True),
    (b"5,1234,567890,-;random: crng reseeded due to virtual machine fork\n"
     b" SUBSYSTEM=acpi\n", True),
    # The words without random.c's prefix, or inside a longer kernel
    # record (a user's text): not the kernel's line.
    (b"5,1234,567890,-;crng reseeded due to virtual machine fork\n", False),
    (b"3,1238,1,-;tmpfs: Unknown parameter 'crng reseeded due to virtual "
     b"machine fork'\n", False),
    # Another level than KERN_NOTICE.
    (b"6,1239,1,-;random: crng reseeded due to virtual machine fork\n",
     False),
    # Written to /dev/kmsg by a process: facility LOG_USER (1), prio 13.
    (b"13,1235,567891,-;crng reseeded due to virtual machine fork\n", False),
    (b"6,1236,567892,-;random: crng init done\n", False),
    # The words only in the dictionary, not the message.
    (b"6,1237,1,-;other\n X=crng reseeded due to virtual machine fork\n",
     False),
    (b"garbage without a header", False),
])
def test_kmsg_record_matching(record, expected):
    assert is_vmfork_record(record) is expected
