# SPDX-License-Identifier: MIT
"""The packaged unit's sandbox lets the daemon reseed the kernel RNG: a
write to /dev/urandom, then RNDRESEEDCRNG (CAP_SYS_ADMIN), as the
publisher does after a new GUID or a step of the VMClock counter
(native/shim/publisher.c; RDSEED/RDRAND are instructions, which no
sandbox filters).  The guest boots systemd; the guest side
(tests/system/scenarios/reseed.sh) runs that write and ioctl in units
made of packaging/systemd/cuse-vmgenid.service's lines, and once without
CAP_SYS_ADMIN, to show the probe tells the two apart.

    .venv/bin/python -m pytest -v tests/system/test_reseed_sandbox.py
"""

from tests.harness.vm import GuestVM

from .test_service import BOOT, STEP, lines


def test_the_unit_s_sandbox_allows_the_rng_reseed():
    with GuestVM("6.12", ["sh", "tests/system/scenarios/reseed.sh"],
                 systemd=True) as vm:
        vm.wait_for(r"^PROBE vmgenid-reseed-nocap exit", timeout=BOOT)
        assert vm.wait_exit(timeout=STEP) == 0
    assert lines(vm.output, "PROBE vmgenid-reseed") == ["exit 0",
                                                        "reseeded"]
    assert lines(vm.output, "PROBE vmgenid-reseed-nocap") == [
        "exit 0", "failed EPERM"]
