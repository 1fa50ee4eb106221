# SPDX-License-Identifier: MIT
"""The 16-byte GUID in guest memory, mapped once from /dev/mem.

The page is mapped with a plain mmap at its page-aligned offset: read() and
pread() on /dev/mem give EFAULT for this memory (the firmware's reserved
region) and an O_SYNC open gives EAGAIN on mmap.  The mapping stays open so
that every read afterwards is a 16-byte memory load, without a system call.

Byte order: the hypervisor stores the GUID as Microsoft lays out a GUID,
the first three fields (32, 16, 16 bits) little-endian and the last 8 bytes
as they are; QEMU byte-swaps its big-endian `-device vmgenid,guid=` value
into that layout (qemu_uuid_bswap).  uuid.UUID(bytes_le=...) undoes it, so
read() spells the GUID exactly as QEMU's guid= did.
"""

import errno
import mmap
import os

from vmgenid.procinfo import read_text

from .._cuse import ffi, lib
from .base import SourceUnavailable

DEV_MEM = "/dev/mem"
LOCKDOWN = "/sys/kernel/security/lockdown"
# One definition, in native/shim/guid.h.
GUID_SIZE = lib.VMGENID_GUID_SIZE


def guid_string(raw: bytes) -> str:
    """The GUID as QEMU's guid= spells it (str(uuid.UUID(bytes_le=raw))),
    by the C that spells it in the state file (native/shim/guid.c)."""
    text = ffi.new("char[]", lib.VMGENID_GUID_TEXT + 1)
    lib.vmgenid_guid_format(raw, text)
    return ffi.string(text).decode()


def lockdown_mode(path: str = LOCKDOWN) -> str | None:
    """The kernel lockdown mode in force ("integrity", "confidentiality"),
    "none", or None when it cannot be told (no securityfs)."""
    try:
        text = read_text(path)
    except OSError:
        return None
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return None


def _refusal(action: str, err: OSError, address: int, dev_mem: str) -> str:
    mode = lockdown_mode()
    if mode not in (None, "none"):
        return (f"lockdown: {mode} (the kernel closes /dev/mem: {action} "
                f"{dev_mem} failed with {errno.errorcode.get(err.errno)})")
    if err.errno == errno.EACCES:
        return f"{action} {dev_mem}: permission denied (needs root)"
    if err.errno == errno.EPERM:
        return (f"{action} {dev_mem} for {address:#x}: EPERM (needs "
                "CAP_SYS_RAWIO; or CONFIG_STRICT_DEVMEM/IO_STRICT_DEVMEM "
                "or kernel lockdown forbids this range)")
    return (f"{action} {dev_mem} for {address:#x}: "
            f"{errno.errorcode.get(err.errno, err.errno)} ({err.strerror})")


class PhysicalMapping:
    """@size bytes at physical @address, mapped read-only from @dev_mem."""

    def __init__(self, address: int, size: int, dev_mem: str = DEV_MEM):
        self.address = address
        self.size = size
        page = mmap.PAGESIZE
        self.base = address & ~(page - 1)
        self._offset = address - self.base
        length = -(-(self._offset + size) // page) * page
        try:
            fd = os.open(dev_mem, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SourceUnavailable(f"no {dev_mem} (a kernel without "
                                    "CONFIG_DEVMEM, or no such node)"
                                    ) from None
        except OSError as err:
            raise SourceUnavailable(_refusal("open", err, address, dev_mem)
                                    ) from None
        try:
            self._map = mmap.mmap(fd, length, mmap.MAP_SHARED,
                                  mmap.PROT_READ, offset=self.base)
        except OSError as err:
            raise SourceUnavailable(_refusal("mmap", err, address, dev_mem)
                                    ) from None
        finally:
            os.close(fd)

    def read_bytes(self) -> bytes:
        """The bytes as they are in memory (one copy, no system call)."""
        return self._map[self._offset:self._offset + self.size]

    def view(self) -> memoryview:
        """The bytes, live (release it before close())."""
        return memoryview(self._map)[self._offset:self._offset + self.size]

    def close(self) -> None:
        self._map.close()


def read_physical(address: int, size: int, dev_mem: str = DEV_MEM) -> bytes:
    """@size bytes at physical @address, once (an ACPI OperationRegion's
    fields); SourceUnavailable says why not."""
    mapping = PhysicalMapping(address, size, dev_mem)
    try:
        return mapping.read_bytes()
    finally:
        mapping.close()


class GuidMapping(PhysicalMapping):
    """The GUID at physical @address, mapped read-only from @dev_mem."""

    def __init__(self, address: int, dev_mem: str = DEV_MEM):
        super().__init__(address, GUID_SIZE, dev_mem)

    def read(self) -> str:
        """The GUID, spelled as QEMU's -device vmgenid,guid= spelled it."""
        return guid_string(self.read_bytes())
