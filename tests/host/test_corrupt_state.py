# SPDX-License-Identifier: MIT
"""A corrupt state file (issue 12, finding 8): the real daemon, started on
it, exits 1 with one `fatal:` line naming the file, what is wrong and what
to do; no traceback.  All of it happens before the daemon opens /dev/cuse,
so it runs here on the host."""

import json
import os
import subprocess
import sys

import pytest

from cuse_vmgenid.device.statefile import current_boot_id

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BOOT = current_boot_id()


def state(counter='0', boot=f'"{BOOT}"', guid="null") -> str:
    return f'{{"boot_id": {boot}, "counter": {counter}, "guid": {guid}}}'


CORRUPT = {
    "counter at its maximum, a bump due": (state(0xFFFFFFFF),
                                           "at its maximum"),
    "counter 1e400": (state("1e400"), "counter inf"),
    "counter past u32": (state(1 << 32), "counter 4294967296"),
    "negative counter": (state(-1), "counter -1"),
    "counter a string": (state('"7"'), "counter 7"),
    "counter true": (state("true"), "counter True"),
    "deeply nested": ("[" * 100000 + "]" * 100000, "longer than"),
    "nested, short": ("[" * 2000 + "]" * 2000, "not JSON"),
    "not JSON": ("counter=5", "not JSON"),
    "not UTF-8": ("\udcff", "not JSON"),
    "a list": ("[1, 2]", "not a JSON object"),
    "no boot_id": ('{"counter": 1}', "no boot_id"),
    "guid a number": (state(guid="5"), "guid"),
    "empty": ("", "not JSON"),
}


def run_daemon(tmp_path, *args):
    folder = tmp_path / "run"
    folder.mkdir(mode=0o755, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "cuse_vmgenid", "--source", "none",
         "--page", str(folder / "page"), "--state", str(folder / "state"),
         "--status", "", *args],
        cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_state_file_gives_one_fatal_line(tmp_path, case):
    content, why = CORRUPT[case]
    (tmp_path / "run").mkdir(mode=0o755)
    path = tmp_path / "run" / "state"
    path.write_bytes(content.encode(errors="surrogateescape"))
    out = run_daemon(tmp_path)
    assert out.returncode == 1, out.stderr
    fatal = [line for line in out.stderr.splitlines() if "fatal:" in line]
    assert len(fatal) == 1, out.stderr
    assert str(path) in fatal[0] and why in fatal[0], fatal[0]
    assert ("move it away" in fatal[0]) != ("reboot" in fatal[0])
    assert "Traceback" not in out.stderr


def test_a_symlink_at_the_state_file_is_not_followed(tmp_path):
    (tmp_path / "run").mkdir(mode=0o755)
    victim = tmp_path / "victim"
    victim.write_text(state(5))
    os.symlink(victim, tmp_path / "run" / "state")
    out = run_daemon(tmp_path)
    fatal = [line for line in out.stderr.splitlines() if "fatal:" in line]
    assert out.returncode == 1 and len(fatal) == 1, out.stderr
    assert "Too many levels of symbolic links" in fatal[0]
    assert json.loads(victim.read_text())["counter"] == 5


def test_a_folder_others_can_write_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    os.chmod(tmp_path / "run", 0o777)
    out = run_daemon(tmp_path)
    fatal = [line for line in out.stderr.splitlines() if "fatal:" in line]
    assert out.returncode == 1 and len(fatal) == 1, out.stderr
    assert "writable by others" in fatal[0] and "Traceback" not in out.stderr
    assert os.listdir(tmp_path / "run") == []
