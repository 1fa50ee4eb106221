# SPDX-License-Identifier: MIT
"""--vmclock-link across FORCE bumps, a daemon restart and a REAL restore
with a new GUID: a reader that follows the VMClock ABI (magic, the
generation counter flag, the seqlock) sees N+1 each time, with an even
seq_count (docs/interface.rst, "The page").  The guest side is
tests/restore/scenarios/vmclock.py.

    .venv/bin/python -m pytest -v tests/restore/test_restore_vmclock.py
"""

import uuid

from tests.harness.vm import GuestVM

from .test_restore_device import BOOT, STEP, assert_clean, generations, lines

SCENARIO = [".venv/bin/python", "tests/restore/scenarios/vmclock.py"]


def readings(output: str) -> dict[str, dict[str, str]]:
    """step -> the reader's fields, from "VMCLOCK <step> rc=0 ok k=v..."."""
    found = {}
    for line in lines(output, "VMCLOCK"):
        step, rc, verdict, *fields = line.split()
        assert (rc, verdict) == ("rc=0", "ok"), line
        found[step] = dict(f.split("=") for f in fields)
    return found


def test_the_vmclock_page_follows_force_restart_and_a_real_restore(
        tmp_path):
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    with GuestVM("6.12", SCENARIO, guid=first) as vm:
        vm.wait_for(r"^SAVE$", timeout=BOOT)
        snapshot = vm.save(tmp_path / "vmclock.snapshot")
        vm.restore(snapshot, guid=second)
        snapshot.path.unlink()
        vm.wait_for(r"^DONE$", timeout=STEP)
        assert vm.wait_exit(timeout=STEP) == 0
    out = vm.output
    assert_clean(out)
    assert lines(out, "LINK") == ["/run/vmgenid/vmclock"]
    assert lines(out, "SAME_INODE") == ["True", "True"]
    assert lines(out, "FORCE") == [
        "ioctl=VMGENID_FORCE_GEN_UPDATE ret=0 errno=0"] * 2

    seen = readings(out)
    assert list(seen) == ["start", "force1", "force2", "restart",
                          "restore"]
    assert [int(seen[s]["vm_generation_counter"]) for s in seen] == \
        [0, 1, 2, 2, 3]
    for step, fields in seen.items():
        assert int(fields["seq_count"]) % 2 == 0, (step, fields)
        assert fields["magic"] == "0x4b4c4356"
        assert fields["version"] == "1" and fields["size"] == "4096"
        assert fields["counter_id"] == "255"
        assert fields["clock_status"] == "0"
        assert fields["flags"] == "0x100"
    # Each change advances the marker and the count; the restart neither.
    markers = [int(seen[s]["disruption_marker"]) for s in seen]
    assert markers[1:] == [markers[0] + 1, markers[0] + 2, markers[0] + 2,
                           markers[0] + 3]
    assert seen["restart"]["seq_count"] == seen["force2"]["seq_count"]
    assert int(seen["restore"]["seq_count"]) == \
        int(seen["restart"]["seq_count"]) + 2

    # The restore's bump was the GUID's (published by the poll thread,
    # which stores the VMClock page in C), and the only one after start.
    gens = generations(out)
    assert [(a, b) for a, b, _ in gens] == [(0, 1), (1, 2), (2, 3)], gens
    assert gens[2][2].startswith("GUID changed (seen on "), gens[2]
    assert "; published by the thread: " in gens[2][2], gens[2]
    assert not any(g in why for _, _, why in gens
                   for g in (first, second))    # the log never shows it
    assert gens[0][2].startswith("FORCE_GEN_UPDATE by"), gens[0]
