# SPDX-License-Identifier: MIT
"""hooks.d: cuse-vmgenid-hooks, a watcher of the device like any other,
runs the executables of a folder on each change, one at a time, in name
order, then acknowledges (so VMGENID_WAIT_WATCHERS returns only once they
are done).  It survives a daemon restart and a device that is not there
yet (the client rule), and catches up at its own start.  Orderings are
proven by files the hooks write, never by timing; a hook that must wait
for the test reads a FIFO.

Hooks run as root only from folders root alone can change, up to /: the
hooks folders here are made under /run (root's, 0755), not in tmp_path
(under /tmp, world-writable)."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from pathlib import Path

import pytest

from cuse_vmgenid.service.hooks import OUTPUT_BYTES, OUTPUT_LINES

from .daemon_process import DaemonProcess, read_log
from .device import REPO, force_from_elsewhere, outdated_now, page_counter
from .processes import HANG, NOBODY, SYS_IOCTL, start_waiter, wait_blocked
from .tool_run import start_daemon

WAIT_DONE = "ioctl=VMGENID_WAIT_WATCHERS ret=0 errno=0"


class HooksProcess:
    """cuse-vmgenid-hooks of this checkout, for the daemon of a test."""

    def __init__(self, tmp_path, hooks_dir, page: str, *extra: str):
        self.log_path = str(tmp_path / "hooks-runner.log")
        self.state = str(tmp_path / "hooks-state" / "state.json")
        # faulthandler: a runner that does not stop shows where it is.
        self.args = [sys.executable, "-X", "faulthandler",
                     "-m", "cuse_vmgenid.service.hooks",
                     "--hooks-dir", str(hooks_dir), "--page", page,
                     "--state", self.state, "--log-level", "debug", *extra]
        self.proc = None

    def start(self, watching: bool = True) -> "HooksProcess":
        """Started; with watching, once it has the device open (the log
        may hold an earlier runner's lines)."""
        before = self.log().count("watching /dev/vmgenid")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, cwd=REPO, stdout=log,
                                         stderr=log, close_fds=True)
        if watching:
            self.wait_log("watching /dev/vmgenid", before + 1)
        return self

    def log(self) -> str:
        return read_log(self.log_path)

    def wait_log(self, text: str, count: int = 1) -> None:
        deadline = time.monotonic() + HANG * 2
        while self.log().count(text) < count:
            assert self.proc.poll() is None, self.log()
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.05)

    def results(self) -> list:
        with open(self.state) as f:
            return [(os.path.basename(r["hook"]), r["result"])
                    for r in json.load(f)["results"]]

    def stop(self) -> int:
        """SIGTERM, as systemd does; the exit code.  One still running
        after HANG gets SIGABRT (its stack into the log) and fails."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(HANG)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait(HANG)
            raise AssertionError("cuse-vmgenid-hooks did not stop on "
                                 "SIGTERM:\n" + self.log()) from None


@pytest.fixture
def runner_factory(tmp_path):
    started = []

    def start(hooks_dir, daemon, *extra: str, watching: bool = True):
        runner = HooksProcess(tmp_path, hooks_dir, daemon.page, *extra)
        started.append(runner)
        return runner.start(watching)

    yield start
    for runner in started:
        assert runner.stop() == 0, runner.log()
        assert "Traceback" not in runner.log(), runner.log()


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


def wait_exists(path) -> None:
    deadline = time.monotonic() + HANG * 2
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"no {path}"
        time.sleep(0.05)


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


# -- which hooks, in which order, with what ------------------------------------

def test_hooks_run_in_name_order_with_the_generations(
        daemon_factory, runner_factory, tmp_path, hooks_dir):
    log = tmp_path / "hooks.log"
    logging_hook(hooks_dir, "20-second", log)
    logging_hook(hooks_dir, "10-first", log)
    logging_hook(hooks_dir, ".hidden", log)
    logging_hook(hooks_dir, "15-backup~", log)
    logging_hook(hooks_dir, "16-conf.dpkg-old", log)
    write_hook(hooks_dir, "05-not-executable", f"echo no >> {log}\n", 0o644)
    d = start_daemon(daemon_factory, tmp_path)
    runner = runner_factory(hooks_dir, d)

    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    assert lines(log) == ["10-first 1 0", "20-second 1 0"]
    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    assert lines(log)[2:] == ["10-first 2 1", "20-second 2 1"]
    assert runner.results() == [("10-first", "exit 0"),
                                ("20-second", "exit 0")]
    assert outdated_now() == 0


def test_the_folder_is_listed_again_at_each_change(
        daemon_factory, runner_factory, tmp_path, hooks_dir):
    log = tmp_path / "hooks.log"
    logging_hook(hooks_dir, "10-first", log)
    d = start_daemon(daemon_factory, tmp_path)
    runner = runner_factory(hooks_dir, d)
    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    logging_hook(hooks_dir, "20-added", log)
    runner.proc.send_signal(signal.SIGHUP)      # nothing to reload
    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    assert lines(log) == ["10-first 1 0", "10-first 2 1", "20-added 2 1"]
    assert "SIGHUP: nothing to reload" in runner.log()


# -- WAIT_WATCHERS returns only after the hooks ---------------------------------

def test_wait_watchers_returns_only_after_a_slow_hook(
        daemon_factory, runner_factory, tmp_path, hooks_dir):
    fifo, done = tmp_path / "gate", tmp_path / "done"
    os.mkfifo(fifo)
    write_hook(hooks_dir, "10-slow", f"read line < {fifo}\n"
               f'echo "$VMGENID_GENERATION" > {done}\n')
    d = start_daemon(daemon_factory, tmp_path)
    runner = runner_factory(hooks_dir, d)

    force_from_elsewhere()
    with start_waiter(60000) as waiter:
        wait_blocked(waiter, SYS_IOCTL)
        runner.wait_log("10-slow started")
        # The runner's watcher is the one outdated: root's view of the
        # daemon's lists names its pid.
        assert outdated_now() == 1
        with open(os.path.join(os.path.dirname(d.status), "watchers",
                               "all.json")) as f:
            [watcher] = json.load(f)["outdated_watchers"]
        assert (watcher["pid"], watcher["acknowledged"]) == (
            runner.proc.pid, 0)
        assert waiter.silent()
        assert not done.exists()
        release(fifo)
        assert waiter.line() == WAIT_DONE
        # The hook wrote this before it exited, and the ack came after.
        assert lines(done) == ["1"]


def test_a_change_during_a_run_gives_one_more_run_for_the_newest(
        daemon_factory, runner_factory, tmp_path, hooks_dir):
    fifo, log = tmp_path / "gate", tmp_path / "hooks.log"
    os.mkfifo(fifo)
    write_hook(hooks_dir, "10-gated", f"read line < {fifo}\n"
               f'echo "$VMGENID_GENERATION $VMGENID_PREVIOUS" >> {log}\n')
    d = start_daemon(daemon_factory, tmp_path)
    runner = runner_factory(hooks_dir, d)

    force_from_elsewhere()
    runner.wait_log("hooks: 1 to run for generation 1")
    force_from_elsewhere()
    force_from_elsewhere()
    release(fifo)
    runner.wait_log("hooks: 1 to run for generation 3")
    assert outdated_now() == 1      # the runner's watcher, not acked yet
    release(fifo)
    assert wait_for_watchers() == WAIT_DONE
    assert lines(log) == ["1 0", "3 1"]
    assert "for generation 2" not in runner.log()


def test_a_hook_that_hangs_is_killed_at_its_timeout_and_the_ack_happens(
        daemon_factory, runner_factory, tmp_path, hooks_dir):
    sleeper, survived, after = (tmp_path / "sleeper", tmp_path / "survived",
                                tmp_path / "after")
    write_hook(hooks_dir, "10-hangs", f"sleep 600 &\necho $! > {sleeper}\n"
               f"wait\necho yes > {survived}\n")
    write_hook(hooks_dir, "20-after",
               f'echo "$VMGENID_GENERATION" > {after}\n')
    d = start_daemon(daemon_factory, tmp_path)
    runner = runner_factory(hooks_dir, d, "--hook-timeout", "2")

    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    assert lines(after) == ["1"]            # the next hook still ran
    assert not survived.exists()
    sleep_pid = int(lines(sleeper)[0])
    assert not still_alive(sleep_pid)       # its group died too
    assert runner.results() == [("10-hangs", "killed at timeout"),
                                ("20-after", "exit 0")]
    assert "10-hangs (generation 1): still running after 2s: killed" \
        in runner.log()


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
        daemon_factory, runner_factory, tmp_path, hooks_dir):
    """setsid -f: the child is in a session of its own and its parent
    exits at once (an orphan): neither killpg nor the parent's death reach
    it; it must die with the hook all the same."""
    escaped = tmp_path / "escaped"
    write_hook(hooks_dir, "10-escapes",
               f"setsid -f sh -c 'echo $$ > {escaped}.new; "
               f"mv {escaped}.new {escaped}; exec sleep 600'\n"
               f"until [ -e {escaped} ]; do sleep 0.05; done\n"
               "exec sleep 600\n")
    d = start_daemon(daemon_factory, tmp_path)
    runner = runner_factory(hooks_dir, d, "--hook-timeout", "2")
    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    escaped_pid = int(lines(escaped)[0])
    assert runner.results() == [("10-escapes", "killed at timeout")]
    assert not still_alive(escaped_pid), "the setsid child outlived its hook"


# -- whose hooks run -------------------------------------------------------------

def as_nobody(*argv) -> None:
    subprocess.run([*NOBODY, *argv], check=True, timeout=HANG)


def test_hooks_others_could_change_are_skipped_each_with_its_reason(
        daemon_factory, runner_factory, tmp_path, trusted_dir, hooks_dir):
    """Root's hooks.d holding what nobody wrote or can change: nobody's
    own script (through a symlink root put there), a world-writable one,
    one handed to nobody, one under a hostile name; only root's run."""
    log = tmp_path / "hooks.log"
    logging_hook(hooks_dir, "10-ok", log)
    world = logging_hook(hooks_dir, "20-world-writable", log)
    os.chmod(world, 0o757)
    theirs = logging_hook(hooks_dir, "30-nobodys", log)
    os.chown(theirs, 65534, 65534)
    elsewhere = trusted_dir / "nobodys"
    elsewhere.mkdir(mode=0o755)
    os.chown(elsewhere, 65534, 65534)
    target = elsewhere / "script"
    # Written by nobody itself, in its own folder.
    as_nobody("sh", "-c", f"printf '#!/bin/sh\\necho nobody >> {log}\\n' "
              f"> {target} && chmod 755 {target}")
    (hooks_dir / "40-link-to-nobodys").symlink_to(target)
    hostile = "50-\x1b]2;PWN\x07"
    hostile_path = logging_hook(hooks_dir, hostile, log)
    os.chown(hostile_path, 65534, 65534)
    d = start_daemon(daemon_factory, tmp_path)
    runner = runner_factory(hooks_dir, d)

    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    assert lines(log) == ["10-ok 1 0"]
    assert runner.results() == [("10-ok", "exit 0")]
    for line in (f"hook {world} skipped: {world} is world-writable",
                 f"hook {theirs} skipped: {theirs} is owned by uid 65534, "
                 "not 0",
                 f"hook {hooks_dir}/40-link-to-nobodys skipped: {elsewhere} "
                 "is owned by uid 65534, not 0",
                 f"hook {hooks_dir}/50-\\x1b]2;PWN\\x07 skipped: "):
        assert line in runner.log(), runner.log()
    with open(runner.log_path, "rb") as f:
        assert b"\x1b" not in f.read()


