"""The seed's four example workflows (examples/*.c) against the daemon.

Each program (native/build/examples/, built by `make -C native`) prints
`ready` once its watcher exists, then one line per step: `change:
generation N` (it noticed N), `reseed: <why>, secret <hex>`, `ack:
generation N` (its write() returned 4).  The test bumps with
VMGENID_FORCE_GEN_UPDATE, reads those lines and checks with
VMGENID_GET_OUTDATED_WATCHERS that every watcher acknowledged.  `-n COUNT`
makes a program exit 0 after COUNT acknowledged changes.
"""

import os
import re
import select
import signal
import subprocess
import time

import pytest

from .device import NATIVE, REPO, bump, outdated_now

# Hang-rescue only: how long to wait for a line, an exit or a state.
HANG = 60.0
# After a program is seen asleep in its call, slack for the request to reach
# the daemon under emulation (correctness does not depend on it).
SETTLE = 0.5
# x86_64 system call numbers, as /proc/PID/task/TID/syscall shows them.
SYS_READ = 0
SYS_IOCTL = 16
SYS_EPOLL_WAITS = {232, 281, 441}   # epoll_wait, epoll_pwait, epoll_pwait2
# VMGENID_WAIT_WATCHERS timeout for the orchestrator: long enough to be only
# a hang rescue (the seed's 5000 ms would make the test a timing test).
WAIT_MS = "60000"

SECRET = r"[0-9a-f]{32}"


def example_path(name: str) -> str:
    path = os.path.join(NATIVE, "examples", name)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"{path}: run `make -C native` first")
    return path


def preload_env(page: str) -> dict:
    lib = os.path.join(NATIVE, "libvmgenid-mmap.so")
    if not os.access(lib, os.R_OK):
        raise FileNotFoundError(f"{lib}: run `make -C native` first")
    return dict(os.environ, LD_PRELOAD=lib, VMGENID_PAGE=page)


class Example:
    """One example program; its output is read line by line with timeouts."""

    def __init__(self, name: str, *args: str, env: dict | None = None):
        self.argv = [example_path(name), *args]
        self.proc = subprocess.Popen(
            self.argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self._buf = b""
        self.seen = []

    def _fill(self, timeout: float) -> bool:
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], max(0.0, timeout))[0]:
            return False
        chunk = os.read(fd, 65536)
        self._buf += chunk
        return bool(chunk)

    def line(self) -> str:
        deadline = time.monotonic() + HANG
        while b"\n" not in self._buf:
            assert self._fill(deadline - time.monotonic()), (
                f"{self.argv}: no line within {HANG}s (exit "
                f"{self.proc.poll()}); so far {self.seen} {self._buf!r}")
        line, _, self._buf = self._buf.partition(b"\n")
        self.seen.append(line.decode())
        return self.seen[-1]

    def expect(self, pattern: str) -> re.Match:
        """The next line, which must match pattern (re.fullmatch)."""
        line = self.line()
        match = re.fullmatch(pattern, line)
        assert match, f"{self.argv}: {line!r} !~ {pattern!r}; " \
                      f"so far {self.seen}"
        return match

    def handled(self, gen: int) -> str:
        """change, reseed, ack of generation gen; returns the new secret."""
        self.expect(f"change: generation {gen}")
        secret = self.expect(f"reseed: generation {gen}, secret ({SECRET})")
        self.expect(f"ack: generation {gen}")
        return secret[1]

    def silent(self) -> bool:
        """Nothing printed since the last line taken."""
        while self._fill(0):
            pass
        return self._buf == b""

    def wait(self) -> int:
        return self.proc.wait(HANG)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(HANG)
        self.proc.stdout.close()


def task_states(pid: int) -> list:
    """[(state, syscall number or None)] of each thread of pid."""
    states = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                field = f.read().split()[0]
        except (OSError, IndexError):
            continue
        nr = int(field) if field.lstrip("-").isdigit() else None
        states.append((state, nr))
    return states


def wait_until(check, what: str) -> None:
    deadline = time.monotonic() + HANG
    while not check():
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.02)


def wait_blocked(prog: Example, syscalls) -> None:
    """Until one of prog's threads sleeps in one of syscalls, then SETTLE."""
    def blocked():
        assert prog.proc.poll() is None, \
            f"{prog.argv} exited {prog.proc.returncode}: {prog.seen}"
        return any(state == "S" and nr in syscalls
                   for state, nr in task_states(prog.pid))
    wait_until(blocked, f"blocked in {syscalls}: {prog.argv}")
    time.sleep(SETTLE)


def wait_stopped(prog: Example) -> None:
    wait_until(lambda: all(state == "T"
                           for state, _ in task_states(prog.pid)),
               f"stopped: {prog.argv}")


@pytest.fixture
def start(daemon):
    """Start example programs; each is killed after the test, before the
    daemon fixture stops the daemon."""
    progs = []

    def run(name: str, *args: str, env: dict | None = None) -> Example:
        prog = Example(name, *args, env=env)
        progs.append(prog)
        return prog

    yield run
    for prog in progs:
        prog.kill()


def test_watchdog_thread_reseeds_and_acks_each_change(start):
    """Example 1: the thread blocked in read() wakes on each change,
    reseeds, then acknowledges; nothing is left outdated."""
    w = start("watchdog", "-n", "2")
    w.expect("ready")
    wait_blocked(w, {SYS_READ})
    assert bump() == 1
    first = w.handled(1)
    assert outdated_now() == 0
    wait_blocked(w, {SYS_READ})
    assert bump() == 2
    assert w.handled(2) != first
    assert w.wait() == 0
    assert outdated_now() == 0


