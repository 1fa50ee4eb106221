# SPDX-License-Identifier: MIT
"""The daemon under systemd's protocols, without systemd: its sd_notify
datagrams (READY, STATUS= as the figures change, STOPPING at exit) on a
socket the test binds as NOTIFY_SOCKET, and SIGHUP, which has nothing to
reload."""

import os
import signal
import socket

import pytest

from .device import force_from_elsewhere, open_device
from .processes import HANG
from .tool_run import start_daemon, wait_status



@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    """systemd's end of NOTIFY_SOCKET, for the daemon the test starts."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(HANG)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield sock
    sock.close()


def received(sock) -> list:
    """The next datagram's assignments."""
    return sock.recv(4096).decode().split("\n")


def next_event(sock) -> list:
    """The next datagram that is not a STATUS= update alone."""
    while True:
        message = received(sock)
        if not (len(message) == 1 and message[0].startswith("STATUS=")):
            return message


def status_until(sock, line: str) -> list:
    """STATUS= datagrams up to the one saying line (the figures in
    between depend on when the rate-limited writes fell)."""
    seen = []
    while not seen or seen[-1] != ["STATUS=" + line]:
        seen.append(received(sock))
        assert seen[-1][0].startswith("STATUS="), seen
    return seen


def nothing_more(sock) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(HANG)
    return False


def test_status_follows_the_figures_and_stopping_is_said_at_exit(
        daemon_factory, tmp_path, notify_socket):
    served = start_daemon(daemon_factory, tmp_path)
    assert received(notify_socket) == [
        "READY=1", "STATUS=generation 0, 0 watchers, 0 outdated, source none"]
    fd = open_device()
    try:
        assert received(notify_socket) == [
            "STATUS=generation 0, 1 watchers, 0 outdated, source none"]
        force_from_elsewhere()      # opens, forces and closes a watcher
        status_until(notify_socket,
                     "generation 1, 1 watchers, 1 outdated, source none")
        # Reads change no figure: no datagram for them (the status file,
        # written on the same schedule, says the daemon is past them).
        for _ in range(3):
            assert len(os.read(fd, 4)) == 4
        wait_status(served, lambda s: s["counter"] == 1
                    and s["watchers"] == 1, "at generation 1, 1 watcher")
        assert nothing_more(notify_socket)
    finally:
        os.close(fd)
    assert received(notify_socket) == [
        "STATUS=generation 1, 0 watchers, 0 outdated, source none"]
    assert served.stop() == 0
    assert received(notify_socket) == ["STOPPING=1"]


def test_sighup_is_logged_and_ignored(daemon_factory, tmp_path,
                                      notify_socket):
    """Nothing to reload (hooks.d is cuse-vmgenid-hooks'), and SIGHUP's
    default action would end the daemon, every client reseeding."""
    served = start_daemon(daemon_factory, tmp_path)
    assert next_event(notify_socket)[0] == "READY=1"
    served.proc.send_signal(signal.SIGHUP)
    fd = open_device()
    try:
        force_from_elsewhere()
        wait_status(served, lambda s: s["counter"] == 1, "at generation 1")
    finally:
        os.close(fd)
    assert served.proc.poll() is None
    assert "SIGHUP: nothing to reload" in served.log()
    assert served.stop() == 0
    # No RELOADING=1: STATUS= updates, then the end.
    assert next_event(notify_socket) == ["STOPPING=1"]
