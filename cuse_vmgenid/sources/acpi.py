# SPDX-License-Identifier: MIT
"""The GUID's address from ACPI: the VM Generation ID device and its ADDR.

The device is found in /sys/bus/acpi/devices by its ids (modalias: _HID
QEMUVGID or VMGENCTR, or _CID VM_Gen_Counter, which the kernel prints in
capitals); its 'path' names it in the ACPI namespace.  Its ADDR object
(Microsoft's "Virtual Machine Generation ID" spec: a Package of two 32-bit
integers, low then high half of the GUID's physical address) is read from
the AML of the DSDT and SSDTs, in exactly one of two forms:

- Firecracker: a constant, Name(ADDR, Package(2){low, high}).
- QEMU (hw/acpi/vmgenid.c), whose firmware patches the address of its GUID
  page into a DWord in the table, Name(VGIA, DWord):

      Method(ADDR, 0) {
          Store(Package(2){}, Local0)
          Store(Add(VGIA, 40), Index(Local0, Zero))  // the GUID is at +40
          Store(Zero, Index(Local0, One))
          Return(Local0)
      }

- Hyper-V and Azure (microsoft/mu_msvm's DSDT, Device \\_SB.GENC, _HID
  MSFT1002): two 32-bit fields of a SystemMemory OperationRegion, whose
  address the firmware patches into the table at boot, stored into a
  method-local package:

      OperationRegion(BIOS, SystemMemory, <patched>, 0xff)
      Field(BIOS, ByteAcc, NoLock, Preserve) {..., GCAL,32, GCAH,32, ...}
      Method(ADDR, 0) {
          Name(LPKG, Package(){0, 0})
          Store(GCAL, Index(LPKG, 0))
          Store(GCAH, Index(LPKG, 1))
          Return(LPKG)
      }

  The fields are read from the region in /dev/mem, as the AML
  interpreter would.

Anything else raises UnsupportedAddrForm: a wrong address would make the
GUID poll thread read some other memory forever, so it is never guessed.
"""

import glob
import os
from dataclasses import dataclass

from typing import Callable

from vmgenid.procinfo import read_text

from . import aml, guid
from .base import SourceUnavailable
from .memory import read_physical

DEVICES_DIR = "/sys/bus/acpi/devices"
TABLES_DIR = "/sys/firmware/acpi/tables"
HIDS = frozenset({"QEMUVGID", "VMGENCTR", "MSFT1002"})
SYSTEM_MEMORY = 0x00    # an OperationRegion's RegionSpace
CID = "VM_GEN_COUNTER"
ADDR = "ADDR"


class UnsupportedAddrForm(SourceUnavailable):
    """The ACPI device's ADDR object is none of the forms read here
    (QEMU's Method(ADDR) on VGIA, Firecracker's Name(ADDR, Package(2)),
    Hyper-V's fields of a memory region)."""


@dataclass
class AcpiAddress:
    address: int      # physical address of the 16-byte GUID
    form: str         # "qemu", "firecracker" or "hyper-v"
    device: str       # its ACPI path, \_SB_.VGEN
    detail: str       # how the address was read, for the log


def _ids(modalias: str) -> list[str]:
    """acpi:QEMUVGID:VM_GEN_COUNTER: -> [QEMUVGID, VM_GEN_COUNTER]."""
    if not modalias.startswith("acpi:"):
        return []
    return [i for i in modalias[len("acpi:"):].split(":") if i]


def _read_text(path: str) -> str:
    return read_text(path).strip()


def find_device(devices_dir: str = DEVICES_DIR) -> tuple[str, str]:
    """(sysfs name, ACPI path) of the one VM Generation ID device."""
    try:
        entries = sorted(os.listdir(devices_dir))
    except OSError as err:
        raise SourceUnavailable(f"cannot list {devices_dir}: "
                                f"{err.strerror} (no ACPI?)") from None
    found = []
    for entry in entries:
        try:
            ids = _ids(_read_text(os.path.join(devices_dir, entry,
                                               "modalias")))
        except OSError:
            continue
        if {i.upper() for i in ids} & (HIDS | {CID}):
            found.append(entry)
    if not found:
        raise SourceUnavailable(f"no VM Generation ID device in {devices_dir} "
                                f"(_HID {'/'.join(sorted(HIDS))} or _CID "
                                "VM_Gen_Counter)")
    if len(found) > 1:
        raise SourceUnavailable(f"{len(found)} VM Generation ID devices in "
                                f"{devices_dir}: {', '.join(found)}")
    try:
        path = _read_text(os.path.join(devices_dir, found[0], "path"))
    except OSError as err:
        raise SourceUnavailable(f"{devices_dir}/{found[0]}/path: "
                                f"{err.strerror}") from None
    return found[0], path


