# SPDX-License-Identifier: MIT
"""A daemon that sleeps (docs/interface.rst, "Where changes come from"):
where the kernel tells of a change (its vmgenid driver bound: it logs
every change), no thread of the daemon wakes while nothing happens, and
no change is missed for it, records lost or not; where nothing tells, the
GUID poll runs and sees a change nobody announced.

Wake-ups are counted, not timed: each thread's context switches
(/proc/PID/task/TID/status) over an idle window, as the benchmarks count
them (bench/cputime.py).
"""

import glob
import os
import subprocess
import time
import uuid

import pytest

from bench.cputime import thread_switches, wakeups
from cuse_vmgenid.sources import kernellog

from .daemon_process import DaemonProcess
from .device import write_guid
from .processes import HANG, NOBODY, SETTLE, wait_state
from .tool_run import read_status, start_daemon, wait_status

IDLE_WINDOW = 5         # seconds: 50 wake-ups of a 100 ms timer
# Records the flood makes the kernel log: more than its ring holds
# (Debian's CONFIG_LOG_BUF_SHIFT=17, 128 KiB; each takes 100-odd bytes).
FLOOD_RECORDS = 4000


def kmsg_at_end() -> int:
    """/dev/kmsg, non-blocking, past the records there are now."""
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    os.lseek(fd, 0, os.SEEK_END)
    return fd


def kmsg_news(fd: int) -> tuple[list[bytes], bool]:
    """The records logged since fd was read last, and whether some were
    overwritten first (EPIPE: the ring overran)."""
    records, lost = [], False
    while True:
        try:
            record = os.read(fd, 8192)
        except BlockingIOError:
            return records, lost
        except BrokenPipeError:
            lost = True
            continue
        records.append(record)


def idle_wakeups(pid: int) -> tuple[dict[str, int], list[bytes]]:
    """pid's threads' wake-ups over IDLE_WINDOW with nothing to do, and
    the kernel records logged meanwhile (any wakes the GUID poll thread:
    then the window was not idle)."""
    assert wait_state(pid, "S"), "the daemon's threads never all slept"
    time.sleep(SETTLE)
    kmsg = kmsg_at_end()
    try:
        before = thread_switches(pid)
        time.sleep(IDLE_WINDOW)
        after = thread_switches(pid)
        records, _ = kmsg_news(kmsg)
    finally:
        os.close(kmsg)
    return wakeups(before, after), records


def settled(daemon) -> dict:
    """The status, once the daemon wrote it after starting (no write is
    due after it)."""
    return wait_status(daemon, lambda s: s["counter"] == 0, "written")


@pytest.fixture
def daemon_where_nothing_tells(tmp_path):
    """A daemon (--source auto, status in tmp_path) that finds the kernel's
    vmgenid driver bound to nothing: on 5.10 there is none; elsewhere it
    runs in a mount namespace of its own where the driver's sysfs folder
    is an empty tmpfs.  (Not unbound for real: 6.12's driver cannot be
    bound again, its ACPI notify handler stays installed.)"""
    d = DaemonProcess(str(tmp_path), "--source", "auto",
                      "--status", str(tmp_path / "status.json"))
    d.status = str(tmp_path / "status.json")
    folders = glob.glob(kernellog.DRIVERS)
    if folders:
        mounts = " && ".join(f"mount -t tmpfs none {f}" for f in folders)
        d.args[:0] = ["unshare", "--mount", "--propagation", "private",
                      "sh", "-c", f'{mounts} && exec "$@"', "sh"]
    d.start()
    try:
        yield d
    finally:
        assert d.stop() == 0, d.log()
        assert d.wait_node_gone()
        assert "Traceback" not in d.log(), d.log()


needs_driver = pytest.mark.skipif(
    not kernellog.bound_devices(),
    reason="the kernel's vmgenid driver is bound to no device here (5.10 "
    "has none): nothing tells of a change, the GUID poll runs (tested "
    "below)")


