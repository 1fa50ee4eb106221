# SPDX-License-Identifier: MIT
"""The hardware GUID source (docs/interface.rst, "Where changes come from").

    source = discover("auto")      # or "fwcfg", "acpi"; GuidUnavailable
    source.read()                  # '12345678-9abc-def0-1122-334455667788'
    source.describe()              # for the log

discover() finds the GUID's physical address (QEMU's fw_cfg file
etc/vmgenid_addr, or the ACPI device's ADDR object), maps its page from
/dev/mem once, and returns a GuidSource whose read() is a 16-byte memory
load and a format, no system call.  KmsgReader (kmsg.py) is the kernel log
hint that says when to look.
"""

from . import acpi, fwcfg
from .errors import GuidUnavailable, UnsupportedAddrForm
from .kmsg import KmsgReader
from .memory import DEV_MEM, GuidMapping

CHOICES = ("auto", "fwcfg", "acpi")

__all__ = ["CHOICES", "GuidSource", "GuidUnavailable", "KmsgReader",
           "UnsupportedAddrForm", "discover", "locate"]


class GuidSource:
    """The VM Generation ID at a known address, mapped for reading."""

    def __init__(self, name: str, address: int, origin: str,
                 mapping: GuidMapping):
        self.name = name          # "fwcfg" or "acpi": how it was found
        self.address = address    # guest-physical address of the GUID
        self.origin = origin      # how the address was read
        self._mapping = mapping

    def read(self) -> str:
        """The GUID now, spelled as QEMU's -device vmgenid,guid=."""
        return self._mapping.read()

    def read_bytes(self) -> bytes:
        """The 16 bytes as they are in memory."""
        return self._mapping.read_bytes()

    def view(self) -> memoryview:
        """The 16 bytes in memory, live (release it before close())."""
        return self._mapping.view()

    def describe(self) -> str:
        return (f"{self.name}: GUID at {self.address:#x} ({self.origin}), "
                f"mapped from {DEV_MEM} page {self._mapping.base:#x}")

    def close(self) -> None:
        self._mapping.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def locate(choice: str) -> tuple[str, int, str]:
    """(name, address, origin) of the GUID by @choice, without mapping
    it; auto tries fw_cfg, then ACPI.  GuidUnavailable says why not."""
    if choice not in CHOICES:
        raise ValueError(f"GUID source {choice!r}: not one of {CHOICES}")
    reasons = []
    if choice in ("auto", "fwcfg"):
        try:
            address = fwcfg.locate()
            return "fwcfg", address, "fw_cfg etc/vmgenid_addr"
        except GuidUnavailable as err:
            if choice == "fwcfg":
                raise
            reasons.append(f"fwcfg: {err}")
    try:
        found = acpi.locate()
    except GuidUnavailable as err:
        if choice == "acpi":
            raise
        reasons.append(f"acpi: {err}")
        raise GuidUnavailable("no VM Generation ID: " + "; ".join(reasons)
                              ) from None
    return "acpi", found.address, f"ACPI {found.detail}"


def discover(choice: str = "auto", dev_mem: str = DEV_MEM) -> GuidSource:
    """The GUID source for --source @choice (auto|fwcfg|acpi), its page
    mapped; GuidUnavailable (with the exact reason) when there is none."""
    name, address, origin = locate(choice)
    return GuidSource(name, address, origin, GuidMapping(address, dev_mem))
