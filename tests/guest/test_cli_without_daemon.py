# SPDX-License-Identifier: MIT
"""`vmgenid` and the Python client with no daemon running: every command
ends (within its timeout), says why, and exits with its documented code;
a status file left by a daemon that is gone (or by another version) is
told apart from a running daemon's."""

import asyncio
import errno
import json
import os
import threading

import pytest

import vmgenid as client
from vmgenid import tool

from .daemon_process import DaemonProcess
from .device import NODE, force_from_elsewhere
from .processes import HANG, SYS_POLLS, Child, wait_blocked
from .tool_run import start_daemon, start_vmgenid, vmgenid, wait_status

NO_DEVICE = "vmgenid: no /dev/vmgenid (is cuse-vmgenid running?)\n"


@pytest.fixture
def absent(tmp_path) -> DaemonProcess:
    """The paths of a daemon of this checkout (page, status file), never
    started: no process serves /dev/vmgenid."""
    assert not os.path.exists(NODE), "a daemon serves /dev/vmgenid"
    d = DaemonProcess(str(tmp_path))
    d.status = str(tmp_path / "status.json")
    return d


def stopped_daemon(daemon_factory, tmp_path) -> DaemonProcess:
    """A daemon that ran, wrote its status file and exited (SIGTERM)."""
    d = start_daemon(daemon_factory, tmp_path)
    wait_status(d, lambda s: s["counter"] == 0, "written")
    assert d.stop() == 0, d.log()
    assert d.wait_node_gone()
    return d


def rewrite_status(daemon, change) -> None:
    with open(daemon.status) as f:
        status = json.load(f)
    change(status)
    with open(daemon.status, "w") as f:
        json.dump(status, f)


# -- the device -----------------------------------------------------------------

def test_wait_with_a_timeout_waits_for_the_device_then_exits_3(absent):
    done = vmgenid(absent, "wait", "--timeout", "1")
    assert done.returncode == tool.EXIT_TIMEOUT, done.stderr
    assert done.stdout == ""
    assert done.stderr == NO_DEVICE


def test_wait_without_a_timeout_and_bump_exit_1_at_once(absent):
    for command in (["wait"], ["bump"], ["bump", "--min", "5"]):
        done = vmgenid(absent, *command)
        assert done.returncode == tool.EXIT_ERROR, (command, done.stderr)
        assert done.stdout == ""
        assert done.stderr == NO_DEVICE, command


def test_watch_says_once_that_it_waits_then_serves_when_the_daemon_starts(
        absent, daemon_factory, tmp_path):
    with start_vmgenid(absent, "watch", "--exec",
                       'echo "change $VMGENID_GENERATION"') as watch:
        assert watch.line() == "vmgenid: waiting for /dev/vmgenid"
        served = start_daemon(daemon_factory, tmp_path)
        wait_status(served, lambda s: s["watchers"] == 1, "watched")
        force_from_elsewhere()
        # Only one waiting line, however many times it retried.
        assert watch.line() == "change 1"
        assert watch.silent()


def test_wait_whose_daemon_goes_away_ends_within_its_timeout_with_exit_1(
        daemon_factory, tmp_path):
    served = start_daemon(daemon_factory, tmp_path)
    # 20 s: far above a SIGTERM's exit here; the daemon does not come back.
    with start_vmgenid(served, "wait", "--timeout", "20") as waiter:
        wait_blocked(waiter, SYS_POLLS)
        assert served.stop() == 0
        assert waiter.wait() == tool.EXIT_ERROR
        assert waiter.output() == (
            "vmgenid: no /dev/vmgenid (is cuse-vmgenid running?): it went "
            "away while waiting, a change may have happened\n")


def test_client_open_fails_at_once_like_the_cli(absent):
    """Waiting for the node is asked for (timeout=, wait_for_node=): by
    default client.open() raises NoDevice at once, as `vmgenid wait`
    exits 1 at once.  (The thread: the old default waited forever.)"""
    raised = []

    def open_it():
        try:
            client.open()
        except client.NoDevice as e:
            raised.append(e)

    opening = threading.Thread(target=open_it, daemon=True)
    opening.start()
    opening.join(HANG)
    assert not opening.is_alive(), "client.open() waits for the node"
    assert [(e.errno, e.strerror) for e in raised] == \
        [(errno.ENOENT, "no /dev/vmgenid (is cuse-vmgenid running?)")]


def test_client_async_open_fails_at_once_or_within_its_timeout(absent):
    async def open_it(**kwargs):
        async with client.async_open(**kwargs):
            pass

    for kwargs in ({}, {"timeout": 0.5}):
        with pytest.raises(client.NoDevice) as raised:
            asyncio.run(asyncio.wait_for(open_it(**kwargs), HANG))
        assert raised.value.errno == errno.ENOENT


def test_client_open_with_a_timeout_raises_no_device(absent):
    with pytest.raises(client.NoDevice) as raised:
        client.open(timeout=0.5)
    assert raised.value.errno == errno.ENOENT
    assert raised.value.strerror == \
        "no /dev/vmgenid (is cuse-vmgenid running?)"
    with pytest.raises(client.NoDevice):
        client.open(wait_for_node=False)


# -- status -----------------------------------------------------------------------

def test_status_without_a_status_file_exits_3(absent):
    done = vmgenid(absent, "status")
    assert done.returncode == tool.EXIT_NOT_RUNNING, done.stderr
    assert "cuse-vmgenid is not running" in done.stderr


def test_status_of_a_daemon_that_exited_is_stale_and_exits_3(
        daemon_factory, tmp_path):
    gone = stopped_daemon(daemon_factory, tmp_path)
    for args in (["status"], ["status", "--json"]):
        done = vmgenid(gone, *args)
        assert done.returncode == tool.EXIT_NOT_RUNNING, done.stderr
        assert done.stderr == (f"vmgenid: stale status file {gone.status}: "
                               f"daemon pid {gone.proc.pid} is not running\n")
    assert f"daemon pid {gone.proc.pid} (NOT running)" in \
        vmgenid(gone, "status").stdout.splitlines()


def test_status_whose_pid_now_names_another_process_is_stale(
        daemon_factory, tmp_path):
    gone = stopped_daemon(daemon_factory, tmp_path)
    with Child(["/bin/sh", "-c", "echo started && exec sleep 600"]) as other:
        # A live process with the daemon's pid, as after pid reuse.
        assert other.line() == "started"
        rewrite_status(gone, lambda s: s.update(daemon_pid=other.pid))
        done = vmgenid(gone, "status")
        assert done.returncode == tool.EXIT_NOT_RUNNING, done.stderr
        assert f"daemon pid {other.pid} is not running" in done.stderr


def test_status_file_of_another_schema_is_refused_without_a_traceback(
        daemon_factory, tmp_path):
    gone = stopped_daemon(daemon_factory, tmp_path)
    rewrite_status(gone, lambda s: s.update(schema=999))
    done = vmgenid(gone, "status")
    assert done.returncode == tool.EXIT_ERROR
    assert "has schema 999, this vmgenid reads schema" in done.stderr
    assert "Traceback" not in done.stderr
    # A file from before the schema, without a field this version reads.
    rewrite_status(gone, lambda s: (s.pop("schema"), s.pop("source")))
    done = vmgenid(gone, "status")
    assert done.returncode == tool.EXIT_ERROR
    assert "has schema None" in done.stderr
    assert "Traceback" not in done.stderr
