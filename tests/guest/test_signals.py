"""Signals and a blocked read() / VMGENID_WAIT_WATCHERS (SPEC.md, "Signals").

The kernel sends FUSE_INTERRUPT when a signal is pending for a process blocked
in a CUSE request, and refuses restart codes from the server, so the call
returns EINTR even under SA_RESTART.  Every wait below has a rescue: if the
daemon ignored the interrupt, a later bump (or ack) wakes the call, and the
test fails on the wrong answer instead of hanging the run.
"""

import os
import select
import signal
import subprocess
import sys
import time

import pytest

from .device import (NODE, REPO, ack, bump, force, native, open_device,
                     outdated, wait_watchers)

# Hang-rescue only: how long to wait before declaring the daemon stuck.
HANG = 30.0
# After the caller is seen asleep in the call, time for the request to reach
# the daemon (it is idle; this is slack for the emulated guest, not a figure).
SETTLE = 0.5

NR_READ = 0     # x86_64 syscall numbers, for /proc/PID/syscall
NR_IOCTL = 16

# A watcher driven line by line from stdin, with a SIGUSR1 handler that does
# nothing.  argv[1]: "restart" (SA_RESTART), "norestart", or "none" (no
# handler).  read(2), write(2) and ioctl(2) go through ctypes: no PEP 475
# retry, so the EINTR of the device is what gets printed.
CHILD = r"""
import ctypes, errno, os, signal, struct, sys
from cuse_vmgenid import ioctls

libc = ctypes.CDLL(None, use_errno=True)
libc.read.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
libc.read.restype = ctypes.c_ssize_t
libc.write.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
libc.write.restype = ctypes.c_ssize_t
libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong)
libc.ioctl.restype = ctypes.c_int

if sys.argv[1] != "none":
    signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    signal.siginterrupt(signal.SIGUSR1, sys.argv[1] == "norestart")

def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()

def err(ret):
    return errno.errorcode[ctypes.get_errno()] if ret < 0 else "0"

fd = os.open(sys.argv[2], os.O_RDWR | os.O_CLOEXEC)
out(f"open fd={fd}")
while True:
    words = sys.stdin.readline().split()
    if not words:
        break
    if words[0] == "read":
        buf = ctypes.create_string_buffer(4)
        n = libc.read(fd, buf, 4)
        value = struct.unpack("=I", buf.raw)[0] if n == 4 else 0
        out(f"read ret={n} value={value} errno={err(n)}")
    elif words[0] == "ack":
        buf = struct.pack("=I", int(words[1]))
        n = libc.write(fd, buf, 4)
        out(f"ack ret={n} errno={err(n)}")
    elif words[0] == "wait":
        r = libc.ioctl(fd, ioctls.WAIT_WATCHERS, int(words[1]))
        out(f"wait ret={r} errno={err(r)}")
os.close(fd)
"""


class Proc:
    """A child process whose stdout is read line by line with timeouts."""

    def __init__(self, argv, stdin=False):
        self.proc = subprocess.Popen(
            argv, cwd=REPO, stdout=subprocess.PIPE,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stderr=subprocess.PIPE, close_fds=True)
        self.pid = self.proc.pid
        self._buf = b""

    def line(self, timeout: float = HANG):
        """The next stdout line, or None on timeout or end of output."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            data = os.read(fd, 4096)
            if not data:
                return None
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def expect(self, rescue, timeout: float = HANG):
        """(line, rescued): if nothing came in time, run rescue() once."""
        line = self.line(timeout)
        if line is not None:
            return line, False
        rescue()
        return self.line(timeout), True

    def send(self, command: str) -> None:
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def stderr(self) -> str:
        return self.proc.stderr.read().decode(errors="replace")

    def finish(self) -> int:
        """Ends the process (SIGKILL if it is still there) and reaps it."""
        if self.proc.poll() is None:
            self.proc.kill()
        rc = self.proc.wait(HANG)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.finish()


def reader(*flags: str) -> Proc:
    """native vmgenid-reader, past its `open` line."""
    p = Proc([native("vmgenid-reader"), *flags])
    assert p.line() == "open", p.stderr()
    return p


def ioctl_waiter(timeout_ms: int = 0) -> Proc:
    """native vmgenid-ioctl wait: it opens a fresh (up to date) watcher."""
    return Proc([native("vmgenid-ioctl"), "wait", str(timeout_ms)])


def py_watcher(handler: str) -> Proc:
    """The CHILD script above, past its `open` line."""
    p = Proc([sys.executable, "-c", CHILD, handler, NODE], stdin=True)
    line = p.line()
    assert line is not None and line.startswith("open fd="), p.stderr()
    return p


def _device_fds(pid: int) -> set:
    fds = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") == NODE:
                fds.add(int(name))
        except OSError:
            pass
    return fds


def proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def blocked_in(pid: int, nr: int) -> bool:
    """Asleep (S) in syscall nr on a /dev/vmgenid descriptor."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            fields = f.read().split()
        if fields[0] != str(nr) or int(fields[1], 16) not in _device_fds(pid):
            return False
        return proc_state(pid) == "S"
    except (OSError, IndexError, ValueError):
        return False


