# SPDX-License-Identifier: MIT
"""The vmclock tier against a real VMClock device, across REAL restores:
sid's QEMU (-device vmclock; tests/harness/sidqemu.py) and sid's newest
kernel (ptp_vmclock, /dev/vmclock0), no vmgenid device, the daemon on
--source auto.  The guest side is tests/restore/scenarios/vmclock_device.py.

QEMU's page never advertises the generation counter (flags 0, counter 0)
and a restore steps only its disruption_marker; only Firecracker serves
the counter.  So the host plays Firecracker's part: before a restore it
patches the page in the saved stream (tests/harness/vmclockstream.py):
the flag, and the counter + 1.

    .venv/bin/python -m pytest -v tests/restore/test_restore_vmclock_device.py
"""

import re

from tests.harness.sidqemu import prepare_sid_qemu
from tests.harness.vm import GuestVM
from tests.harness.vmclockstream import patch_vmclock

from .test_restore_device import (BOOT, STEP, assert_clean, generations,
                                  lines)

SCENARIO = [".venv/bin/python", "tests/restore/scenarios/vmclock_device.py"]
KERNEL = "newest"


def readings(output: str) -> dict[str, dict[str, int]]:
    """step -> the page's fields, from "VMCLOCK <step> k=v..."."""
    found = {}
    for line in lines(output, "VMCLOCK"):
        step, *fields = line.split()
        found[step] = {k: int(v) for k, v in (f.split("=") for f in fields)}
    return found


def secret(output: str) -> str:
    """The secret the program drew after it woke."""
    app = lines(output, "APP")
    assert app[:3] == ["GENERATION 1", app[1], "ACK 1"], app
    assert re.fullmatch(r"SECRET [0-9a-f]{32}", app[1]), app
    return app[1][len("SECRET "):]


def test_two_clones_each_bump_once_and_draw_different_random_bytes_but_a_restore_that_only_disrupts_the_clock_bumps_nothing(  # noqa: E501
        tmp_path):
    qemu = prepare_sid_qemu().argv()
    with GuestVM(KERNEL, SCENARIO, qemu=qemu, vmgenid=False,
                 devices=["vmclock"]) as vm:
        vm.wait_for(r"^PRIME$", timeout=BOOT)
        # Firecracker's device has the flag from the start.
        snapshot = vm.save(tmp_path / "prime.snapshot")
        boot = patch_vmclock(snapshot.path, counter_step=0)
        vm.restore(snapshot)
        snapshot.path.unlink()
        vm.wait_for(r"^READY counter=0$", timeout=STEP)
        # As QEMU restores: disruption_marker steps, nothing else.
        snapshot = vm.save(tmp_path / "disrupt.snapshot")
        vm.restore(snapshot)
        snapshot.path.unlink()
        vm.wait_for(r"^CLONE counter=0$", timeout=STEP)
        snapshot = vm.save(tmp_path / "clone.snapshot")
        original = vm.output
    # QEMU's own page: no flag, no counter.
    assert (boot["flags"], boot["vm_generation_counter"]) == (0, 0), boot
    before = patch_vmclock(snapshot.path)    # Firecracker's post_load
    assert before["vm_generation_counter"] == 0, before

    clones = []
    try:
        for _ in range(2):      # one after another, from one file
            clone = GuestVM.from_snapshot(snapshot)
            clones.append(clone)
            clone.wait_for(r"^DONE$", timeout=STEP)
            assert clone.wait_exit(timeout=STEP) == 0
            clone.close()
    finally:
        for clone in clones:
            clone.close()
        snapshot.path.unlink()

    daemon = "\n".join(lines(original, "DAEMON"))
    assert "source tier vmclock (--source auto)" in daemon, daemon
    seen = readings(original)
    assert seen["boot"]["generation_present"] == 0
    assert seen["primed"]["generation_present"] == 1
    # The restore without a patch: the marker stepped, no bump.
    assert seen["disrupted"]["disruption_marker"] > \
        seen["ready"]["disruption_marker"]
    assert seen["disrupted"]["vm_generation_counter"] == 0
    assert generations(original) == [], generations(original)
    assert "VMClock: clock disrupted" in daemon
    assert lines(original, "APP")[1:] == [], "woken without a change"

    secrets = [secret(clone.output) for clone in clones]
    print(f"\nclones' secrets (VMClock tier): {secrets[0]} {secrets[1]}")
    for clone in clones:
        out = clone.output
        assert_clean(out)
        [(old, new, why)] = generations(out)
        assert (old, new) == (0, 1), why
        clock = readings(out)["clone"]
        assert clock["vm_generation_counter"] == 1, clock
        assert lines(out, "COUNTER") == ["1"]
        daemon = "\n".join(lines(out, "DAEMON"))
        assert "VMClock: vm_generation_counter 0 -> 1" in daemon, daemon
    # The clones shared the kernel RNG's state: only a reseed before the
    # wake-up makes their first draws differ.
    assert secrets[0] != secrets[1], (
        f"both clones drew the same new secret {secrets[0]}: the daemon "
        "woke them before the kernel RNG was reseeded")
    # The daemon did it (tests/host/test_publisher.py: before the replies).
    for clone in clones:
        daemon = "\n".join(lines(clone.output, "DAEMON"))
        assert re.search(r"kernel RNG reseeded before the wake-up \(8 words "
                         r"from RDSEED/RDRAND, ", daemon), daemon