def test_hooks_in_a_group_writable_folder_are_skipped(
        daemon_factory, runner_factory, tmp_path, hooks_dir):
    log = tmp_path / "hooks.log"
    hook = logging_hook(hooks_dir, "10-a", log)
    os.chmod(hooks_dir, 0o775)
    d = start_daemon(daemon_factory, tmp_path)
    runner = runner_factory(hooks_dir, d)
    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    assert lines(log) == []
    assert runner.results() == []
    assert f"hook {hook} skipped: {hooks_dir} is group-writable" \
        in runner.log()


def test_a_failing_hook_is_logged_and_the_ack_happens(
        daemon_factory, runner_factory, tmp_path, hooks_dir):
    write_hook(hooks_dir, "10-fails", "exit 3\n")
    d = start_daemon(daemon_factory, tmp_path)
    runner = runner_factory(hooks_dir, d)
    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    # At error priority: `journalctl -p err` shows it (README).
    assert "ERROR hook " in next(
        line for line in runner.log().splitlines()
        if "10-fails (generation 1): exit 3" in line)


# -- the runner follows the client rule ------------------------------------------

def test_a_daemon_restart_is_a_reopen_and_a_missed_change_runs_the_hooks(
        daemon_factory, runner_factory, tmp_path, hooks_dir):
    """--source none: every restart counts as a change (the daemon bumps);
    the runner reopens and runs the hooks for it, then goes on watching."""
    log = tmp_path / "hooks.log"
    logging_hook(hooks_dir, "10-log", log)
    d = start_daemon(daemon_factory, tmp_path)
    runner = runner_factory(hooks_dir, d)
    assert d.stop() == 0
    d.start()
    assert page_counter(d) == 1
    runner.wait_log("reopened (the daemon restarted) at generation 1")
    assert wait_for_watchers() == WAIT_DONE
    deadline = time.monotonic() + HANG
    while lines(log) != ["10-log 1 0"]:
        assert time.monotonic() < deadline, (lines(log), runner.log())
        time.sleep(0.05)
    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    assert lines(log) == ["10-log 1 0", "10-log 2 1"]


