# SPDX-License-Identifier: MIT
"""The one exception the device logic raises: an errno for the caller;
and the one place a C function's -errno becomes it (`check`)."""

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


def check(ret: int, why: str = "", error=DeviceError) -> int:
    """A native/shim function's result: ret if it is not negative, else
    error(-ret, why and the errno in words): DeviceError for a file
    operation's caller, OSError for a file of the daemon's."""
    if ret < 0:
        text = os.strerror(-ret)
        raise error(-ret, f"{why}: {text}" if why else text)
    return ret