def test_async_epoll_reads_before_reseed_and_acks_each_change(start):
    """Example 2: EPOLLIN wakes the loop; the handler reads, reseeds, then
    acknowledges (the review's order), and EPOLLIN stops until the next
    change."""
    a = start("async_epoll", "-n", "2")
    a.expect("ready")
    wait_blocked(a, SYS_EPOLL_WAITS)
    assert bump() == 1
    first = a.handled(1)
    assert outdated_now() == 0
    # Level-triggered EPOLLIN ended with the ack: it waits again.
    wait_blocked(a, SYS_EPOLL_WAITS)
    assert a.silent()
    assert bump() == 2
    assert a.handled(2) != first
    assert a.wait() == 0
    assert outdated_now() == 0


def test_mmap_probe_sees_mapped_counter_and_acks_through_write(daemon, start):
    """Example 3 under the preload library: the mapped counter shows each
    change, the cache is rebuilt and the change acknowledged by write()
    alone (the program never read()s the device)."""
    m = start("mmap_probe", "-n", "2", env=preload_env(daemon.page))
    start_secret = m.expect(f"reseed: start, secret ({SECRET})")[1]
    m.expect("ready")
    assert bump() == 1
    first = m.handled(1)
    assert outdated_now() == 0
    assert bump() == 2
    second = m.handled(2)
    assert len({start_secret, first, second}) == 3
    assert m.wait() == 0
    assert outdated_now() == 0


def test_orchestrator_resumes_after_every_watchdog_acked(start):
    """Example 4 with three watchdogs (example 1), stopped by SIGSTOP so the
    orchestrator must wait for them: it pauses, acknowledges itself, and
    VMGENID_WAIT_WATCHERS returns 0 only after all three acknowledged."""
    dogs = [start("watchdog", "-n", "1") for _ in range(3)]
    orch = start("orchestrator", "-n", "1", "-t", WAIT_MS)
    for p in dogs + [orch]:
        p.expect("ready")
    for p in dogs + [orch]:
        wait_blocked(p, {SYS_READ})

    # Stopping a process blocked in read() interrupts the read (EINTR after
    # SIGCONT, which the watchdog retries): none can acknowledge for now.
    for d in dogs:
        os.kill(d.pid, signal.SIGSTOP)
    try:
        for d in dogs:
            wait_stopped(d)
        assert bump() == 1
        orch.expect("change: generation 1")
        orch.expect("pause: generation 1")
        orch.expect("ack: generation 1")
        wait_blocked(orch, {SYS_IOCTL})
        assert outdated_now() == 3
        assert orch.silent(), "WAIT_WATCHERS returned with watchers outdated"
    finally:
        for d in dogs:
            os.kill(d.pid, signal.SIGCONT)

    for d in dogs:
        d.handled(1)
    orch.expect("wait: all watchers done")
    orch.expect("resume: generation 1")
    assert orch.wait() == 0
    for d in dogs:
        assert d.wait() == 0
    assert outdated_now() == 0


def test_examples_after_daemon_restart_reseed_reopen_and_see_next_change(
        daemon, daemon_factory, start):
    """The client rule in all four: the daemon stops (SIGTERM); each program
    treats the device error as a change (reseeds, or the orchestrator
    pauses), reopens once the restarted daemon serves, and handles the next
    change on its new descriptor; the orchestrator waits for the others."""
    dog = start("watchdog", "-n", "1")
    epo = start("async_epoll", "-n", "1")
    mp = start("mmap_probe", "-n", "1", env=preload_env(daemon.page))
    orch = start("orchestrator", "-n", "1", "-t", WAIT_MS)
    mp.expect(f"reseed: start, secret ({SECRET})")
    for p in (dog, epo, mp, orch):
        p.expect("ready")
    wait_blocked(dog, {SYS_READ})
    wait_blocked(epo, SYS_EPOLL_WAITS)
    wait_blocked(orch, {SYS_READ})

    assert daemon.stop() == 0
    assert daemon.wait_node_gone()
    # Blocked reads fail with ECONNABORTED; epoll reports EPOLLERR, and the
    # read after it ENOTCONN.
    for p, err in ((dog, "ECONNABORTED"), (epo, "ENOTCONN")):
        p.expect(f"device: {err}")
        p.expect(f"reseed: device error {err}, secret {SECRET}")
    orch.expect("device: ECONNABORTED")
    orch.expect("pause: device error ECONNABORTED")

    # A same-boot restart with no GUID source bumps once (counter 1) before
    # anyone can open: the reopened descriptors start at 1, up to date.
    restarted = daemon_factory("--max-watchers-per-uid", "8")
    for p in (dog, epo):
        p.expect("reopen: ok")
        p.expect(f"reseed: reopened, secret {SECRET}")
    orch.expect("reopen: ok")
    orch.expect("resume: device error ECONNABORTED")
    # The mapping outlived the restart and shows the restart's bump; the ack
    # on the old descriptor fails: reseed and reopen.
    mp.expect("change: generation 1")
    mp.expect(f"reseed: generation 1, secret {SECRET}")
    mp.expect("device: ENOTCONN")
    mp.expect(f"reseed: device error ENOTCONN, secret {SECRET}")
    mp.expect("reopen: ok")
    assert outdated_now() == 0

    wait_blocked(dog, {SYS_READ})
    wait_blocked(epo, SYS_EPOLL_WAITS)
    wait_blocked(orch, {SYS_READ})
    assert bump() == 2
    for p in (dog, epo, mp):
        p.handled(2)
    orch.expect("change: generation 2")
    orch.expect("pause: generation 2")
    orch.expect("ack: generation 2")
    orch.expect("wait: all watchers done")
    orch.expect("resume: generation 2")
    for p in (dog, epo, mp, orch):
        assert p.wait() == 0, p.seen
    assert outdated_now() == 0
    assert restarted.proc.poll() is None