def read_tables(tables_dir: str = TABLES_DIR) -> list[aml.Table]:
    """The DSDT and every SSDT (static, then dynamically loaded ones)."""
    names = [os.path.join(tables_dir, "DSDT")]
    names += sorted(glob.glob(os.path.join(tables_dir, "SSDT*")))
    names += sorted(glob.glob(os.path.join(tables_dir, "dynamic", "SSDT*")))
    tables = []
    for path in names:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        except OSError as err:
            raise SourceUnavailable(f"cannot read {path}: {err.strerror}"
                                    ) from None
        try:
            tables.append(aml.load_table(os.path.relpath(path, tables_dir),
                                         data))
        except aml.AmlError as err:
            raise SourceUnavailable(f"{path}: {err}") from None
    if not tables:
        raise SourceUnavailable(f"no DSDT or SSDT in {tables_dir}")
    return tables


def resolve_addr(tables: list[aml.Table], device_path: str,
                 read_memory: Callable[[int, int], bytes] = read_physical
                 ) -> AcpiAddress:
    """The GUID address @device_path's ADDR gives, or the exact reason
    why not (SourceUnavailable, UnsupportedAddrForm).  @read_memory(address,
    size): physical memory, for the fields of an OperationRegion."""
    device = aml.parse_path(device_path)
    ns = aml.read_namespace(tables)
    decls = ns.lookup(device + (ADDR,))
    where = f"{device_path}.{ADDR}"
    if not decls:
        unread = f"; AML not read: {' | '.join(ns.problems)}" \
            if ns.problems else ""
        names = ", ".join(t.name for t in tables)
        raise SourceUnavailable(f"no {where} in the ACPI tables ({names})"
                                f"{unread}")
    if len(decls) > 1:
        raise UnsupportedAddrForm(f"{where} is declared {len(decls)} times: "
                                  + ", ".join(d.where() for d in decls))
    decl = decls[0]
    if decl.kind == "name":
        return _firecracker_form(decl, device_path)
    if decl.kind == "method":
        try:
            return _qemu_form(ns, decl, device_path)
        except UnsupportedAddrForm as not_qemu:
            try:
                return _field_form(ns, decl, device_path, read_memory)
            except UnsupportedAddrForm as not_fields:
                raise UnsupportedAddrForm(
                    f"ADDR form not read: {not_qemu}; nor Hyper-V's: "
                    f"{not_fields}") from None
    raise UnsupportedAddrForm(f"{where} ({decl.where()}) is a {decl.kind}, "
                              "neither a Name nor a Method")


def _firecracker_form(decl: aml.Decl, device_path: str) -> AcpiAddress:
    """Name(ADDR, Package(2){low, high}): two integer constants."""
    table = decl.table
    c = aml.Cursor(table.data, decl.start, decl.end)
    try:
        c.expect(aml.PACKAGE_OP, "Package")
        end = c.pkg_length()
        count = c.byte()
        if count != 2:
            raise aml.AmlError(c.pos - 1, f"NumElements {count}, not 2")
        low = c.integer(table.int_mask)
        high = c.integer(table.int_mask)
        if c.pos != end or end != decl.end:
            raise aml.AmlError(c.pos, "more than two elements")
    except aml.AmlError as err:
        raise UnsupportedAddrForm(
            f"Name({device_path}.ADDR) at {decl.where()} is not "
            f"Package(2){{low, high}} of integer constants: {err}") from None
    if low > 0xFFFFFFFF or high > 0xFFFFFFFF:
        raise UnsupportedAddrForm(
            f"Name({device_path}.ADDR) at {decl.where()}: Package(2)"
            f"{{{low:#x}, {high:#x}}} holds more than two 32-bit halves")
    address = high << 32 | low
    if address == 0:
        raise SourceUnavailable(f"{device_path}.ADDR is Package(2){{0, 0}}: "
                                "no GUID address")
    return AcpiAddress(address, "firecracker", device_path,
                       f"Name(ADDR, Package(2){{{low:#x}, {high:#x}}}) in "
                       f"{table.name}")


