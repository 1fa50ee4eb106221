# SPDX-License-Identifier: MIT
"""The state file: atomic, private, and readable back."""

import errno
import fcntl
import json
import logging
import os
import stat
import subprocess

import pytest
from hypothesis import given, strategies as st

from cuse_vmgenid.device.statefile import SavedState, StateFile, load
from cuse_vmgenid.safefiles import is_unique_name, unique_name

from .faces import save_state, stage_state


def test_save_then_load_round_trips(tmp_path):
    path = tmp_path / "sub" / "state"      # the folder is made once
    state_file = StateFile(str(path), "boot-1")
    try:
        assert save_state(state_file, 7, "1234-guid") is True
        assert state_file.load() == SavedState("boot-1", 7, "1234-guid")
        assert save_state(state_file, 8, None) is True
        assert load(str(path)) == SavedState("boot-1", 8, None)
    finally:
        state_file.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text()) == {"boot_id": "boot-1",
                                            "counter": 8, "guid": None}
    assert sorted(os.listdir(path.parent)) == ["state"]   # no temp left


def test_a_missing_file_is_none_and_a_bad_one_is_an_error(tmp_path):
    assert load(str(tmp_path / "none")) is None
    bad = tmp_path / "bad"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable state file"):
        load(str(bad))


def test_saving_what_the_file_holds_already_writes_nothing(tmp_path):
    path = tmp_path / "state"
    state_file = StateFile(str(path), "boot-1")
    try:
        assert save_state(state_file, 7, "1234-guid") is True
        inode = os.stat(path).st_ino
        assert save_state(state_file, 7, "1234-guid") is False
        assert os.stat(path).st_ino == inode        # not replaced
        # Any difference is written, a lower counter too (the daemon's
        # counter is the truth; the file only has to be at least it).
        assert save_state(state_file, 6, "1234-guid") is True
        assert state_file.load() == SavedState("boot-1", 6, "1234-guid")
    finally:
        state_file.close()


@pytest.mark.parametrize("staged", [
    (5, "00000000-0000-0000-0000-000000000000"),   # only the GUID differs
    (5, None),                                      # shorter than the save
    (123456789, "ffffffff-ffff-ffff-ffff-ffffffffffff"),   # longer
    (5, "11111111-2222-3333-4444-555555555555"),   # exactly the save
])
def test_a_staged_commit_holds_what_was_saved(tmp_path, staged):
    """What the next commit's file held before (staged by the daemon as
    it arms a bump) never shows through: a save overwrites what differs,
    and cuts what is too long."""
    path = tmp_path / "state"
    state_file = StateFile(str(path), "boot-1")
    try:
        save_state(state_file, 4, "00000000-0000-0000-0000-000000000000")
        stage_state(state_file, *staged)
        assert save_state(state_file, 5, "11111111-2222-3333-4444-555555555555")
        assert path.read_bytes() == (
            b'{"boot_id": "boot-1", "counter": 5, "guid": '
            b'"11111111-2222-3333-4444-555555555555"}\n')
        # Staged and committed again, with a GUID of none.
        stage_state(state_file, 6, "11111111-2222-3333-4444-555555555555")
        assert save_state(state_file, 6, None)
        assert load(str(path)) == SavedState("boot-1", 6, None)
    finally:
        state_file.close()


def test_a_guid_longer_than_a_guid_is_refused(tmp_path):
    state_file = StateFile(str(tmp_path / "state"), "boot-1")
    try:
        with pytest.raises(OSError):
            save_state(state_file, 1, "x" * 37)
    finally:
        state_file.close()


