# SPDX-License-Identifier: MIT
"""The state file's folder does not fill up with the daemon's temporary
files (docs/interface.rst, "The restart rule"): as root, whose daemon it
is, on a full tmpfs, with kill -9, SIGTERM, and a start that fails.  Each
daemon keeps one temporary file ready while it runs; a clean stop or a
failed start removes it, and a start removes those that daemons killed
before left for its state file, and nothing else."""

import errno
import fcntl
import json
import os
import re
import subprocess
import time

import pytest

from .daemon_process import DaemonProcess
from .device import bump, page_counter
from .processes import HANG
from .test_daemon_lifecycle import restart, saved_state, wait_log

# safefiles.unique_name() for a state file named "state".
OWN_TEMPORARY = re.compile(r"\.state\.[0-9a-f]{12}\.new")


def temporaries(folder: str) -> list:
    return sorted(n for n in os.listdir(folder) if OWN_TEMPORARY.fullmatch(n))


def prepared(folder, count: int) -> list:
    """The temporary files once there are @count: a daemon prepares the
    next save's after a bump's wake-ups."""
    deadline = time.monotonic() + HANG
    while len(temporaries(folder)) != count:
        assert time.monotonic() < deadline, os.listdir(folder)
        time.sleep(0.02)
    return temporaries(folder)


def test_a_clean_stop_leaves_only_the_state_file(daemon_factory, tmp_path):
    d = daemon_factory()
    assert bump() == 1
    prepared(tmp_path, 1)
    assert d.stop() == 0 and d.wait_node_gone()
    assert temporaries(tmp_path) == []
    assert saved_state(d)["counter"] == 1


def test_a_start_removes_what_a_killed_daemon_left(daemon_factory, tmp_path):
    first = restart(daemon_factory, 1)
    assert bump() == 1
    left = prepared(tmp_path, 1)
    for starts in (2, 3):
        first.kill()                            # kill -9: no clean-up
        assert temporaries(tmp_path) == left
        d = restart(daemon_factory, starts)     # bumps once by itself
        mine = temporaries(tmp_path)
        assert len(mine) == 1 and mine != left, (left, mine)
        wait_log(d, f"removed 1 temporary file left beside {d.state} by "
                 f"a daemon that did not stop: {left[0]}")
        first, left = d, mine
    assert bump() == 4
    assert saved_state(d)["counter"] == 4
    assert d.stop() == 0 and d.wait_node_gone()
    assert temporaries(tmp_path) == []


def test_a_failed_start_leaves_no_temporary_file(tmp_path):
    d = DaemonProcess(str(tmp_path))
    with open(d.state, "w") as f:
        f.write("{not json")
    with pytest.raises(RuntimeError, match="daemon exited 1"):
        d.start()
    assert "unreadable state file" in d.log()
    assert sorted(os.listdir(tmp_path)) == ["daemon.log", "page", "state"]


def test_a_start_leaves_alone_what_is_not_a_dead_daemons(daemon_factory,
                                                          tmp_path):
    """Another daemon's files in the same folder, names that only look
    alike, a planted symlink, folder and pipe under the very pattern, and
    a temporary file whose daemon holds it (its lock) are all kept."""
    victim = tmp_path / "victim"
    victim.write_text("kept")
    planted = {
        ".state2.0123456789ab.new": "another --state's",
        ".state.0123456789a.new": "11 digits",
        ".state.0123456789AB.new": "upper case",
        ".state.0123456789ab.new.x": "a suffix",
        "state.0123456789ab.new": "no dot",
    }
    for name, text in planted.items():
        (tmp_path / name).write_text(text)
    os.symlink(victim, tmp_path / ".state.aaaaaaaaaaaa.new")
    os.mkdir(tmp_path / ".state.bbbbbbbbbbbb.new")
    os.mkfifo(tmp_path / ".state.cccccccccccc.new")
    held = tmp_path / ".state.dddddddddddd.new"
    held.write_text("a live daemon's")
    with open(held) as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        d = daemon_factory()
        for name, text in planted.items():
            assert (tmp_path / name).read_text() == text
        assert os.readlink(tmp_path / ".state.aaaaaaaaaaaa.new") == \
            str(victim)
        assert victim.read_text() == "kept"
        assert (tmp_path / ".state.bbbbbbbbbbbb.new").is_dir()
        assert (tmp_path / ".state.cccccccccccc.new").is_fifo()
        assert held.read_text() == "a live daemon's"
        assert "removed" not in d.log()
        assert d.stop() == 0 and d.wait_node_gone()


def test_a_symlink_in_place_of_the_prepared_file_never_becomes_the_state(
        daemon_factory, tmp_path):
    """Root (or an rsync or `ln -sf` restore of the folder, which replaces
    names) puts a symlink at the name of the daemon's prepared temporary
    file.  The daemon never follows it, never makes it the state file, and
    keeps serving: the next commit still lands, and survives a kill -9."""
    victim = tmp_path / "victim"
    victim.write_text("root's own file")
    first = daemon_factory()
    assert bump() == 1
    [name] = prepared(tmp_path, 1)
    os.unlink(tmp_path / name)
    os.symlink(victim, tmp_path / name)
    assert bump() == 2
    first.kill()
    assert first.wait_node_gone()
    assert victim.read_text() == "root's own file"
    assert not os.path.islink(first.state), first.log()
    assert saved_state(first)["counter"] == 2
    second = restart(daemon_factory, 2)
    assert page_counter(second) == 3


@pytest.fixture
def small_tmpfs(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700",
                    "tmpfs", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def fill(folder) -> None:
    """Every block of @folder's file system taken."""
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while f.write(b"\0" * 4096):
                pass
        except OSError as e:
            assert e.errno == errno.ENOSPC


def test_failed_saves_on_a_full_folder_keep_the_last_good_state(
        small_tmpfs, daemon_factory):
    state = str(small_tmpfs / "state")
    d = daemon_factory("--state", state)
    with open(state) as f:
        kept = json.load(f)
    fill(small_tmpfs)
    for counter in range(1, 5):
        assert bump() == counter
    wait_log(d, f"cannot write {state}: No space left on device", 4)
    with open(state) as f:
        assert json.load(f) == kept
    assert len(temporaries(small_tmpfs)) <= 1
    assert d.stop() == 0 and d.wait_node_gone()
    assert temporaries(small_tmpfs) == []
    assert sorted(os.listdir(small_tmpfs)) == ["filler", "state"]
    with open(state) as f:
        assert json.load(f) == kept
