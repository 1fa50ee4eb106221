# SPDX-License-Identifier: MIT
"""Small clients of /dev/vmgenid for the guest tests.

read(2) goes through ctypes: Python's os.read retries after EINTR (PEP 475),
and the tests must see the EINTR that the device returns.
"""

import ctypes
import errno
import fcntl
import mmap
import os
import struct
import re
import subprocess
import time

from cuse_vmgenid.sources import fwcfg
from vmgenid import ioctls

NODE = "/dev/vmgenid"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
NATIVE = os.path.join(REPO, "native", "build")
GUID_SIZE = 16

_libc = ctypes.CDLL(None, use_errno=True)
_libc.read.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
_libc.read.restype = ctypes.c_ssize_t
_libc.write.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
_libc.write.restype = ctypes.c_ssize_t
_libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong)
_libc.ioctl.restype = ctypes.c_int


def _checked(ret: int) -> int:
    """ret, or OSError(errno) when the libc call returned -1."""
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def open_device(flags: int = os.O_RDWR) -> int:
    return os.open(NODE, flags | os.O_CLOEXEC)


def raw_read(fd: int, size: int = 4) -> bytes:
    """One read(2), no retry: raises OSError(EINTR) as the caller sees it."""
    buf = ctypes.create_string_buffer(max(size, 1))
    n = _checked(_libc.read(fd, buf, size))  # before buf.raw is taken
    return buf.raw[:n]


def raw_write(fd: int, data: bytes) -> int:
    """One write(2), no retry."""
    return _checked(_libc.write(fd, data, len(data)))


def read_counter(fd: int) -> int:
    return struct.unpack("=I", raw_read(fd, 4))[0]


def ack(fd: int, value: int) -> int:
    return os.write(fd, struct.pack("=I", value))


def raw_ioctl(fd: int, request: int, arg: int = 0) -> int:
    """One ioctl(2) with an integer argument, no retry."""
    return _checked(_libc.ioctl(fd, request, arg))


def outdated(fd: int) -> int:
    return raw_ioctl(fd, ioctls.GET_OUTDATED_WATCHERS)


def outdated_now() -> int:
    """VMGENID_GET_OUTDATED_WATCHERS from a fresh (up to date) watcher."""
    fd = open_device()
    try:
        return outdated(fd)
    finally:
        os.close(fd)


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


def run_native(name: str, *args: str, prefix: tuple = (), timeout: float = 60
               ) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, native(name), *args], capture_output=True,
                          text=True, timeout=timeout)


def force_from_elsewhere() -> None:
    """VMGENID_FORCE_GEN_UPDATE from another process."""
    out = run_native("vmgenid-ioctl", "force").stdout
    assert out == "ioctl=VMGENID_FORCE_GEN_UPDATE ret=0 errno=0\n", out


def page_counter(daemon) -> int:
    """The counter as the daemon's page holds it (no watcher needed)."""
    with open(daemon.page, "rb") as f:
        return struct.unpack("=I", f.read(4))[0]


def ioctl_fields(line: str) -> dict:
    """vmgenid-ioctl's `ioctl=X ret=N errno=E` -> {"ioctl": X, "ret": N,
    "errno": E}."""
    fields = dict(part.split("=", 1) for part in line.split())
    if "ret" in fields:
        fields["ret"] = int(fields["ret"])
    return fields


def vmgenid_ioctl(*args: str, prefix: tuple = (), timeout: float = 60
                  ) -> tuple:
    """vmgenid-ioctl run to completion: (fields of its one line, exit code)."""
    proc = run_native("vmgenid-ioctl", *args, prefix=prefix, timeout=timeout)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, (prefix, args, proc.stdout, proc.stderr)
    fields = ioctl_fields(lines[0])
    assert "ioctl" in fields, (prefix, args, lines)   # the open worked
    return fields, proc.returncode


def attempt(call, *args) -> tuple:
    """(call(*args), 0), or (-1, errno) if it raises OSError: as C sees it."""
    try:
        return call(*args), 0
    except OSError as e:
        return -1, e.errno


def errno_of(call, *args) -> int:
    """The errno that call(*args) fails with; 0 if it succeeds."""
    return attempt(call, *args)[1]


def errno_name(err: int) -> str:
    return errno.errorcode.get(err, str(err))


# The daemon's line for what transport.c refused (daemon.REPORT_INTERVAL_S
# apart at most): "N unknown ioctl(s) refused (EINVAL), the last 0x..".
UNKNOWN_IOCTLS_LINE = re.compile(r"(\d+) unknown ioctl\(s\) refused \(EINVAL\)"
                                 r", the last (0x[0-9a-f]+) by pid (\d+)")


def unknown_ioctls_logged(daemon, expected: int, timeout: float = 30
                          ) -> list[tuple[int, int, int]]:
    """The daemon's report lines (count, last number, pid), once their
    counts add up to expected (or timeout passed)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [(int(n), int(cmd, 16), int(pid)) for n, cmd, pid in
                 UNKNOWN_IOCTLS_LINE.findall(daemon.log())]
        if sum(n for n, _, _ in lines) >= expected \
                or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def write_guid(raw: bytes) -> None:
    """Put a new GUID where the hypervisor keeps it (guest memory, as a
    restore does), but with no notification: nothing tells the kernel's
    driver, so the kernel logs nothing (a hint, or the GUID poll where it
    runs, must find it)."""
    address = fwcfg.locate()
    base = address & ~(mmap.PAGESIZE - 1)
    fd = os.open("/dev/mem", os.O_RDWR | os.O_CLOEXEC)
    try:
        with mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED,
                       mmap.PROT_READ | mmap.PROT_WRITE,
                       offset=base) as page:
            page[address - base:address - base + GUID_SIZE] = raw
    finally:
        os.close(fd)
