"""The state file: atomic, private, and readable back."""

import json
import os
import stat

import pytest

from cuse_vmgenid.statefile import SavedState, StateFile, load


def test_save_then_load_round_trips(tmp_path):
    path = tmp_path / "sub" / "state"      # the folder is made once
    state_file = StateFile(str(path))
    try:
        state_file.save(SavedState("boot-1", 7, "1234-guid"))
        assert state_file.load() == SavedState("boot-1", 7, "1234-guid")
        state_file.save(SavedState("boot-1", 8, None))
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
