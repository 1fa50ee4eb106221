# SPDX-License-Identifier: MIT
"""The daemon's life: start (READY=1, node mode), SIGTERM, SIGKILL, restarts
on the same page and state files, and its log of bumps (docs/interface.rst,
"The restart rule" and "The daemon")."""

import json
import os
import re
import select
import signal
import socket
import stat
import struct
import subprocess
import time

import pytest

from .daemon_process import DaemonProcess
from .device import (NODE, REPO, ack, bump, errno_name, errno_of, force,
                     native, open_device, outdated, page_counter, raw_ioctl,
                     raw_read, read_counter)
from .processes import (HANG, SYS_IOCTL, SYS_READ, start_reader,
                        start_waiter, wait_blocked)
from cuse_vmgenid.device.statefile import current_boot_id
from vmgenid import ioctls

BUMP_LINE = re.compile(r"generation (\d+) -> (\d+): (.*)$")


def saved_state(daemon) -> dict:
    with open(daemon.state) as f:
        return json.load(f)


def bumps(daemon) -> list:
    """(old, new, why) for every bump line of the daemon's log."""
    found = []
    for line in daemon.log().splitlines():
        m = BUMP_LINE.search(line)
        if m:
            found.append((int(m[1]), int(m[2]), m[3]))
    return found


def wait_log(daemon, text: str, count: int = 1) -> None:
    deadline = time.monotonic() + HANG
    while daemon.log().count(text) < count:
        assert time.monotonic() < deadline, \
            f"{text!r} x{count} not in the log:\n{daemon.log()}"
        time.sleep(0.05)


def restart(daemon_factory, starts: int):
    """daemon_factory() again, once this start's own `serving` line is in
    the shared log (DaemonProcess.serving() may see an older start's)."""
    d = daemon_factory()
    wait_log(d, "cuse-vmgenid: INFO serving", starts)
    return d


def old_fd_errors(fd: int) -> dict:
    """What each call gives on a descriptor of a daemon that is gone."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    return {
        "read": errno_name(errno_of(raw_read, fd)),
        "write": errno_name(errno_of(os.write, fd, struct.pack("=I", 3))),
        "ioctl": errno_name(errno_of(raw_ioctl, fd,
                                     ioctls.GET_OUTDATED_WATCHERS)),
        "poll": p.poll(0),
    }


def dead(fd: int) -> dict:
    return {"read": "ENOTCONN", "write": "ENOTCONN", "ioctl": "ENOTCONN",
            "poll": [(fd, select.POLLERR)]}


def write_foreign_state(path: str, counter: int) -> str:
    other = "00000000-0000-4000-8000-000000000000"
    assert other != current_boot_id()
    with open(path, "w") as f:
        json.dump({"boot_id": other, "counter": counter, "guid": None}, f)
    os.chmod(path, 0o600)
    return other


# -- starting -----------------------------------------------------------------

def test_mode_option_sets_node_mode_0640(daemon_factory):
    daemon_factory("--mode", "0640")
    st = os.stat(NODE)
    assert stat.S_ISCHR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o640


@pytest.mark.parametrize("abstract", [False, True],
                         ids=["path-socket", "abstract-socket"])
def test_daemon_says_ready_to_notify_socket_once_node_exists(tmp_path,
                                                             abstract):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"cuse-vmgenid-test-{os.getpid()}"
        sock.bind("\0" + name)
        address = "@" + name
    else:
        address = str(tmp_path / "notify")
        sock.bind(address)
    d = DaemonProcess(str(tmp_path))
    try:
        with open(d.log_path, "ab") as log:
            d.proc = subprocess.Popen(
                d.args, cwd=REPO, stdout=log, stderr=log, close_fds=True,
                env=dict(os.environ, NOTIFY_SOCKET=address))
        sock.settimeout(HANG)
        message = sock.recv(4096).decode()
        # The node existed, with its mode set, when READY=1 was sent.
        st = os.stat(NODE)
        assert stat.S_ISCHR(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o666
        assert "READY=1" in message.split("\n"), message
    finally:
        rc = d.stop()
    assert rc == 0, d.log()
    assert d.wait_node_gone()
    sock.setblocking(False)
    later = []
    while select.select([sock], [], [], 0)[0]:
        later.append(sock.recv(4096).decode())
    sock.close()
    assert not [m for m in later if "READY=1" in m.split("\n")], later
    assert "Traceback" not in d.log(), d.log()


# -- SIGTERM ------------------------------------------------------------------

def test_sigterm_exits_0_fails_blocked_read_and_keeps_counter(daemon):
    for expected in (1, 2, 3):
        assert bump() == expected
    assert page_counter(daemon) == 3
    old = open_device()
    try:
        with start_reader() as r:
            wait_blocked(r, SYS_READ)
            assert daemon.stop() == 0
            # The daemon answers what it still holds before it goes.
            assert r.line() == "read ret=-1 value=0 errno=ECONNABORTED"
            assert r.wait() == 1
        assert old_fd_errors(old) == dead(old)
    finally:
        os.close(old)
    assert daemon.wait_node_gone()

    st = os.stat(daemon.state)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert saved_state(daemon)["counter"] == 3
    assert saved_state(daemon)["boot_id"] == current_boot_id()

    st = os.stat(daemon.page)
    assert stat.S_IMODE(st.st_mode) == 0o444
    assert st.st_size == 4096
    assert page_counter(daemon) == 3
    assert "stopping at generation 3" in daemon.log()


def test_sigterm_restart_same_boot_bumps_once_on_same_page(daemon_factory):
    first = daemon_factory()
    for expected in (1, 2):
        assert bump() == expected
    page_st = os.stat(first.page)
    assert first.stop() == 0
    assert first.wait_node_gone()

    second = restart(daemon_factory, 2)
    assert page_counter(second) == 3
    assert saved_state(second)["counter"] == 3
    st = os.stat(second.page)
    assert (st.st_dev, st.st_ino) == (page_st.st_dev, page_st.st_ino)
    # Exactly one bump for the restart (the log covers both starts).
    assert [b[:2] for b in bumps(second)] == [(0, 1), (1, 2), (2, 3)]
    assert "restart" in bumps(second)[-1][2]
    assert bump() == 4


def test_state_file_of_another_boot_starts_at_0(daemon_factory, tmp_path):
    write_foreign_state(str(tmp_path / "state"), 7)
    d = daemon_factory()
    assert page_counter(d) == 0
    assert saved_state(d)["counter"] == 0
    assert saved_state(d)["boot_id"] == current_boot_id()
    assert bumps(d) == []
    fd = open_device(os.O_RDWR | os.O_NONBLOCK)
    try:
        assert errno_name(errno_of(raw_read, fd)) == "EAGAIN"  # up to date
        force(fd)
        assert read_counter(fd) == 1
    finally:
        os.close(fd)


# -- SIGKILL ------------------------------------------------------------------

def test_sigkill_fails_blocked_calls_and_restart_bumps_once_on_same_page(
        daemon_factory):
    first = daemon_factory()
    stale = open_device()           # outdated at the kill
    for expected in (1, 2, 3):
        assert bump() == expected
    old = open_device()             # up to date at the kill
    try:
        page_st = os.stat(first.page)
        with start_reader() as r, start_waiter() as w:
            wait_blocked(r, SYS_READ)
            wait_blocked(w, SYS_IOCTL)
            first.kill()

            # Blocked calls fail at once: the kernel aborts the connection.
            assert r.line() == "read ret=-1 value=0 errno=ECONNABORTED"
            assert w.line() == \
                "ioctl=VMGENID_WAIT_WATCHERS ret=-1 errno=ECONNABORTED"
            assert r.wait() == 1
            assert w.wait() == 1
        assert first.wait_node_gone()

        assert old_fd_errors(old) == dead(old)
        second = restart(daemon_factory, 2)

        # Same boot: never lower, and exactly one bump (a change may have
        # been missed while it was down).
        assert page_counter(second) == 4
        assert saved_state(second)["counter"] == 4
        assert [b[:2] for b in bumps(second)] == [
            (0, 1), (1, 2), (2, 3), (3, 4)]
        assert "restart" in bumps(second)[-1][2]
        st = os.stat(second.page)
        assert (st.st_dev, st.st_ino) == (page_st.st_dev, page_st.st_ino)

        # Old descriptors stay dead, even with a new daemon serving.
        assert old_fd_errors(old) == dead(old)
        assert old_fd_errors(stale) == dead(stale)
    finally:
        os.close(old)
        os.close(stale)

    fd = open_device()
    try:
        assert outdated(fd) == 0
        force(fd)
        assert read_counter(fd) == 5
        assert ack(fd, 5) == 4
    finally:
        os.close(fd)


# -- the log ------------------------------------------------------------------

def run_pid(*argv: str) -> int:
    """Runs argv to completion (exit 0); returns its pid."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate(timeout=HANG)
    assert p.returncode == 0, out
    return p.pid


