# SPDX-License-Identifier: MIT
"""The acpid hook: the real acpid, fed a synthesized event through its
-e event file, runs packaging/acpid/vmgenid's action, whose forwarder
(native/tools/vmgenid-notify) sends VMGENID_NOTIFY to the daemon."""

import os
import shutil
import subprocess
import time

import pytest

from .device import native, open_device, outdated, read_counter

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
RULE = os.path.join(REPO, "packaging", "acpid", "vmgenid")
ACPID = shutil.which("acpid") or "/usr/sbin/acpid"
QEMU_NOTIFY = b"QEMUVGID:00 QEMUVGID:00 00000080 00000000\n"
POWER_BUTTON = b"button/power PBTN 00000080 00000000\n"


@pytest.fixture
def acpid(tmp_path):
    """acpid reading events from a FIFO, with the packaged rule whose
    action points at this checkout's forwarder."""
    confdir = tmp_path / "events"
    confdir.mkdir()
    with open(RULE) as f:
        rule = f.read()
    assert "action=/usr/libexec/cuse-vmgenid/vmgenid-notify" in rule
    (confdir / "vmgenid").write_text(rule.replace(
        "/usr/libexec/cuse-vmgenid/vmgenid-notify",
        native("vmgenid-notify")))
    fifo = tmp_path / "event"
    os.mkfifo(fifo)
    log = open(tmp_path / "acpid.log", "wb")
    proc = subprocess.Popen(
        [ACPID, "-f", "-d", "-l", "-S", "-c", str(confdir), "-e", str(fifo),
         "-p", str(tmp_path / "acpid.pid"), "-L", str(tmp_path / "nolock")],
        stdout=log, stderr=subprocess.STDOUT)
    writer = os.open(fifo, os.O_WRONLY)  # blocks until acpid opened it
    yield writer, tmp_path / "acpid.log"
    # Ended while the FIFO still has its writer: at EOF, acpid reopens it,
    # and a SIGTERM there once left it blocked in open() for a minute.
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        # acpid's exit is not under test.
        proc.kill()
        proc.wait(60)
    os.close(writer)
    log.close()


def wait_for(predicate, timeout: float = 60) -> bool:
    """A hang rescue, not a timing check."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_acpid_forwards_the_vmgenid_event_and_the_daemon_bumps(daemon, acpid):
    writer, acpid_log = acpid
    fd = open_device()
    try:
        os.write(writer, POWER_BUTTON)
        os.write(writer, QEMU_NOTIFY)
        assert wait_for(lambda: outdated(fd) == 1), acpid_log.read_text()
        assert read_counter(fd) == 1
        assert wait_for(lambda: "generation changed" in acpid_log.read_text())
    finally:
        os.close(fd)
    log = daemon.log()
    assert "VMGENID_NOTIFY by pid" in log and "(vmgenid-notify)" in log
    # The power button matched no rule: exactly one bump.
    assert log.count(" -> ") == 1, log


def test_acpid_ignores_other_events(daemon, acpid):
    writer, acpid_log = acpid
    os.write(writer, POWER_BUTTON)
    assert wait_for(lambda: "PBTN" in acpid_log.read_text())
    fd = open_device()
    try:
        assert outdated(fd) == 0
    finally:
        os.close(fd)
    assert " -> " not in daemon.log()