@needs_driver
def test_an_idle_daemon_never_wakes_where_the_kernel_tells(daemon_factory,
                                                         tmp_path):
    d = start_daemon(daemon_factory, tmp_path, "--source", "auto")
    status = settled(d)
    woke, records = idle_wakeups(d.proc.pid)
    assert not records, f"the kernel logged in the idle window: {records}"
    assert sum(woke.values()) == 0, f"wake-ups over {IDLE_WINDOW} s: {woke}"
    # The GUID tier, its thread among those counted.
    assert status["source"]["name"] == "fwcfg"
    assert any(t.startswith("vmgenid-guid/") for t in woke), woke
    assert status["source"]["detection"] == "event"
    assert "GUID source: looked at on event, the kernel's vmgenid driver " \
        "is bound to " in d.log()


def test_where_nothing_tells_the_guid_poll_runs_and_sees_a_change(
        guid_put_back, daemon_where_nothing_tells):
    d = daemon_where_nothing_tells
    status = settled(d)
    assert status["source"]["detection"] == "poll"
    assert "GUID source: looked at on poll, every 100 ms: nothing tells " \
        "of a change here" in d.log()
    woke, _ = idle_wakeups(d.proc.pid)
    [poll_thread] = [t for t in woke if t.startswith("vmgenid-guid/")]
    assert woke[poll_thread] > 0, woke
    # A change nobody announces (no hint, no kernel record): the poll.
    write_guid(uuid.uuid4().bytes_le)
    status = wait_status(d, lambda s: s["counter"] == 1, "at 1 (new GUID)")
    assert status["last_change"]["reason"] == "hardware"
    assert "GUID changed (seen on GUID poll thread" in d.log()


# Run by nobody inside a user namespace of its own (Debian lets any user
# make one): each mount(2) with an option tmpfs does not know makes the
# kernel log "tmpfs: Unknown parameter '...'", a record of the kernel's
# own, with no rate limit.  nobody cannot write /dev/kmsg itself.  (The
# system's python: inside the namespace the checkout's is not executable.)
FLOODER = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
for i in range(int(sys.argv[1])):
    libc.mount(b"none", b"/tmp", b"tmpfs", 0,
               b"cuse-vmgenid-flood-%06d-" % i + b"x" * 64)
"""


def flood_kmsg(records: int) -> None:
    """records kernel records, logged as fast as nobody can."""
    done = subprocess.run([*NOBODY, "unshare", "--user", "--map-root-user",
                           "--mount", "/usr/bin/python3", "-c", FLOODER,
                           str(records)], capture_output=True, text=True,
                          timeout=HANG)
    assert done.returncode == 0, done.stderr


@needs_driver
def test_records_lost_before_the_thread_read_them_miss_no_change(
        daemon_factory, tmp_path, guid_put_back):
    """The event path's promise: the kernel's ring overran (a flood of
    kernel log, by nobody) while the thread could not read, a change came
    in between, and the thread, reading the ring from the oldest record
    left, still compares the GUID and publishes it once."""
    denied = subprocess.run([*NOBODY, "sh", "-c", "echo x > /dev/kmsg"],
                            capture_output=True, text=True, timeout=HANG)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    d = start_daemon(daemon_factory, tmp_path, "--source", "auto")
    assert settled(d)["source"]["detection"] == "event"
    assert wait_state(d.proc.pid, "S"), "the daemon never slept"
    probe = kmsg_at_end()   # where the thread's reader is too
    try:
        # The thread cannot read while the process is stopped.
        os.kill(d.proc.pid, 19)       # SIGSTOP
        try:
            flood_kmsg(FLOOD_RECORDS // 2)
            write_guid(uuid.uuid4().bytes_le)
            flood_kmsg(FLOOD_RECORDS // 2)
        finally:
            os.kill(d.proc.pid, 18)   # SIGCONT
        _, lost = kmsg_news(probe)
    finally:
        os.close(probe)
    assert lost, "the flood did not overrun the kernel's ring"
    status = wait_status(d, lambda s: s["counter"] >= 1, "at 1 (new GUID)")
    assert status["last_change"]["reason"] == "hardware"
    assert "GUID changed (seen on GUID poll thread" in d.log()
    # Once: the records that woke it carried no second change.
    time.sleep(SETTLE)
    assert read_status(d)["counter"] == 1
