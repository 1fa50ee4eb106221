# SPDX-License-Identifier: MIT
"""The daemon under systemd's protocols, without systemd: its sd_notify
datagrams (READY, STATUS= as the figures change, RELOADING/READY around a
reload, STOPPING at exit) on a socket the test binds as NOTIFY_SOCKET, and
SIGHUP (systemctl reload) listing hooks.d again."""

import os
import signal
import socket

import pytest

from .device import force_from_elsewhere, open_device
from .processes import HANG
from .test_hooks import (hooks_dir, lines, logging_hook,  # noqa: F401
                         trusted_dir, wait_for_watchers)
from .tool_run import start_daemon, wait_status

WAIT_DONE = "ioctl=VMGENID_WAIT_WATCHERS ret=0 errno=0"


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


def test_sighup_lists_hooks_again_starting_and_stopping_the_runner(
        daemon_factory, tmp_path, notify_socket, hooks_dir):
    log = tmp_path / "hooks.log"
    served = start_daemon(daemon_factory, tmp_path,
                          "--hooks-dir", str(hooks_dir))
    assert next_event(notify_socket)[0] == "READY=1"
    wait_status(served, lambda s: not s["hooks"]["enabled"], "no hooks")

    logging_hook(hooks_dir, "10-log", log)
    served.proc.send_signal(signal.SIGHUP)
    assert next_event(notify_socket) == ["RELOADING=1"]
    assert next_event(notify_socket)[0] == "READY=1"
    wait_status(served, lambda s: s["hooks"]["enabled"], "hooks enabled")
    force_from_elsewhere()
    # The daemon's watcher acks once the hook has run.
    assert wait_for_watchers() == WAIT_DONE
    assert lines(log) == ["10-log 1 0"]

    os.unlink(hooks_dir / "10-log")
    served.proc.send_signal(signal.SIGHUP)
    assert next_event(notify_socket) == ["RELOADING=1"]
    wait_status(served, lambda s: not s["hooks"]["enabled"], "no hooks")
    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    assert lines(log) == ["10-log 1 0"]
    assert served.proc.poll() is None
