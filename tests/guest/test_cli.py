# SPDX-License-Identifier: MIT
"""`vmgenid` (client/vmgenid/tool.py) against the real daemon: status, wait,
ack, watch, bump and their exit codes."""

import json
import os

import pytest

from vmgenid import tool

from .device import (NODE, force_from_elsewhere, open_device, outdated,
                     outdated_now, page_counter)
from .processes import NOBODY, SYS_POLLS, Child, wait_blocked
from .tool_run import (read_status, start_daemon, start_vmgenid, vmgenid,
                       wait_status)


@pytest.fixture
def served(daemon_factory, tmp_path):
    return start_daemon(daemon_factory, tmp_path)


def hold_watcher() -> Child:
    """A process (`sleep`, after sh execs it) that opened the device
    itself and never acknowledges."""
    holder = Child(["/bin/sh", "-c",
                    f"exec 3<>{NODE} && echo open && exec sleep 600"])
    assert holder.line() == "open"
    return holder


# -- status -------------------------------------------------------------------

def test_status_json_and_human_output_match_the_device(served):
    with hold_watcher() as holder:
        force_from_elsewhere()
        assert page_counter(served) == 1
        assert outdated_now() == 1                  # the device says so
        wait_status(served, lambda s: s["counter"] == 1
                    and s["outdated"] == 1, "at generation 1, 1 outdated")

        # --source none: hardware changes are not seen, and status says
        # so with its own exit code.
        done = vmgenid(served, "status", "--json")
        assert done.returncode == tool.EXIT_UNSEEN, done.stderr
        status = json.loads(done.stdout)
        # The file, and the watchers from root's view of the lists.
        assert status.pop("only_own_watchers") is False
        listed = status.pop("outdated_watchers")
        assert status == read_status(served)
        assert status["counter"] == 1
        assert status["watchers"] == 1
        assert listed == [
            {"pid": holder.pid, "uid": 0, "comm": "sleep",
             "acknowledged": 0}]
        assert status["source"] == {
            "name": "none", "guid_available": False, "detection": None,
            "unseen": "HARDWARE CHANGES WILL NOT BE SEEN (snapshot restores, "
                      "clones): --source none was asked for"}
        assert status["last_change"]["from"] == 0
        assert status["last_change"]["to"] == 1
        assert status["last_change"]["reason"] == "forced"
        assert status["daemon_pid"] == served.proc.pid
        # Hooks are cuse-vmgenid-hooks', a watcher like any other.
        assert "hooks" not in status
        assert os.stat(served.status).st_mode & 0o777 == 0o644

        human = vmgenid(served, "status")
        assert human.returncode == tool.EXIT_UNSEEN, human.stderr
        lines = human.stdout.splitlines()
        assert lines[0] == ("WARNING: " + status["source"]["unseen"])
        assert lines[1] == "generation 1"
        assert "watchers 1, outdated 1" in lines
        assert (f"  outdated: pid {holder.pid} (sleep) uid 0, "
                "acknowledged 0") in lines
        assert "source none (GUID none)" in lines
        assert f"daemon pid {served.proc.pid} (running)" in lines


def test_status_without_a_status_file_exits_3(served, tmp_path):
    done = vmgenid(served, "status", "--status-file", tmp_path / "absent")
    assert done.returncode == tool.EXIT_NOT_RUNNING
    assert "no status file" in done.stderr


# -- wait -----------------------------------------------------------------------

def test_wait_prints_the_generation_forced_elsewhere_and_acks(served):
    with start_vmgenid(served, "wait") as waiter:
        wait_blocked(waiter, SYS_POLLS)
        force_from_elsewhere()
        assert waiter.line() == "1"
        assert waiter.wait() == 0
    assert outdated_now() == 0


def test_wait_on_an_inherited_descriptor_then_ack_drops_the_count(served):
    fd = open_device()
    try:
        with start_vmgenid(served, "wait", "--fd", fd,
                           pass_fds=(fd,)) as waiter:
            wait_blocked(waiter, SYS_POLLS)
            force_from_elsewhere()
            assert waiter.line() == "1"
            assert waiter.wait() == 0
        assert outdated(fd) == 1        # --fd: left for `vmgenid ack`
        acked = start_vmgenid(served, "ack", "--fd", fd, "1", pass_fds=(fd,))
        assert acked.line() == "1"
        assert acked.wait() == 0
        assert outdated(fd) == 0
    finally:
        os.close(fd)