def test_log_has_one_line_per_bump_with_old_new_why_and_who(daemon):
    ioctl = native("vmgenid-ioctl")
    pids = [run_pid(ioctl, "force"), run_pid(ioctl, "force-min", "10"),
            run_pid(ioctl, "notify")]
    daemon.proc.send_signal(signal.SIGUSR1)
    wait_log(daemon, "generation 11 -> 12")

    lines = bumps(daemon)
    assert [(old, new) for old, new, _ in lines] == [
        (0, 1), (1, 10), (10, 11), (11, 12)], daemon.log()
    whys = [why for _, _, why in lines]
    kinds = ["FORCE_GEN_UPDATE by", "FORCE_GEN_UPDATE_MIN 10 by",
             "VMGENID_NOTIFY by"]
    for why, kind, pid in zip(whys[:3], kinds, pids, strict=True):
        assert kind in why
        assert f"pid {pid} (vmgenid-ioctl) uid 0" in why
    assert "SIGUSR1" in whys[3]
    # Restart bumps ("restart: ...") are checked by the restart tests.


def test_sigusr1_bump_log_names_the_sender(daemon):
    """Who asked for the bump: the signal's sender pid and command name
    (as for the ioctls).  Python's signal module gives no siginfo, so the
    daemon needs sigwaitinfo() or a signalfd for this.  The sender (sh's
    own kill) lives on until the bump is logged: the daemon reads its name
    from /proc, and a sender gone by then is named "?"."""
    sender = subprocess.Popen(
        ["sh", "-c", f"kill -USR1 {daemon.proc.pid} && sleep {HANG}"],
        start_new_session=True)
    try:
        wait_log(daemon, "generation 0 -> 1")
    finally:
        os.killpg(sender.pid, signal.SIGKILL)
        sender.wait()
    (line,) = bumps(daemon)
    assert "SIGUSR1" in line[2]
    assert f"pid {sender.pid} (sh)" in line[2], line
