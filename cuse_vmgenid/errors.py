# SPDX-License-Identifier: MIT
"""The one exception the device logic raises: an errno for the caller."""

import errno
import os


class DeviceError(Exception):
    """A file operation fails with this errno; the transport replies it."""

    def __init__(self, err: int, why: str = ""):
        super().__init__(err, why or os.strerror(err))
        self.errno = err
        self.why = why

    def __repr__(self) -> str:
        name = errno.errorcode.get(self.errno, str(self.errno))
        return f"DeviceError({name}{', ' + self.why if self.why else ''})"
