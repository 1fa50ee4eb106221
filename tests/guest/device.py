"""Small clients of /dev/vmgenid for the guest tests.

read(2) goes through ctypes: Python's os.read retries after EINTR (PEP 475),
and the tests must see the EINTR that the device returns.
"""

import ctypes
import errno
import fcntl
import os
import struct
import subprocess

from cuse_vmgenid import ioctls

NODE = "/dev/vmgenid"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
NATIVE = os.path.join(REPO, "native", "build")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.read.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
_libc.read.restype = ctypes.c_ssize_t
_libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong)
_libc.ioctl.restype = ctypes.c_int


def open_device(flags: int = os.O_RDWR) -> int:
    return os.open(NODE, flags | os.O_CLOEXEC)


def raw_read(fd: int, size: int = 4) -> bytes:
    """One read(2), no retry: raises OSError(EINTR) as the caller sees it."""
    buf = ctypes.create_string_buffer(max(size, 1))
    n = _libc.read(fd, buf, size)
    if n < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return buf.raw[:n]


def read_counter(fd: int) -> int:
    return struct.unpack("=I", raw_read(fd, 4))[0]


def ack(fd: int, value: int) -> int:
    return os.write(fd, struct.pack("=I", value))


def raw_ioctl(fd: int, request: int, arg: int = 0) -> int:
    """One ioctl(2) with an integer argument, no retry."""
    ret = _libc.ioctl(fd, request, arg)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def outdated(fd: int) -> int:
    return raw_ioctl(fd, ioctls.GET_OUTDATED_WATCHERS)


def wait_watchers(fd: int, timeout_ms: int = 0) -> int:
    return raw_ioctl(fd, ioctls.WAIT_WATCHERS, timeout_ms)


def force(fd: int) -> int:
    return raw_ioctl(fd, ioctls.FORCE_GEN_UPDATE)


def force_min(fd: int, minimum: int) -> int:
    buf = bytearray(struct.pack("=I", minimum))
    return fcntl.ioctl(fd, ioctls.FORCE_GEN_UPDATE_MIN, buf)


def notify(fd: int) -> int:
    return raw_ioctl(fd, ioctls.NOTIFY)


def bump() -> int:
    """FORCE from a fresh descriptor; returns the counter after it."""
    fd = open_device()
    try:
        force(fd)
        return read_counter(fd)
    finally:
        os.close(fd)


def native(name: str) -> str:
    path = os.path.join(NATIVE, name)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"{path}: run `make -C native` first")
    return path


def run_native(name: str, *args: str, user: str | None = None,
               prefix: tuple = (), timeout: float = 60
               ) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, native(name), *args], capture_output=True,
                          text=True, timeout=timeout)


def errno_name(err: int) -> str:
    return errno.errorcode.get(err, str(err))
