# SPDX-License-Identifier: MIT
"""A real save and restore of a running guest, driven from the host: the
VM Generation ID changes the way a hypervisor changes it, and the guest
sees it (docs/interface.rst, "Where changes come from").

Run on the host (each test boots its own guest under emulation):
    .venv/bin/python -m pytest -v tests/restore
"""

import uuid

import pytest

from tests.harness.vm import GuestVM

KERNELS = ["6.12", "6.1"]
SCENARIO = "tests/restore/scenarios/smoke.sh"
FORK = "crng reseeded due to virtual machine fork"


@pytest.mark.parametrize("kernel", KERNELS)
def test_restore_with_a_new_guid_shows_it_in_guest_memory_and_the_kernel_log(
        kernel, tmp_path):
    before, after = str(uuid.uuid4()), str(uuid.uuid4())
    with GuestVM(kernel, ["sh", SCENARIO], guid=before) as vm:
        ready = vm.wait_for(r"^READY (\S+) forks (\d+)$", timeout=600)
        assert ready[1] == before
        assert ready[2] == "0", "a fresh boot is no virtual machine fork"
        vm.wait_for(rf"^GUID {before}$", timeout=60)

        snapshot = vm.save(tmp_path / "guest.snapshot")
        vm.restore(snapshot, guid=after)
        snapshot.path.unlink()

        # save() moved wait_for() past everything printed before it.
        vm.wait_for(rf"^GUID {after}$", timeout=120)
        vm.wait_for(rf"^KMSG .*{FORK}", timeout=120)
        assert vm.wait_exit(timeout=120) == 0
    restored = vm.output[vm.output.index(f"GUID {after}"):]
    assert f"GUID {before}" not in restored
