"""Who may change the generation (docs/interface.rst, Privilege).

CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN in the effective set of the calling
thread, and that thread in the daemon's own user namespace: capabilities
inside a user namespace say nothing about a counter that is global.
"""

import errno
import os

from .errors import DeviceError

CAP_SYS_ADMIN = 21
CAP_CHECKPOINT_RESTORE = 40
CHANGE_CAPS = (1 << CAP_SYS_ADMIN) | (1 << CAP_CHECKPOINT_RESTORE)


def effective_caps(tid: int) -> int:
    with open(f"/proc/{tid}/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    raise OSError(errno.EINVAL, "no CapEff line")


def same_user_namespace(tid: int) -> bool:
    theirs = os.stat(f"/proc/{tid}/ns/user")
    ours = os.stat("/proc/self/ns/user")
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)


def authorize_change(tid: int) -> None:
    """Raise EACCES unless thread `tid` may change the generation."""
    try:
        caps = effective_caps(tid)
        same_ns = same_user_namespace(tid)
    except OSError as e:
        # hidepid, or the thread is gone: refuse rather than guess.
        raise DeviceError(errno.EACCES, f"cannot inspect {tid}: {e}") from e
    if not caps & CHANGE_CAPS:
        raise DeviceError(errno.EACCES, f"thread {tid} lacks the capability")
    if not same_ns:
        raise DeviceError(errno.EACCES,
                          f"thread {tid} is in another user namespace")
