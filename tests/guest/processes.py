# SPDX-License-Identifier: MIT
"""Child processes of the guest tests: the C helpers and small Python scripts.

A Child's output (stdout and stderr together; the C helpers print line by
line) is read a line at a time, each read under a hang-rescue timeout.
wait_blocked() waits until a child (one of its threads) sleeps inside a system
call: its request is then queued ahead of anything the test sends afterwards.
"""

import os
import select
import subprocess
import time

from .device import NODE, REPO, native

# Hang-rescue only: how long to wait for a line, an exit or a state.
HANG = 60
# After a child is seen asleep in the call, slack for its request to reach
# the daemon under emulation (correctness does not depend on it; not a figure).
SETTLE = 0.5

# x86_64 system call numbers (the guest is qemu-system-x86_64), as the first
# field of /proc/PID/task/TID/syscall shows them.
SYS_READ = 0
SYS_IOCTL = 16
SYS_EPOLL_WAITS = {232, 281, 441}   # epoll_wait epoll_pwait epoll_pwait2
SYS_POLLS = {7, 23, 270, 271} | SYS_EPOLL_WAITS    # poll select pselect6 ppoll
FD_CALLS = {SYS_READ, SYS_IOCTL}    # their first argument is the descriptor

NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


class NoLine(AssertionError):
    """A child printed no (further) line in time, or ended."""


class Child:
    """A helper process whose output is read line by line with timeouts."""

    def __init__(self, argv, stdin: bool = False, env: dict | None = None,
                 pass_fds=()):
        self.argv = [str(a) for a in argv]
        self.proc = subprocess.Popen(
            self.argv, cwd=REPO, env=env, pass_fds=pass_fds,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self._buf = b""

    def _fill(self, timeout: float) -> bool:
        """Read what is there within timeout; False on EOF or timeout."""
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], max(0.0, timeout))[0]:
            return False
        chunk = os.read(fd, 65536)
        self._buf += chunk
        return bool(chunk)

    def line(self, timeout: float = HANG) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            if not self._fill(deadline - time.monotonic()):
                raise NoLine(f"{self.argv}: no line within {timeout}s (exit "
                             f"{self.proc.poll()}); so far {self.so_far()}")
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def lines_until(self, last: str, timeout: float = HANG) -> list:
        """Every line up to and including the one equal to `last`."""
        deadline = time.monotonic() + timeout
        lines = []
        while not lines or lines[-1] != last:
            lines.append(self.line(deadline - time.monotonic()))
        return lines

    def so_far(self) -> str:
        """What failure messages show of its output: the part not taken."""
        return repr(self._buf)

    def output(self, timeout: float = HANG) -> str:
        """All it prints from here until it closes its output."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline - time.monotonic()):
            pass
        if self.proc.poll() is None and time.monotonic() >= deadline:
            raise NoLine(f"{self.argv}: still running after {timeout}s; "
                         f"so far {self._buf!r}")
        out, self._buf = self._buf, b""
        return out.decode()

    def expect(self, rescue, timeout: float = HANG) -> tuple:
        """(line, rescued): if no line came in time, run rescue() once."""
        try:
            return self.line(timeout), False
        except NoLine:
            rescue()
            return self.line(timeout), True

    def silent(self) -> bool:
        """Nothing printed since the last line taken."""
        while self._fill(0):
            pass
        return self._buf == b""

    def send(self, command: str) -> None:
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def ask(self, command: str) -> str:
        self.send(command)
        return self.line()

    def wait(self, timeout: float = HANG) -> int:
        return self.proc.wait(timeout)

    def finish(self) -> int:
        """EOF on its stdin, then its exit code (SIGKILL on the rescue)."""
        self.proc.stdin.close()
        try:
            return self.wait()
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL unless it has ended; reaped, its pipes closed."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(HANG)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def start_reader(*flags: str) -> Child:
    """native vmgenid-reader, past its `open` line (its watcher exists)."""
    child = Child([native("vmgenid-reader"), *flags])
    assert child.line() == "open"
    return child


def start_waiter(timeout_ms: int = 0) -> Child:
    """native vmgenid-ioctl wait: it opens a fresh (up to date) watcher."""
    return Child([native("vmgenid-ioctl"), "wait", timeout_ms])


def proc_state(pid: int, tid: int | None = None) -> str:
    """The state of process pid's thread tid (default: its main thread)."""
    with open(f"/proc/{pid}/task/{tid or pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def tids(pid: int) -> list:
    return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]


def wait_state(pid: int, state: str, timeout: float = HANG) -> bool:
    """Until every thread of pid is in state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(proc_state(pid, tid) == state for tid in tids(pid)):
            return True
        time.sleep(0.02)
    return False


def device_fds(pid: int) -> set:
    fds = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") == NODE:
                fds.add(int(name))
        except OSError:
            pass
    return fds


def blocked_in(pid: int, syscalls) -> bool:
    """A thread of pid asleep (S) in one of `syscalls` (a number or a set of
    them); a read or an ioctl must be on a /dev/vmgenid descriptor."""
    syscalls = {syscalls} if isinstance(syscalls, int) else syscalls
    try:
        threads = tids(pid)
    except OSError:
        return False
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                fields = f.read().split()
            nr = int(fields[0])
            if nr in syscalls and (nr not in FD_CALLS or
                                   int(fields[1], 16) in device_fds(pid)) \
                    and proc_state(pid, tid) == "S":
                return True
        except (OSError, IndexError, ValueError):
            pass
    return False


def wait_all_blocked(children, syscalls) -> None:
    """Until each child is blocked_in(syscalls), then SETTLE once."""
    for child in children:
        deadline = time.monotonic() + HANG
        while not blocked_in(child.pid, syscalls):
            assert child.proc.poll() is None, (
                f"{child.argv} exited {child.proc.returncode}: "
                f"{child.so_far()}")
            assert time.monotonic() < deadline, \
                f"pid {child.pid} never blocked in {syscalls}"
            time.sleep(0.02)
    time.sleep(SETTLE)


def wait_blocked(child: Child, syscalls) -> None:
    wait_all_blocked([child], syscalls)