def test_a_device_not_there_yet_is_waited_for(
        daemon_factory, runner_factory, tmp_path, hooks_dir):
    log = tmp_path / "hooks.log"
    logging_hook(hooks_dir, "10-log", log)
    # The daemon's files, before it starts.
    page = DaemonProcess(str(tmp_path)).page
    runner = HooksProcess(tmp_path, hooks_dir, page)
    try:
        runner.start(watching=False)
        runner.wait_log("no /dev/vmgenid yet: waiting for it")
        d = start_daemon(daemon_factory, tmp_path)
        runner.wait_log("watching /dev/vmgenid at generation 0")
        force_from_elsewhere()
        assert wait_for_watchers() == WAIT_DONE
        assert lines(log) == ["10-log 1 0"]
        assert d.proc.poll() is None
    finally:
        assert runner.stop() == 0, runner.log()


def test_a_change_while_the_runner_was_away_runs_the_hooks_at_its_start(
        daemon_factory, runner_factory, tmp_path, hooks_dir):
    log = tmp_path / "hooks.log"
    logging_hook(hooks_dir, "10-log", log)
    d = start_daemon(daemon_factory, tmp_path)
    first = runner_factory(hooks_dir, d)
    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    assert first.stop() == 0
    force_from_elsewhere()
    force_from_elsewhere()
    second = runner_factory(hooks_dir, d)
    second.wait_log("generation 1 -> 3 while not watching")
    deadline = time.monotonic() + HANG
    while len(lines(log)) < 2:
        assert time.monotonic() < deadline, second.log()
        time.sleep(0.05)
    assert lines(log) == ["10-log 1 0", "10-log 3 1"]


