# SPDX-License-Identifier: MIT
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
import signal

import pytest

from .device import NATIVE, bump, outdated_now
from .processes import (HANG, SYS_EPOLL_WAITS, SYS_IOCTL, SYS_READ, Child,
                        wait_blocked, wait_state)

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


class Example(Child):
    """One example program: a Child that keeps the lines it printed (for
    failure messages) and knows the lines of a handled change."""

    def __init__(self, name: str, *args: str, env: dict | None = None):
        super().__init__([example_path(name), *args], env=env)
        self.seen = []

    def so_far(self) -> str:
        return f"{self.seen} {self._buf!r}"

    def line(self, timeout: float = HANG) -> str:
        self.seen.append(super().line(timeout))
        return self.seen[-1]

    def match_line(self, pattern: str) -> re.Match:
        """The next line, which must match pattern (re.fullmatch)."""
        line = self.line()
        match = re.fullmatch(pattern, line)
        assert match, f"{self.argv}: {line!r} !~ {pattern!r}; " \
                      f"so far {self.seen}"
        return match

    def handled(self, gen: int) -> str:
        """change, reseed, ack of generation gen; returns the new secret."""
        self.match_line(f"change: generation {gen}")
        secret = self.match_line(
            f"reseed: generation {gen}, secret ({SECRET})")
        self.match_line(f"ack: generation {gen}")
        return secret[1]


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
    w.match_line("ready")
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
    a.match_line("ready")
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
    start_secret = m.match_line(f"reseed: start, secret ({SECRET})")[1]
    m.match_line("ready")
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
        p.match_line("ready")
    for p in dogs + [orch]:
        wait_blocked(p, {SYS_READ})

    # Stopping a process blocked in read() interrupts the read (EINTR after
    # SIGCONT, which the watchdog retries): none can acknowledge for now.
    for d in dogs:
        os.kill(d.pid, signal.SIGSTOP)
    try:
        for d in dogs:
            assert wait_state(d.pid, "T"), f"never stopped: {d.argv}"
        assert bump() == 1
        orch.match_line("change: generation 1")
        orch.match_line("pause: generation 1")
        orch.match_line("ack: generation 1")
        wait_blocked(orch, {SYS_IOCTL})
        assert outdated_now() == 3
        assert orch.silent(), "WAIT_WATCHERS returned with watchers outdated"
    finally:
        for d in dogs:
            os.kill(d.pid, signal.SIGCONT)

    for d in dogs:
        d.handled(1)
    orch.match_line("wait: all watchers done")
    orch.match_line("resume: generation 1")
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
    mp.match_line(f"reseed: start, secret ({SECRET})")
    for p in (dog, epo, mp, orch):
        p.match_line("ready")
    wait_blocked(dog, {SYS_READ})
    wait_blocked(epo, SYS_EPOLL_WAITS)
    wait_blocked(orch, {SYS_READ})

    assert daemon.stop() == 0
    assert daemon.wait_node_gone()
    # Blocked reads fail with ECONNABORTED; epoll reports EPOLLERR, and the
    # read after it ENOTCONN.
    for p, err in ((dog, "ECONNABORTED"), (epo, "ENOTCONN")):
        p.match_line(f"device: {err}")
        p.match_line(f"reseed: device error {err}, secret {SECRET}")
    orch.match_line("device: ECONNABORTED")
    orch.match_line("pause: device error ECONNABORTED")

    # A same-boot restart with no GUID source bumps once (counter 1) before
    # anyone can open: the reopened descriptors start at 1, up to date.
    restarted = daemon_factory("--max-watchers-per-uid", "8")
    for p in (dog, epo):
        p.match_line("reopen: ok")
        p.match_line(f"reseed: reopened, secret {SECRET}")
    orch.match_line("reopen: ok")
    orch.match_line("resume: device error ECONNABORTED")
    # The mapping outlived the restart and shows the restart's bump; the ack
    # on the old descriptor fails: reseed and reopen.
    mp.match_line("change: generation 1")
    mp.match_line(f"reseed: generation 1, secret {SECRET}")
    mp.match_line("device: ENOTCONN")
    mp.match_line(f"reseed: device error ENOTCONN, secret {SECRET}")
    mp.match_line("reopen: ok")
    assert outdated_now() == 0

    wait_blocked(dog, {SYS_READ})
    wait_blocked(epo, SYS_EPOLL_WAITS)
    wait_blocked(orch, {SYS_READ})
    assert bump() == 2
    for p in (dog, epo, mp):
        p.handled(2)
    orch.match_line("change: generation 2")
    orch.match_line("pause: generation 2")
    orch.match_line("ack: generation 2")
    orch.match_line("wait: all watchers done")
    orch.match_line("resume: generation 2")
    for p in (dog, epo, mp, orch):
        assert p.wait() == 0, p.seen
    assert outdated_now() == 0
    assert restarted.proc.poll() is None
