# SPDX-License-Identifier: MIT
"""The ioctls' arguments as the contract reads them (their numbers:
vmgenid.ioctls, the client's)."""

import errno
import struct

from .errors import DeviceError


def force_min_value(data: bytes) -> int:
    """FORCE_GEN_UPDATE_MIN's __u32, which the kernel copies in."""
    if len(data) != 4:
        raise DeviceError(errno.EINVAL, f"{len(data)} bytes in")
    return struct.unpack("=I", data)[0]
