# SPDX-License-Identifier: MIT
"""The counter's end (docs/interface.rst, the ioctl table and "The restart
rule"): at 0xffffffff the counter never wraps.  FORCE_GEN_UPDATE and a
NOTIFY with a change due answer EOVERFLOW, a hint nobody waits on
(SIGUSR1) is one line in the log, and nothing moves: no watcher is woken,
the page and the state file keep 0xffffffff, the daemon serves on.  A
restart that would count a change refuses to serve, in one line.  Reached
as root would: a state file of this boot at 0xfffffffe, and a restart."""

import errno
import json
import os
import signal
import uuid

import pytest

from .device import (ack, errno_of, force, notify, open_device, outdated,
                     page_counter, write_guid)
from .processes import SYS_READ, start_reader, wait_blocked
from .test_daemon_lifecycle import saved_state, wait_log

END = 0xFFFFFFFF


def resumed_at_the_end(daemon_factory, *args: str):
    """A daemon at 0xffffffff: restarted from a state file at 0xfffffffe,
    then one bump (the restart's change with --source none, else root's
    FORCE_GEN_UPDATE)."""
    first = daemon_factory(*args)
    assert first.stop() == 0 and first.wait_node_gone()
    state = saved_state(first)
    state["counter"] = END - 1
    with open(first.state, "w") as f:
        json.dump(state, f)
    second = daemon_factory(*args)
    wait_log(second, "cuse-vmgenid: INFO serving", 2)
    if page_counter(second) != END:
        fd = open_device()
        try:
            assert force(fd) == 0
        finally:
            os.close(fd)
    wait_log(second, f"generation {END - 1} -> {END}: ")
    assert page_counter(second) == END
    return second


def test_at_0xffffffff_force_and_notify_are_eoverflow_and_nothing_moves(
        daemon_factory):
    daemon = resumed_at_the_end(daemon_factory)
    fd = open_device()      # up to date, as every new watcher
    try:
        with start_reader() as reader:      # up to date: it blocks
            wait_blocked(reader, SYS_READ)
            assert errno_of(force, fd) == errno.EOVERFLOW
            assert errno_of(notify, fd) == errno.EOVERFLOW  # --source none
            os.kill(daemon.proc.pid, signal.SIGUSR1)   # a hint: a change
            wait_log(daemon, "counter is at its maximum")
            assert ack(fd, END) == 4
            assert outdated(fd) == 0
            wait_blocked(reader, SYS_READ)  # nobody woken
            assert reader.proc.poll() is None
        assert page_counter(daemon) == END
        assert saved_state(daemon)["counter"] == END
    finally:
        os.close(fd)
    assert daemon.proc.poll() is None
    assert "Traceback" not in daemon.log()


def test_a_restart_at_0xffffffff_refuses_to_serve_in_one_line(
        daemon_factory):
    """The change this restart may have missed cannot be published: the
    daemon does not serve a device that would hide it (one line: reboot),
    and touches neither file."""
    daemon = resumed_at_the_end(daemon_factory)
    assert daemon.stop() == 0 and daemon.wait_node_gone()
    with pytest.raises(RuntimeError, match="daemon exited 1") as refused:
        daemon_factory()
    fatal = [line for line in str(refused.value).splitlines()
             if "fatal" in line]
    assert fatal == [f"cuse-vmgenid: ERROR fatal: {daemon.state}: the "
                     f"counter is at its maximum ({END}), so the change "
                     "this restart may have missed cannot be published; "
                     "reboot (a new boot starts at 0)"], fatal
    assert "Traceback" not in daemon.log()
    assert saved_state(daemon)["counter"] == END
    assert page_counter(daemon) == END
    assert not os.path.exists("/dev/vmgenid")


def test_at_0xffffffff_a_new_guid_is_eoverflow_to_notify_and_logged_once(
        daemon_factory, guid_put_back):
    """The GUID tier: a new GUID at the end is EOVERFLOW to NOTIFY's caller
    and one line for a hint; the publisher keeps the GUID it published, so
    the next look finds the change again (and says so again)."""
    daemon = resumed_at_the_end(daemon_factory, "--source", "fwcfg")
    write_guid(uuid.uuid4().bytes_le)   # no notification: nothing tells
    fd = open_device()
    try:
        assert errno_of(notify, fd) == errno.EOVERFLOW
        os.kill(daemon.proc.pid, signal.SIGUSR1)
        wait_log(daemon, "GUID changed (seen on SIGUSR1 from ")
        line = [line for line in daemon.log().splitlines()
                if "GUID changed (seen on SIGUSR1" in line]
        assert len(line) == 1 and "ERROR" in line[0], line
        assert line[0].endswith(f"cannot be published: the counter is at "
                                f"its maximum ({END}); reboot (a new boot "
                                "starts at 0)"), line
        assert errno_of(notify, fd) == errno.EOVERFLOW
        assert page_counter(daemon) == END
    finally:
        os.close(fd)
    assert "Traceback" not in daemon.log()