# -- the device and the status while a hook runs ----------------------------------

def test_a_hook_can_use_the_device_and_the_status_while_it_runs(
        daemon_factory, runner_factory, tmp_path, hooks_dir):
    seen, wait_rc = tmp_path / "seen.json", tmp_path / "wait-rc"
    tool = f"cd {REPO} && {sys.executable} -m vmgenid"
    write_hook(
        hooks_dir, "10-uses-device",
        # The status shows the runner's watcher outdated (its exit code
        # says --source none: 7).
        f"until {tool} status --json --status-file {tmp_path}/status.json"
        f" > {seen};\n"
        f"      grep -q '\"outdated\": 1' {seen}; do\n"
        "    sleep 0.1\ndone\n"
        # An open and a poll of the device, answered while we run.
        f"{tool} wait --timeout 0.1\necho $? > {wait_rc}\n")
    d = start_daemon(daemon_factory, tmp_path)
    runner_factory(hooks_dir, d, "--hook-timeout", "120")

    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    with open(seen) as f:
        status = json.load(f)
    assert (status["counter"], status["outdated"]) == (1, 1)
    assert lines(wait_rc) == ["3"]          # exit code of a timed-out wait


# -- a hook's output in the log (issue 20, item 10) ------------------------------

def test_a_hook_writing_without_end_fills_no_log_and_no_pipe(
        daemon_factory, runner_factory, tmp_path, hooks_dir):
    """`yes` with a control sequence, until the timeout kills it: the
    log holds at most the cap, escaped, and one line saying how much was
    dropped; the next hook runs."""
    after = tmp_path / "after"
    chatty = write_hook(hooks_dir, "10-chatty",
                        "yes \"$(printf 'y\\033]2;PWN\\007')\"\n")
    write_hook(hooks_dir, "20-after", f"echo ran > {after}\n")
    d = start_daemon(daemon_factory, tmp_path)
    runner = runner_factory(hooks_dir, d, "--hook-timeout", "3")
    force_from_elsewhere()
    assert wait_for_watchers() == WAIT_DONE
    assert lines(after) == ["ran"]
    with open(runner.log_path, "rb") as f:
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
        in runner.log()
