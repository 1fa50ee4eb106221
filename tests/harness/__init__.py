"""Run commands inside a QEMU guest with CUSE: the host kernel has none."""

from .guest import GuestResult, run_in_guest
from .images import GuestImage, prepare

__all__ = ["GuestImage", "GuestResult", "prepare", "run_in_guest"]
