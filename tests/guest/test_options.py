# SPDX-License-Identifier: MIT
"""Values out of range (issue 20, items 4 and 9): every numeric option of
both commands and --devname is refused at parse time, exit 2 and one line,
before anything is opened (cuse_vmgenid/service/options.py holds the ranges).

`vmgenid` runs as `nobody`, as any user may; the daemon as root (the
careless admin): its page and state file stay as they were, nothing else
appears in its folder, and no node is made.
"""

import os
import signal
import stat
import subprocess
import time

import pytest

from .daemon_process import REPO, DaemonProcess
from .device import NODE, page_counter
from .processes import HANG, NOBODY
from .tool_run import start_daemon, vmgenid


def error_line(done: subprocess.CompletedProcess, prog: str,
               option: str) -> str:
    """What is wrong with done, or '' if it exited 2 with nothing on
    stdout and one line on stderr: argparse's error for option."""
    lines = done.stderr.splitlines()
    if done.returncode != 2 or done.stdout or len(lines) != 1 or \
            not lines[0].startswith(f"{prog}: error: argument {option}: "):
        return f"exit {done.returncode}: {done.stdout!r} {done.stderr!r}"
    return ""


# -- vmgenid, as nobody ----------------------------------------------------

VMGENID_OUT_OF_RANGE = [
    ("wait", "--timeout", "inf"), ("wait", "--timeout", "1e300"),
    ("wait", "--timeout", "-1"), ("wait", "--timeout", "nan"),
    ("wait", "--timeout", "2147484"), ("wait", "--fd", "99999999999999"),
    ("bump", "--min", "-1"), ("ack", "--fd", "-3")]


def test_vmgenid_out_of_range_as_nobody_exits_2_with_one_line(
        daemon_factory, tmp_path):
    served = start_daemon(daemon_factory, tmp_path)
    wrong = {}
    for command, option, value in VMGENID_OUT_OF_RANGE:
        done = vmgenid(served, command, option, value, prefix=NOBODY)
        wrong[command, option, value] = error_line(
            done, f"vmgenid {command}", option)
    assert {k: v for k, v in wrong.items() if v} == {}
    assert page_counter(served) == 0
    assert served.proc.poll() is None, served.log()


# -- the daemon, as root ---------------------------------------------------

PAGE = (7).to_bytes(4, "little") + bytes(4092)
STATE = b'{"a state file": "left alone"}\n'


def refused(tmp_path, *options: str) -> subprocess.CompletedProcess:
    """The daemon of this checkout run with options over a folder holding a
    page and a state file; it must end at once (the hang rescue kills one
    that serves)."""
    d = DaemonProcess(str(tmp_path))
    for path, data in ((d.page, PAGE), (d.state, STATE)):
        with open(path, "wb") as f:
            f.write(data)
    before = {name: os.stat(tmp_path / name).st_mtime_ns
              for name in os.listdir(tmp_path)}
    args = [*d.args, "--status", str(tmp_path / "status.json"), *options]
    done = subprocess.run(args, capture_output=True, text=True, cwd=REPO,
                          timeout=HANG)
    node_made = os.path.exists(NODE)
    after = {name: os.stat(tmp_path / name).st_mtime_ns
             for name in os.listdir(tmp_path)}
    assert after == before, "the daemon touched its folder"
    with open(d.page, "rb") as f:
        assert f.read() == PAGE
    with open(d.state, "rb") as f:
        assert f.read() == STATE
    assert not node_made
    return done


@pytest.mark.parametrize("option,value", [
    ("--poll-interval-ms", "999999999999"), ("--poll-interval-ms", "0"),
    ("--poll-interval-ms", "-5"),
    ("--max-watchers-per-uid", "-1"), ("--max-watchers-per-uid", "0"),
    ("--max-watchers-per-uid", "99999999999999999999"),
    ("--mode", "1777"), ("--mode", "-1"),
    ("--page", ""), ("--state", "")])
def test_daemon_out_of_range_exits_2_before_opening_anything(
        tmp_path, option, value):
    assert error_line(refused(tmp_path, option, value), "cuse-vmgenid",
                      option) == ""


@pytest.mark.parametrize("name", [
    "", ".", "..", "../x", "a/b", "a!b", "x" * 300, "-h", "a\x1b[8mb",
    "v" * 64])
def test_devname_that_is_no_name_under_dev_exits_2(tmp_path, name):
    assert error_line(refused(tmp_path, "--devname", name), "cuse-vmgenid",
                      "--devname") == ""


# -- the node's mode -------------------------------------------------------

def test_another_devname_is_served_with_its_mode(tmp_path):
    """The longest name the range allows, of every kind of character."""
    name = ("vmgenid_2.test+x-" * 4)[:63]
    node = f"/dev/{name}"
    d = DaemonProcess(str(tmp_path), "--devname", name, "--mode", "0640",
                      "--status", "")
    with open(d.log_path, "wb") as log:
        proc = subprocess.Popen(d.args, cwd=REPO, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + HANG * 2
        while "serving" not in d.log():
            assert proc.poll() is None and time.monotonic() < deadline, \
                d.log()
            time.sleep(0.05)
        st = os.lstat(node)
        assert stat.S_ISCHR(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o640
        assert not os.path.exists(NODE)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(HANG) == 0, d.log()
    assert "Traceback" not in d.log()


def test_a_symlink_at_the_node_is_not_followed(tmp_path):
    """A link where the node would be (dangling, so it is not taken for a
    served node by a test of the path): refused in one line; neither the
    link nor what it names is touched."""
    name = "vmgenid-link-test"
    node = f"/dev/{name}"
    victim = tmp_path / "victim"
    os.symlink(victim, node)
    try:
        d = DaemonProcess(str(tmp_path / "run"), "--devname", name,
                          "--status", "")
        os.makedirs(d.workdir, mode=0o700)
        done = subprocess.run(d.args, capture_output=True, text=True,
                              cwd=REPO, timeout=HANG)
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        fatal = [line for line in done.stderr.splitlines()
                 if "fatal:" in line]
        assert len(fatal) == 1 and node in fatal[0], done.stderr
        assert os.readlink(node) == str(victim)
        assert not os.path.lexists(victim)
    finally:
        os.unlink(node)

