# SPDX-License-Identifier: MIT
"""hooks.d: executables the daemon runs on each change, one at a time, in
name order, before its own watcher acknowledges (so VMGENID_WAIT_WATCHERS
returns only once they are done).  Orderings are proven by files the hooks
write, never by timing; a hook that must wait for the test reads a FIFO.

Hooks run as root only from folders root alone can change, up to /: the
hooks folders here are made under /run (root's, 0755), not in tmp_path
(under /tmp, world-writable)."""

import errno
import json
import os
import shutil
import sys
import tempfile
import time

from pathlib import Path

import pytest

from cuse_vmgenid.hooks import OUTPUT_BYTES, OUTPUT_LINES

from .device import REPO, force_from_elsewhere, outdated_now
from .processes import HANG, SYS_IOCTL, start_waiter, wait_blocked
from .tool_run import start_daemon, wait_status

WAIT_DONE = "ioctl=VMGENID_WAIT_WATCHERS ret=0 errno=0"


@pytest.fixture
def trusted_dir():
    """A folder root alone may change, all the way up."""
    folder = tempfile.mkdtemp(prefix="vmgenid-test-", dir="/run")
    os.chmod(folder, 0o755)
    yield Path(folder)
    shutil.rmtree(folder)


@pytest.fixture
def hooks_dir(trusted_dir):
    folder = trusted_dir / "hooks.d"
    folder.mkdir(mode=0o755)
    return folder


def write_hook(folder, name: str, body: str, mode: int = 0o755) -> str:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return str(path)


def logging_hook(folder, name: str, log) -> str:
    """A hook that appends `NAME GENERATION PREVIOUS` to log."""
    return write_hook(folder, name, 'echo "$(basename "$0") '
                      f'$VMGENID_GENERATION $VMGENID_PREVIOUS" >> {log}\n')


def lines(path) -> list:
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def wait_for_watchers() -> str:
    """VMGENID_WAIT_WATCHERS from a fresh watcher, to completion (60 s: a
    hang rescue, far above any hook here)."""
    with start_waiter(60000) as waiter:
        return waiter.line()


def release(fifo) -> None:
    """Let a hook blocked reading fifo go on (open fails ENXIO until the
    hook has opened its end)."""
    deadline = time.monotonic() + HANG
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            break
        except OSError as e:
            assert e.errno == errno.ENXIO, e
            assert time.monotonic() < deadline, f"no hook reads {fifo}"
            time.sleep(0.05)
    os.write(fd, b"go\n")
    os.close(fd)


def results(status) -> list:
    return [(os.path.basename(r["hook"]), r["result"])
            for r in status["hooks"]["results"]]


# -- which hooks, in which order, with what ------------------------------------

def test_hooks_run_in_name_order_with_the_generations(daemon_factory,
                                                      tmp_path, hooks_dir):
    log = tmp_path / "hooks.log"
    logging_hook(hooks_dir, "20-second", log)
    logging_hook(hooks_dir, "10-first", log)
    logging_hook(hooks_dir, ".hidden", log)
    logging_hook(hooks_dir, "15-backup~", log)
    write_hook(hooks_dir, "05-not-executable", f"echo no >> {log}\n", 0o644)
    d = start_daemon(daemon_factory, tmp_path, "--hooks-dir", str(hooks_dir))

    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    assert lines(log) == ["10-first 1 0", "20-second 1 0"]
    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    assert lines(log)[2:] == ["10-first 2 1", "20-second 2 1"]

    status = wait_status(d, lambda s: s["hooks"]["done_for"] == 2,
                         "hooks done for 2")
    assert results(status) == [("10-first", "exit 0"),
                               ("20-second", "exit 0")]
    assert status["outdated"] == 0


