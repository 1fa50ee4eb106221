# SPDX-License-Identifier: MIT
"""SIGUSR1, the "look at the hardware now" hint, read from a signalfd.

A Python signal handler cannot tell who sent the signal; the signalfd's
record can, and the daemon logs the sender of every bump.
"""

import os
import signal

from .._cuse import ffi, lib

HINT_SIGNAL = signal.SIGUSR1


class HintSignal:
    def __init__(self):
        # Blocked, the signal waits in the signalfd instead of killing us.
        signal.pthread_sigmask(signal.SIG_BLOCK, {HINT_SIGNAL})
        mask = ffi.new("sigset_t *")
        lib.sigemptyset(mask)
        lib.sigaddset(mask, HINT_SIGNAL)
        self._fd = lib.signalfd(-1, mask, lib.SFD_NONBLOCK | lib.SFD_CLOEXEC)
        if self._fd < 0:
            err = ffi.errno
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {HINT_SIGNAL})
            raise OSError(err, f"signalfd: {os.strerror(err)}")
        self._info = ffi.new("struct signalfd_siginfo *")
        self._size = ffi.sizeof("struct signalfd_siginfo")

    def fileno(self) -> int:
        return self._fd

    def senders(self) -> list[tuple[int, int]]:
        """(pid, uid) of each SIGUSR1 received since the last call."""
        found = []
        while True:
            try:
                data = os.read(self._fd, self._size)
            except BlockingIOError:
                return found
            ffi.memmove(self._info, data, len(data))
            found.append((self._info.ssi_pid, self._info.ssi_uid))

    def close(self) -> None:
        os.close(self._fd)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {HINT_SIGNAL})