def test_ack_of_a_generation_that_changed_again_exits_5(served):
    fd = open_device()
    try:
        force_from_elsewhere()
        force_from_elsewhere()
        acked = start_vmgenid(served, "ack", "--fd", fd, "1", pass_fds=(fd,))
        assert acked.wait() == tool.EXIT_CHANGED_AGAIN
        assert "no longer current" in acked.output()
        assert outdated(fd) == 1
        # Without a generation: the current one.
        acked = start_vmgenid(served, "ack", "--fd", fd, pass_fds=(fd,))
        assert acked.line() == "2"
        assert acked.wait() == 0
        assert outdated(fd) == 0
    finally:
        os.close(fd)


def test_ack_needs_a_read_write_descriptor(served):
    fd = os.open(NODE, os.O_RDONLY | os.O_CLOEXEC)
    try:
        force_from_elsewhere()
        acked = start_vmgenid(served, "ack", "--fd", fd, pass_fds=(fd,))
        assert acked.wait() == tool.EXIT_ERROR
        assert "read-only" in acked.output()
        assert outdated(fd) == 1
    finally:
        os.close(fd)


def test_wait_on_a_write_only_descriptor_exits_1_not_6(served):
    """EBADF on every read is the caller's mistake: exit 6 would send the
    documented loop into reopening with the same mistake forever."""
    fd = os.open(NODE, os.O_WRONLY | os.O_CLOEXEC)
    try:
        force_from_elsewhere()
        waiter = start_vmgenid(served, "wait", "--fd", fd, pass_fds=(fd,))
        assert waiter.wait() == tool.EXIT_ERROR
        assert waiter.output() == f"vmgenid: descriptor {fd} is write-only, " \
            f"not read-write: reopen it with exec {fd}<>/proc/self/fd/{fd}\n"
    finally:
        os.close(fd)


def test_ack_without_an_open_descriptor_is_a_usage_error(served):
    done = vmgenid(served, "ack")
    assert done.returncode == tool.EXIT_USAGE
    assert "--fd" in done.stderr
    done = vmgenid(served, "ack", "--fd", "7")   # run() closes fds >= 3
    assert done.returncode == tool.EXIT_USAGE
    assert "descriptor 7 is not open" in done.stderr


def test_wait_timeout_exits_3_and_leaves_the_counter(served):
    done = vmgenid(served, "wait", "--timeout", "0.5")
    assert done.returncode == tool.EXIT_TIMEOUT, done.stderr
    assert done.stdout == ""
    assert "no change within 0.5s" in done.stderr
    assert page_counter(served) == 0


def test_wait_on_a_descriptor_of_a_dead_daemon_exits_6(served):
    fd = open_device()
    try:
        served.kill()
        waiter = start_vmgenid(served, "wait", "--fd", fd, pass_fds=(fd,))
        assert waiter.wait() == tool.EXIT_REOPEN
        assert "reopen" in waiter.output()
    finally:
        os.close(fd)


# -- watch ---------------------------------------------------------------------

def test_watch_runs_the_command_per_change_and_survives_a_restart(served):
    with start_vmgenid(
            served, "watch", "--exec",
            'echo "run $VMGENID_GENERATION $VMGENID_REASON"') as watcher:
        for generation in (1, 2):
            wait_blocked(watcher, SYS_POLLS)
            force_from_elsewhere()
            assert watcher.line() == f"run {generation} change"
        wait_blocked(watcher, SYS_POLLS)
        assert outdated_now() == 0          # acked after the command
        served.kill()
        served.start()      # same page and state; --source none bumps
        assert page_counter(served) == 3
        assert watcher.line() == "run 3 restart"
        wait_blocked(watcher, SYS_POLLS)
        force_from_elsewhere()
        assert watcher.line() == "run 4 change"
        wait_blocked(watcher, SYS_POLLS)
        assert outdated_now() == 0


# -- bump ------------------------------------------------------------------------

def test_bump_and_bump_min(served):
    for args, expected in ((("--min", "10"), 10), (("--min", "5"), 11),
                           ((), 12)):
        done = vmgenid(served, "bump", *args)
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"{expected}\n"
        assert page_counter(served) == expected


def test_bump_min_past_the_limit_exits_1(served):
    done = vmgenid(served, "bump", "--min", "0x80000000")
    assert done.returncode == tool.EXIT_ERROR
    assert "0x7fffffff" in done.stderr
    assert page_counter(served) == 0


def test_bump_as_nobody_is_denied_with_exit_4(served):
    done = vmgenid(served, "bump", prefix=NOBODY)
    assert done.returncode == tool.EXIT_DENIED, (done.stdout, done.stderr)
    assert "permission denied" in done.stderr
    assert done.stdout == ""
    assert page_counter(served) == 0


def test_bump_without_the_daemon_exits_1_at_once(served):
    served.stop()
    assert served.wait_node_gone()
    done = vmgenid(served, "bump")
    assert done.returncode == tool.EXIT_ERROR
    assert "is cuse-vmgenid running?" in done.stderr
