# SPDX-License-Identifier: MIT
"""The state file: atomic, private, and readable back."""

import json
import os
import stat

import pytest

from cuse_vmgenid.device.statefile import SavedState, StateFile, load

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