def test_the_folder_is_listed_again_at_each_change(daemon_factory, tmp_path,
                                                   hooks_dir):
    log = tmp_path / "hooks.log"
    logging_hook(hooks_dir, "10-first", log)
    start_daemon(daemon_factory, tmp_path, "--hooks-dir", str(hooks_dir))
    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    logging_hook(hooks_dir, "20-added", log)
    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    assert lines(log) == ["10-first 1 0", "10-first 2 1", "20-added 2 1"]


def test_without_executables_there_is_no_hooks_watcher(daemon_factory,
                                                      tmp_path, hooks_dir):
    log = tmp_path / "hooks.log"
    write_hook(hooks_dir, "10-not-executable", f"echo no >> {log}\n", 0o644)
    d = start_daemon(daemon_factory, tmp_path, "--hooks-dir", str(hooks_dir))
    force_from_elsewhere()
    assert outdated_now() == 0      # nobody else watches: nothing to wait
    status = wait_status(d, lambda s: s["counter"] == 1, "at 1")
    assert status["hooks"] == {"dir": str(hooks_dir), "enabled": False}
    assert lines(log) == []


# -- the daemon's watcher acks only after the hooks ------------------------------

def test_wait_watchers_returns_only_after_a_slow_hook(daemon_factory,
                                                      tmp_path, hooks_dir):
    fifo, done = tmp_path / "gate", tmp_path / "done"
    os.mkfifo(fifo)
    hook = write_hook(hooks_dir, "10-slow", f"read line < {fifo}\n"
                      f'echo "$VMGENID_GENERATION" > {done}\n')
    d = start_daemon(daemon_factory, tmp_path, "--hooks-dir", str(hooks_dir))

    force_from_elsewhere()
    with start_waiter(60000) as waiter:
        wait_blocked(waiter, SYS_IOCTL)
        status = wait_status(d, lambda s: s["hooks"]["running"] == hook,
                             "running the hook")
        # Only the daemon's own watcher is left to acknowledge.
        assert status["outdated"] == 1
        with open(os.path.join(os.path.dirname(d.status), "watchers",
                               "all.json")) as f:
            [watcher] = json.load(f)["outdated_watchers"]
        assert (watcher["pid"], watcher["hooks"], watcher["acknowledged"]) \
            == (d.proc.pid, True, 0)
        assert waiter.silent()
        assert not done.exists()
        release(fifo)
        assert waiter.line() == WAIT_DONE
        # The hook wrote this before it exited, and the ack came after.
        assert lines(done) == ["1"]


def test_a_change_during_a_run_gives_one_more_run_for_the_newest(
        daemon_factory, tmp_path, hooks_dir):
    fifo, log = tmp_path / "gate", tmp_path / "hooks.log"
    os.mkfifo(fifo)
    hook = write_hook(hooks_dir, "10-gated", f"read line < {fifo}\n"
                      f'echo "$VMGENID_GENERATION $VMGENID_PREVIOUS" '
                      f'>> {log}\n')
    d = start_daemon(daemon_factory, tmp_path, "--hooks-dir", str(hooks_dir))

    force_from_elsewhere()
    wait_status(d, lambda s: s["hooks"]["running"] == hook
                and s["hooks"]["running_for"] == 1, "running for 1")
    force_from_elsewhere()
    force_from_elsewhere()
    wait_status(d, lambda s: s["hooks"]["queued_for"] == 3, "queued 3")
    release(fifo)
    wait_status(d, lambda s: s["hooks"]["running_for"] == 3, "running 3")
    assert outdated_now() == 1      # the daemon's watcher, not acked yet
    release(fifo)
    assert wait_for_watchers() == WAIT_DONE
    assert lines(log) == ["1 0", "3 1"]