def wait_blocked(p: Proc, nr: int) -> None:
    deadline = time.monotonic() + HANG
    while not blocked_in(p.pid, nr):
        assert p.proc.poll() is None, f"exited: {p.line(1)} {p.stderr()}"
        assert time.monotonic() < deadline, f"pid {p.pid} never blocked"
        time.sleep(0.02)
    time.sleep(SETTLE)


def wait_state(pid: int, state: str, timeout: float = HANG) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc_state(pid) == state:
            return True
        time.sleep(0.02)
    return False


RESCUED = "no answer to the signal: the daemon ignored FUSE_INTERRUPT " \
          "(the rescue woke the call)"


# -- a handled signal: EINTR --------------------------------------------------

def test_sigusr1_with_sa_restart_interrupts_blocked_read_with_eintr(daemon):
    with reader("-i") as r:
        wait_blocked(r, NR_READ)
        os.kill(r.pid, signal.SIGUSR1)
        line, rescued = r.expect(rescue=bump)
        assert not rescued, RESCUED
        assert line == "read ret=-1 value=0 errno=EINTR"
        assert r.proc.wait(HANG) == 1


@pytest.mark.parametrize("handler", ["restart", "norestart"])
def test_sigusr1_interrupts_blocked_wait_watchers_with_eintr(daemon, handler):
    fd = open_device()
    try:
        bump()                      # fd is outdated: WAIT_WATCHERS blocks
        with py_watcher(handler) as w:
            w.send("wait 0")
            wait_blocked(w, NR_IOCTL)
            os.kill(w.pid, signal.SIGUSR1)
            line, rescued = w.expect(rescue=lambda: ack(fd, 1))
            assert not rescued, RESCUED
            assert line == "wait ret=-1 errno=EINTR"
    finally:
        os.close(fd)


# -- after the EINTR, the watcher and the daemon are as before ----------------

def test_watcher_after_interrupted_read_still_blocks_and_counts(daemon):
    fd = open_device()
    try:
        with py_watcher("norestart") as w:
            w.send("read")
            wait_blocked(w, NR_READ)
            os.kill(w.pid, signal.SIGUSR1)
            line, rescued = w.expect(rescue=bump)
            assert not rescued, RESCUED
            assert line == "read ret=-1 value=0 errno=EINTR"
            assert outdated(fd) == 0

            # The next read blocks again (the interrupt did not outdate it),
            # and the daemon serves another client meanwhile.
            w.send("read")
            wait_blocked(w, NR_READ)
            assert outdated(fd) == 0
            force(fd)
            assert w.line() == "read ret=4 value=1 errno=0"
            assert outdated(fd) == 2
            w.send("ack 1")
            assert w.line() == "ack ret=4 errno=0"
            assert outdated(fd) == 1
            assert ack(fd, 1) == 4
            assert outdated(fd) == 0
    finally:
        os.close(fd)