def _qemu_form(ns: aml.Namespace, decl: aml.Decl,
               device_path: str) -> AcpiAddress:
    """QEMU's Method(ADDR), byte for byte but for the encodings of its
    integers and of the VGIA name (see the module's docstring)."""
    table = decl.table
    mask = table.int_mask
    c = aml.Cursor(table.data, decl.start, decl.end)
    try:
        _expect_no_arguments(c)
        # Store(Package(2){}, LocalN)
        c.expect(aml.STORE_OP, "Store")
        c.expect(aml.PACKAGE_OP, "Package")
        end = c.pkg_length()
        c.expect(2, "NumElements 2")
        if c.pos != end:
            raise aml.AmlError(c.pos, "the Package has initial elements")
        local = c.byte()
        if not aml.LOCAL0_OP <= local <= aml.LOCAL7_OP:
            raise aml.AmlError(c.pos - 1, f"expected a LocalN, found "
                               f"{local:#04x}")
        # Store(Add(VGIA, offset), Index(LocalN, Zero))
        c.expect(aml.STORE_OP, "Store")
        c.expect(aml.ADD_OP, "Add")
        vgia_at = c.pos
        vgia_ref = c.name_string()
        offset = c.integer(mask)
        c.expect(aml.NULL_NAME, "Add's target: none")
        _expect_index(c, local, 0, mask)
        # Store(high, Index(LocalN, One))
        c.expect(aml.STORE_OP, "Store")
        high = c.integer(mask)
        _expect_index(c, local, 1, mask)
        # Return(LocalN)
        c.expect(aml.RETURN_OP, "Return")
        c.expect(local, "the same LocalN")
        if not c.at_end():
            raise aml.AmlError(c.pos, "more after Return")
    except aml.AmlError as err:
        raise UnsupportedAddrForm(
            f"Method({device_path}.ADDR) at {decl.where()} is not QEMU's "
            f"(Store(Add(VGIA, offset), Index(Local0, 0))...): {err}"
        ) from None
    vgia = _vgia_value(ns, decl.path, vgia_ref, table, vgia_at, device_path)
    low = (vgia + offset) & mask
    if vgia == 0:
        raise SourceUnavailable(f"{vgia_ref} is 0 in {table.name}: the "
                                "firmware did not patch the GUID address in "
                                "(QEMU's _STA then reports no device)")
    if low > 0xFFFFFFFF or high > 0xFFFFFFFF:
        raise UnsupportedAddrForm(f"Method({device_path}.ADDR): {vgia_ref} "
                                  f"{vgia:#x} + {offset:#x}, high {high:#x}: "
                                  "not two 32-bit halves")
    return AcpiAddress(high << 32 | low, "qemu", device_path,
                       f"Method(ADDR) in {table.name}: {vgia_ref} "
                       f"{vgia:#x} + {offset:#x}, high {high:#x}")


def _field_form(ns: aml.Namespace, decl: aml.Decl, device_path: str,
                read_memory: Callable[[int, int], bytes]) -> AcpiAddress:
    """Hyper-V's Method(ADDR): Name(P, Package(2){...}), then
    Store(<field>, Index(P, n)) for n 0 and 1 (either order), then
    Return(P); each field read through its SystemMemory region."""
    table = decl.table
    mask = table.int_mask
    c = aml.Cursor(table.data, decl.start, decl.end)
    try:
        _expect_no_arguments(c)
        c.expect(aml.NAME_OP, "Name")
        holder = c.name_string()
        c.expect(aml.PACKAGE_OP, "Package")
        end = c.pkg_length()
        c.expect(2, "NumElements 2")
        c.pos = end     # its initial elements are all overwritten below
        sources = {}
        for _ in range(2):
            c.expect(aml.STORE_OP, "Store")
            at = c.pos
            ref = c.name_string()
            c.expect(aml.INDEX_OP, "Index")
            if c.name_string() != holder:
                raise aml.AmlError(c.pos, f"Index of another object than "
                                   f"{holder}")
            index = c.integer(mask)
            c.expect(aml.NULL_NAME, "Index's target: none")
            if index not in (0, 1) or index in sources:
                raise aml.AmlError(at, f"stores element {index} (elements "
                                   "0 and 1, once each)")
            sources[index] = ref
        c.expect(aml.RETURN_OP, "Return")
        if c.name_string() != holder or not c.at_end():
            raise aml.AmlError(c.pos, f"does not end Return({holder})")
    except aml.AmlError as err:
        raise UnsupportedAddrForm(
            f"Method({device_path}.ADDR) at {decl.where()} is not "
            f"Store(<field>, Index(<package>, 0 and 1)): {err}") from None
    scope = decl.path
    low, low_how = _field_value(ns, scope, sources[0], device_path,
                                read_memory)
    high, high_how = _field_value(ns, scope, sources[1], device_path,
                                  read_memory)
    address = high << 32 | low
    if address == 0:
        raise SourceUnavailable(f"{device_path}.ADDR gives 0 ({low_how}, "
                                f"{high_how}): no GUID address")
    return AcpiAddress(address, "hyper-v", device_path,
                       f"Method(ADDR) in {table.name}: {low_how}, "
                       f"{high_how}")