def test_a_hook_that_hangs_is_killed_at_its_timeout_and_the_ack_happens(
        daemon_factory, tmp_path, hooks_dir):
    sleeper, survived, after = (tmp_path / "sleeper", tmp_path / "survived",
                                tmp_path / "after")
    write_hook(hooks_dir, "10-hangs", f"sleep 600 &\necho $! > {sleeper}\n"
               f"wait\necho yes > {survived}\n")
    write_hook(hooks_dir, "20-after",
               f'echo "$VMGENID_GENERATION" > {after}\n')
    d = start_daemon(daemon_factory, tmp_path, "--hooks-dir", str(hooks_dir),
                     "--hook-timeout", "2")

    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    assert lines(after) == ["1"]            # the next hook still ran
    assert not survived.exists()
    sleep_pid = int(lines(sleeper)[0])
    assert not os.path.exists(f"/proc/{sleep_pid}/exe")  # its group died too
    status = wait_status(d, lambda s: s["hooks"]["done_for"] == 1, "done")
    assert results(status) == [("10-hangs", "killed at timeout"),
                               ("20-after", "exit 0")]
    assert "10-hangs (generation 1): still running after 2s: killed" \
        in d.log()


def alive(pid: int) -> bool:
    """Running: not gone, not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False


def still_alive(pid: int, bound_s: float = 60.0) -> bool:
    """Alive after a SIGKILL had every chance to take effect: a bound for
    a loaded machine, not a measure of time."""
    end = time.monotonic() + bound_s
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.1)
    return alive(pid)


def test_a_timed_out_hook_dies_with_a_child_that_left_with_setsid(
        daemon_factory, tmp_path, hooks_dir):
    """setsid -f: the child is in a session of its own and its parent
    exits at once (an orphan): neither killpg nor the parent's death reach
    it; it must die with the hook all the same."""
    escaped = tmp_path / "escaped"
    write_hook(hooks_dir, "10-escapes",
               f"setsid -f sh -c 'echo $$ > {escaped}.new; "
               f"mv {escaped}.new {escaped}; exec sleep 600'\n"
               f"until [ -e {escaped} ]; do sleep 0.05; done\n"
               "exec sleep 600\n")
    d = start_daemon(daemon_factory, tmp_path, "--hooks-dir", str(hooks_dir),
                     "--hook-timeout", "2")
    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    escaped_pid = int(lines(escaped)[0])
    status = wait_status(d, lambda s: s["hooks"]["done_for"] == 1, "done")
    assert results(status) == [("10-escapes", "killed at timeout")]
    # The daemon sent SIGKILL before it reaped the hook; the child, not
    # the daemon's to reap, dies when next scheduled (on a loaded machine
    # after the status said done: CI saw it still in its last steps).
    assert not still_alive(escaped_pid), "the setsid child outlived its hook"


def test_hooks_others_could_change_are_skipped_each_with_its_reason(
        daemon_factory, tmp_path, trusted_dir, hooks_dir):
    log = tmp_path / "hooks.log"
    logging_hook(hooks_dir, "10-ok", log)
    world = logging_hook(hooks_dir, "20-world-writable", log)
    os.chmod(world, 0o757)
    theirs = logging_hook(hooks_dir, "30-nobodys", log)
    os.chown(theirs, 65534, 65534)
    elsewhere = trusted_dir / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    target = logging_hook(elsewhere, "script", log)
    os.chown(target, 65534, 65534)
    (hooks_dir / "40-link-to-nobodys").symlink_to(target)
    d = start_daemon(daemon_factory, tmp_path, "--hooks-dir", str(hooks_dir))

    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    assert lines(log) == ["10-ok 1 0"]
    status = wait_status(d, lambda s: s["hooks"]["done_for"] == 1, "done")
    assert results(status) == [("10-ok", "exit 0")]
    for line in (f"hook {world} skipped: {world} is world-writable",
                 f"hook {theirs} skipped: {theirs} is owned by uid 65534, "
                 "not 0",
                 f"hook {hooks_dir}/40-link-to-nobodys skipped: {target} is "
                 "owned by uid 65534, not 0"):
        assert line in d.log(), d.log()


def test_hooks_in_a_group_writable_folder_are_skipped(daemon_factory,
                                                      tmp_path, hooks_dir):
    log = tmp_path / "hooks.log"
    hook = logging_hook(hooks_dir, "10-a", log)
    os.chmod(hooks_dir, 0o775)
    d = start_daemon(daemon_factory, tmp_path, "--hooks-dir", str(hooks_dir))
    force_from_elsewhere()
    status = wait_status(d, lambda s: s["counter"] == 1, "at 1")
    assert status["hooks"]["enabled"] is False      # nothing it would run
    assert outdated_now() == 0
    assert lines(log) == []
    assert f"hook {hook} skipped: {hooks_dir} is group-writable" in d.log()


def test_a_failing_hook_is_logged_and_the_ack_happens(daemon_factory,
                                                      tmp_path, hooks_dir):
    write_hook(hooks_dir, "10-fails", "exit 3\n")
    d = start_daemon(daemon_factory, tmp_path, "--hooks-dir", str(hooks_dir))
    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    # At error priority: `journalctl -p err` shows it (README).
    assert "ERROR hook " in next(line for line in d.log().splitlines()
                                 if "10-fails (generation 1): exit 3" in line)


# -- the loop keeps serving while a hook runs --------------------------------------

def test_a_hook_can_use_the_device_and_the_status_while_it_runs(
        daemon_factory, tmp_path, hooks_dir):
    seen, wait_rc = tmp_path / "seen.json", tmp_path / "wait-rc"
    tool = f"cd {REPO} && {sys.executable} -m vmgenid"
    hook = write_hook(
        hooks_dir, "10-uses-device",
        # The status shows this hook running: the loop wrote it meanwhile
        # (its exit code says --source none: 7).
        f"until {tool} status --json > {seen};\n"
        f"      grep -q '\"running\": \"'\"$0\"'\"' {seen}; do\n"
        "    sleep 0.1\ndone\n"
        # An open and a poll of the device, answered while we run.
        f"{tool} wait --timeout 0.1\necho $? > {wait_rc}\n")
    start_daemon(daemon_factory, tmp_path, "--hooks-dir", str(hooks_dir),
                 "--hook-timeout", "120")

    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    with open(seen) as f:
        status = json.load(f)
    assert status["counter"] == 1
    assert status["hooks"]["running"] == hook
    assert status["hooks"]["running_for"] == 1
    assert lines(wait_rc) == ["3"]          # exit code of a timed-out wait


# -- a hook's output in the log (issue 20, item 10) ------------------------------

def test_a_hook_writing_without_end_fills_no_log_and_no_pipe(
        daemon_factory, tmp_path, hooks_dir):
    """`yes` with a control sequence, until the timeout kills it: the
    log holds at most the cap, escaped, and one line saying how much was
    dropped; the daemon serves meanwhile, and the next hook runs."""
    after = tmp_path / "after"
    chatty = write_hook(hooks_dir, "10-chatty",
                        "yes \"$(printf 'y\\033]2;PWN\\007')\"\n")
    write_hook(hooks_dir, "20-after", f"echo ran > {after}\n")
    d = start_daemon(daemon_factory, tmp_path, "--hooks-dir", str(hooks_dir),
                     "--hook-timeout", "3")
    force_from_elsewhere()
    assert outdated_now() == 1      # served while the hook writes
    assert wait_for_watchers() == WAIT_DONE
    assert lines(after) == ["ran"]
    with open(d.log_path, "rb") as f:
        log = f.read()
    assert b"\x1b" not in log and b"\x07" not in log
    from_hook = [line for line in log.decode().splitlines()
                 if f"hook {chatty}: " in line]
    assert 1 < len(from_hook) <= OUTPUT_LINES + 1, len(from_hook)
    assert all(line.endswith(f"hook {chatty}: y\\x1b]2;PWN\\x07")
               for line in from_hook[:-1]), from_hook[:2]
    assert "more bytes of output dropped" in from_hook[-1]
    assert sum(map(len, from_hook)) < OUTPUT_BYTES + 4096 * 2
    assert "10-chatty (generation 1): still running after 3s: killed" \
        in d.log()