def test_watcher_after_interrupted_wait_watchers_waits_again(daemon):
    fd = open_device()
    try:
        bump()
        with py_watcher("norestart") as w:
            w.send("wait 0")
            wait_blocked(w, NR_IOCTL)
            os.kill(w.pid, signal.SIGUSR1)
            line, rescued = w.expect(rescue=lambda: ack(fd, 1))
            assert not rescued, RESCUED
            assert line == "wait ret=-1 errno=EINTR"
            assert outdated(fd) == 1

            # Waits again, and returns 0 when the outdated watcher acks.
            w.send("wait 0")
            wait_blocked(w, NR_IOCTL)
            assert ack(fd, 1) == 4
            assert w.line() == "wait ret=0 errno=0"
            assert outdated(fd) == 0
    finally:
        os.close(fd)


# -- SIGKILL: the process dies at once, its watcher goes ----------------------

def test_sigkill_while_blocked_in_read_dies_and_its_watcher_goes(daemon):
    fd = open_device()
    try:
        with reader() as r:
            wait_blocked(r, NR_READ)
            os.kill(r.pid, signal.SIGKILL)
            try:
                rc = r.proc.wait(HANG)
            except subprocess.TimeoutExpired:
                bump()
                pytest.fail("killed reader stuck until a bump: " + RESCUED)
            assert rc == -signal.SIGKILL
        assert outdated(fd) == 0
        force(fd)
        assert outdated(fd) == 1    # fd alone: the reader's watcher is gone
        assert ack(fd, 1) == 4
        assert wait_watchers(fd, int(HANG * 1000)) == 0
    finally:
        os.close(fd)


def test_sigkill_while_blocked_in_wait_watchers_dies_and_its_watcher_goes(
        daemon):
    fd = open_device()
    try:
        bump()                      # counter 1, fd outdated
        with ioctl_waiter() as w:
            wait_blocked(w, NR_IOCTL)
            os.kill(w.pid, signal.SIGKILL)
            try:
                rc = w.proc.wait(HANG)
            except subprocess.TimeoutExpired:
                ack(fd, 1)
                pytest.fail("killed waiter stuck until an ack: " + RESCUED)
            assert rc == -signal.SIGKILL
        assert outdated(fd) == 1
        assert ack(fd, 1) == 4
        assert outdated(fd) == 0
        force(fd)                   # counter 2
        assert outdated(fd) == 1    # fd alone: the waiter's watcher is gone

        # A new waiter returns 0 as soon as fd acks (ETIME would mean a
        # ghost watcher or a stale wait in the daemon).
        with ioctl_waiter(int(HANG * 1000)) as w2:
            wait_blocked(w2, NR_IOCTL)
            assert ack(fd, 2) == 4
            assert w2.line() == "ioctl=VMGENID_WAIT_WATCHERS ret=0 errno=0"
            assert w2.proc.wait(HANG) == 0
    finally:
        os.close(fd)


# -- signals that do not interrupt, and job control ---------------------------

def test_default_ignored_sigwinch_does_not_interrupt_blocked_read(daemon):
    with reader() as r:
        wait_blocked(r, NR_READ)
        os.kill(r.pid, signal.SIGWINCH)
        time.sleep(1)               # room for a wrong EINTR to show up
        assert r.proc.poll() is None
        assert blocked_in(r.pid, NR_READ)
        assert bump() == 1
        assert r.line() == "read ret=4 value=1 errno=0"
        assert r.proc.wait(HANG) == 0


def test_sigstop_then_sigcont_ends_blocked_read_with_eintr(daemon):
    """SIGSTOP makes the kernel send FUSE_INTERRUPT: the daemon answers EINTR,
    the process stops on its way out of read(), and after SIGCONT read()
    returns EINTR (no handler, no restart).  Seen on 6.1 and 6.12."""
    with reader() as r:
        wait_blocked(r, NR_READ)
        os.kill(r.pid, signal.SIGSTOP)
        stopped = wait_state(r.pid, "T")
        if not stopped:             # stuck in the read: rescue, then fail
            bump()
        os.kill(r.pid, signal.SIGCONT)
        assert stopped, "never stopped: " + RESCUED
        assert r.line() == "read ret=-1 value=0 errno=EINTR"
        assert r.proc.wait(HANG) == 1
