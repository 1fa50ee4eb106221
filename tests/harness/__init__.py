# SPDX-License-Identifier: MIT
"""Run commands inside a QEMU guest with CUSE: the host kernel has none."""

from .guest import GuestResult, run_in_guest
from .images import GuestImage, prepare
from .vm import GuestError, GuestVM, Snapshot

__all__ = ["GuestError", "GuestImage", "GuestResult", "GuestVM", "Snapshot",
           "prepare", "run_in_guest"]
