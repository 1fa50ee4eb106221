# SPDX-License-Identifier: MIT
"""A hint: why a source says to look for a change now."""

from typing import NamedTuple

from .guid.kmsg import VMFORK_LINE

# The kernel's own words: one copy, in native/shim/guid.c.
KERNEL_LOG_HINT = f"kernel log: {VMFORK_LINE.decode()}"


class Hint(NamedTuple):
    why: str
    # The kernel's own driver already mixed the GUID into its RNG and
    # reseeded it (its log line says so): the daemon need not again.
    kernel_reseeded: bool = False