def test_planted_symlinks_are_never_followed(tmp_path):
    """Issue 12, finding 9: a symlink at state.new (the old fixed
    temporary name) or at the state file itself is replaced, never
    written through; the temporary name is unique and made O_EXCL."""
    victims = []
    for name in ("state", "state.new"):
        victim = tmp_path / f"victim-{name}"
        victim.write_text("precious")
        os.symlink(victim, tmp_path / name)
        victims.append(victim)
    state_file = StateFile(str(tmp_path / "state"), "boot-1")
    try:
        save_state(state_file, 3, None)
        save_state(state_file, 4, None)
    finally:
        state_file.close()
    assert all(v.read_text() == "precious" for v in victims)
    assert not (tmp_path / "state").is_symlink()
    assert load(str(tmp_path / "state")) == SavedState("boot-1", 4, None)
    assert (tmp_path / "state.new").is_symlink()    # not ours: left alone
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "state", "state.new", "victim-state", "victim-state.new"]


def own_temporaries(folder) -> list:
    return sorted(p.name for p in folder.iterdir()
                  if is_unique_name(str(folder / "state"), p.name))


def test_the_prepared_file_is_locked_and_removed_by_close(tmp_path):
    """A daemon's prepared temporary file is held under a lock a starting
    daemon cannot take, so another StateFile of the same path leaves it;
    close() removes it, and discard() too (the next save makes it again)."""
    path = str(tmp_path / "state")
    first = StateFile(path, "boot-1")
    try:
        assert save_state(first, 1, None) is True
        first.prepare()
        (name,) = own_temporaries(tmp_path)
        fd = os.open(tmp_path / name, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        second = StateFile(path, "boot-1")
        second.close()
        assert own_temporaries(tmp_path) == [name]
        assert save_state(first, 2, None) is True
        first.prepare()
        assert len(own_temporaries(tmp_path)) == 1
        first.discard()
        assert own_temporaries(tmp_path) == []
        assert save_state(first, 3, None) is True
        first.prepare()
    finally:
        first.close()
    assert sorted(os.listdir(tmp_path)) == ["state"]
    assert load(path) == SavedState("boot-1", 3, None)


def freed_prepared_name(state_file: StateFile, folder) -> str:
    """The name of the prepared file, removed: free to plant at."""
    state_file.prepare()
    (name,) = own_temporaries(folder)
    os.unlink(folder / name)
    return name


@pytest.mark.parametrize("plant", ["symlink", "hard link", "nothing"])
def test_a_commit_never_renames_what_took_the_prepared_name(tmp_path, plant):
    """Root (or a restore of the folder) puts something else at the name
    of the prepared file: the commit neither writes through it nor makes
    it the state file; it removes the name (never what it points at) and
    commits with a new file.  A discard leaves such a name alone."""
    path = str(tmp_path / "state")
    victim = tmp_path / "victim"
    victim.write_text("precious")
    state_file = StateFile(path, "boot-1")
    try:
        assert save_state(state_file, 1, None) is True
        name = freed_prepared_name(state_file, tmp_path)
        if plant == "symlink":
            os.symlink(victim, tmp_path / name)
        elif plant == "hard link":
            os.link(victim, tmp_path / name)
        assert save_state(state_file, 2, None) is True
        assert load(path) == SavedState("boot-1", 2, None)
        assert not os.path.islink(path)
        assert own_temporaries(tmp_path) == []
        name = freed_prepared_name(state_file, tmp_path)
        os.symlink(victim, tmp_path / name)
        state_file.discard()
        assert os.readlink(tmp_path / name) == str(victim)
    finally:
        state_file.close()
    assert os.readlink(tmp_path / name) == str(victim)
    assert victim.read_text() == "precious"
    assert load(path) == SavedState("boot-1", 2, None)


def test_a_folder_at_the_prepared_name_fails_the_commit_only(tmp_path):
    """What cannot be removed fails the commit (logged by the daemon),
    which keeps the last state file and commits again once it is gone."""
    path = str(tmp_path / "state")
    state_file = StateFile(path, "boot-1")
    try:
        assert save_state(state_file, 1, None) is True
        name = freed_prepared_name(state_file, tmp_path)
        os.mkdir(tmp_path / name)
        (tmp_path / name / "kept").write_text("kept")
        with pytest.raises(OSError) as e:
            save_state(state_file, 2, None)
        assert e.value.errno == errno.EEXIST
        assert load(path) == SavedState("boot-1", 1, None)
        assert (tmp_path / name / "kept").read_text() == "kept"
        os.unlink(tmp_path / name / "kept")
        os.rmdir(tmp_path / name)
        assert save_state(state_file, 3, None) is True
    finally:
        state_file.close()
    assert sorted(os.listdir(tmp_path)) == ["state"]
    assert load(path) == SavedState("boot-1", 3, None)


def test_a_new_state_file_removes_only_dead_temporaries(tmp_path, caplog):
    """What daemons killed before left is removed; the rest is kept: a
    held (locked) temporary file, another state file's, look-alikes, and
    a symlink, folder or pipe under the very pattern (never followed)."""
    victim = tmp_path / "victim"
    victim.write_text("kept")
    dead = [".state.000000000000.new", ".state.0123456789ab.new"]
    for name in dead:
        (tmp_path / name).write_text('{"counter": 9}')
    kept = {".state2.0123456789ab.new", ".state.0123456789a.new",
            ".state.0123456789AB.new", ".state.0123456789ab.new.x",
            "state.0123456789ab.new", ".state.0123456789ab.old",
            ".state.held00000000.new"}
    for name in kept:
        (tmp_path / name).write_text("kept")
    os.symlink(victim, tmp_path / ".state.aaaaaaaaaaaa.new")
    os.mkdir(tmp_path / ".state.bbbbbbbbbbbb.new")
    os.mkfifo(tmp_path / ".state.cccccccccccc.new")
    held = tmp_path / ".state.dddddddddddd.new"
    held.write_text("a live daemon's")
    kept |= {"victim", ".state.aaaaaaaaaaaa.new", ".state.bbbbbbbbbbbb.new",
             ".state.cccccccccccc.new", held.name}
    with open(held) as f, caplog.at_level(logging.INFO):
        fcntl.flock(f, fcntl.LOCK_EX)
        StateFile(str(tmp_path / "state"), "boot-1").close()
    assert sorted(os.listdir(tmp_path)) == sorted(kept)
    assert victim.read_text() == "kept"
    assert caplog.messages == [
        f"removed 2 temporary files left beside {tmp_path}/state by "
        f"daemons that did not stop: {', '.join(dead)}"]


def test_a_temporary_file_that_cannot_be_removed_is_one_line(tmp_path,
                                                              caplog):
    """The start goes on: a leftover root cannot remove (immutable) is
    named in one line, and kept."""
    leftover = tmp_path / ".state.0123456789ab.new"
    leftover.write_text("")
    if subprocess.run(["chattr", "+i", str(leftover)],
                      capture_output=True).returncode:
        pytest.skip("no chattr +i here")
    try:
        with caplog.at_level(logging.INFO):
            StateFile(str(tmp_path / "state"), "boot-1").close()
    finally:
        subprocess.run(["chattr", "-i", str(leftover)], check=True)
    assert caplog.messages == [
        f"cannot remove {leftover.name}, left beside {tmp_path}/state by a "
        "daemon that did not stop: Operation not permitted"]
    assert sorted(os.listdir(tmp_path)) == [leftover.name]


NAMES = st.text(min_size=1, max_size=30).filter(
    lambda n: "/" not in n and "\0" not in n)


@given(NAMES)
def test_unique_names_match_their_path_and_only_it(name):
    path = f"/run/vmgenid/{name}"
    own = os.path.basename(unique_name(path))
    assert is_unique_name(path, own)
    assert not is_unique_name(path, name)
    for other in {name + "2", name[:-1], "." + name, name + ".x"} - {name}:
        assert not is_unique_name(f"/run/vmgenid/{other}", own)


@given(NAMES, NAMES)
def test_two_paths_never_share_a_unique_name(a, b):
    """Whatever two file names: no name is both's (the random part has a
    fixed length)."""
    entry = os.path.basename(unique_name(f"/f/{a}"))
    assert is_unique_name(f"/f/{b}", entry) == (a == b)