def _field_value(ns, scope, ref, device_path, read_memory
                 ) -> tuple[int, str]:
    """A 32-bit field unit @ref (from the method's @scope) read from its
    SystemMemory OperationRegion, and how it was read."""
    field = _one(ns, scope, ref, "field", device_path)
    unit = field.value
    region_decl = _one(ns, unit.scope, unit.region, "region", device_path)
    region = region_decl.value
    where = f"{aml.path_str(field.path)} ({field.where()})"
    if region.space != SYSTEM_MEMORY:
        raise UnsupportedAddrForm(f"{where}: its region is in address "
                                  f"space {region.space:#x}, not "
                                  "SystemMemory")
    if unit.bits != 32 or unit.bit_offset % 8:
        raise UnsupportedAddrForm(f"{where}: {unit.bits} bits at bit "
                                  f"{unit.bit_offset}, not a 32-bit field "
                                  "on a byte")
    offset = unit.bit_offset // 8
    if offset + 4 > region.length:
        raise UnsupportedAddrForm(f"{where}: bytes {offset}-{offset + 3} "
                                  f"outside its {region.length}-byte region")
    if region.offset == 0:
        raise SourceUnavailable(f"{aml.path_str(region_decl.path)} is at 0: "
                                "the firmware did not patch its address in")
    address = region.offset + offset
    value = int.from_bytes(read_memory(address, 4), "little")
    return value, (f"{aml.path_str(field.path)} = {value:#x} (at "
                   f"{address:#x} in {aml.path_str(region_decl.path)})")


def _one(ns, scope, ref, kind, device_path) -> aml.Decl:
    """The one declaration of @kind that @ref names from @scope."""
    for path in aml.search_paths(scope, ref):
        decls = ns.lookup(path)
        if not decls:
            continue
        if len(decls) > 1 or decls[0].kind != kind:
            raise UnsupportedAddrForm(
                f"{aml.path_str(path)} (used by {device_path}.ADDR) is "
                f"{'declared twice' if len(decls) > 1 else decls[0].kind}"
                f", not one {kind}")
        return decls[0]
    unread = f"; AML not read: {' | '.join(ns.problems)}" \
        if ns.problems else ""
    raise SourceUnavailable(f"{ref} (used by {device_path}.ADDR) is not "
                            f"declared{unread}")


def _expect_no_arguments(c: aml.Cursor) -> None:
    """A method's MethodFlags: ADDR takes no arguments."""
    flags = c.byte()
    if flags & 0x07:
        raise aml.AmlError(c.pos - 1, f"takes {flags & 7} arguments")


def _expect_index(c: aml.Cursor, local: int, index: int, mask: int) -> None:
    """Index(LocalN, <index>) with no target of its own."""
    c.expect(aml.INDEX_OP, "Index")
    c.expect(local, "the same LocalN")
    at = c.pos
    if c.integer(mask) != index:
        raise aml.AmlError(at, f"expected index {index}")
    c.expect(aml.NULL_NAME, "Index's target: none")


def _vgia_value(ns, method_path, ref, table, at, device_path) -> int:
    """The integer constant of the Name that @ref (VGIA) resolves to from
    the method's scope, by the namespace search rules."""
    for path in aml.search_paths(method_path, ref):
        decls = ns.lookup(path)
        if not decls:
            continue
        if len(decls) > 1 or decls[0].kind != "name":
            raise UnsupportedAddrForm(
                f"{aml.path_str(path)} (used by {device_path}.ADDR) is "
                f"{'declared twice' if len(decls) > 1 else decls[0].kind}, "
                "not one Name")
        d = decls[0]
        c = aml.Cursor(d.table.data, d.start, d.end)
        try:
            value = c.integer(d.table.int_mask)
            if not c.at_end():
                raise aml.AmlError(c.pos, "more than an integer")
        except aml.AmlError as err:
            raise UnsupportedAddrForm(
                f"{aml.path_str(path)} at {d.where()} (used by "
                f"{device_path}.ADDR) is not an integer constant: {err}"
            ) from None
        return value
    unread = f"; AML not read: {' | '.join(ns.problems)}" \
        if ns.problems else ""
    raise SourceUnavailable(f"{ref} (used by {device_path}.ADDR, "
                            f"{table.name} offset {at:#x}) is not declared"
                            f"{unread}")


def locate(devices_dir: str = DEVICES_DIR,
           tables_dir: str = TABLES_DIR) -> AcpiAddress:
    """The GUID's physical address through ACPI, or SourceUnavailable."""
    _, device_path = find_device(devices_dir)
    return resolve_addr(read_tables(tables_dir), device_path)


def mapped_guid() -> guid.MappedGuid:
    """The GUID where the ACPI device's ADDR says it is, mapped;
    SourceUnavailable says why not."""
    found = locate()
    return guid.map_guid("acpi", found.address, f"ACPI {found.detail}")


def open_tier(poll_interval_ms: int):
    """The tier acpi: the GUID at the address the ACPI device's ADDR gives
    (guid.py); SourceUnavailable says why not."""
    return guid.open_tier(mapped_guid(), poll_interval_ms)
