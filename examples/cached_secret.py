#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A program that caches a random secret, and regenerates it whenever the
VM generation changes: the problem /dev/vmgenid exists for.

A VM snapshot restored twice is two machines with the same memory: the
same cached session keys, nonces, UUIDs.  Both would go on using them.
This program keeps its secret (16 random bytes) until /dev/vmgenid says
the generation changed, then makes a new one: each clone gets its own.

    SECRET <hex>         the secret in use (at start and after each change)
    GENERATION <n>       a change of generation was seen
    ACK <n>              acknowledged (the orchestrator's WAIT_WATCHERS
                         stops waiting for us)

Client rule (docs/interface.rst): an error other than EINTR,
EAGAIN or EINVAL from the device means "a change may have happened":
regenerate, then reopen.  Standard library only (any python3).
"""

import errno
import os
import struct
import sys
import time

DEVICE = "/dev/vmgenid"


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def new_secret() -> bytes:
    return os.urandom(16)


def open_device() -> int:
    """Open the device, waiting for it while the daemon restarts."""
    while True:
        try:
            return os.open(DEVICE, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENODEV, errno.ENXIO,
                               errno.ENOTCONN, errno.ECONNABORTED):
                raise
            time.sleep(0.5)


def main() -> int:
    secret = new_secret()
    say(f"SECRET {secret.hex()}")
    fd = open_device()
    while True:
        try:
            # Blocks until the generation changes (os.read retries EINTR).
            data = os.read(fd, 4)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EINVAL):
                raise
            # The daemon went away: a change may have happened meanwhile.
            say(f"DEVICE {errno.errorcode.get(e.errno, e.errno)}: "
                "treated as a change")
            os.close(fd)
            secret = new_secret()
            say(f"SECRET {secret.hex()}")
            fd = open_device()
            continue
        (generation,) = struct.unpack("=I", data)
        say(f"GENERATION {generation}")
        secret = new_secret()           # before the ack: never use the old
        say(f"SECRET {secret.hex()}")
        try:
            os.write(fd, data)
            say(f"ACK {generation}")
        except OSError as e:
            if e.errno != errno.EINVAL:     # EINVAL: changed again: re-read
                raise


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
