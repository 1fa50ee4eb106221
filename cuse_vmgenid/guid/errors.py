# SPDX-License-Identifier: MIT
"""The one exception of the GUID source: why there is no GUID to watch."""


class GuidUnavailable(Exception):
    """No usable VM Generation ID: the message says exactly why (no device,
    no /dev/mem, kernel lockdown, an ADDR form we do not read...)."""


class UnsupportedAddrForm(GuidUnavailable):
    """The ACPI device's ADDR object is neither of the two forms we read
    (QEMU's Method(ADDR) on VGIA, Firecracker's Name(ADDR, Package(2)))."""
