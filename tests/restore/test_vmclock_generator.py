# SPDX-License-Identifier: MIT
"""packaging/systemd/cuse-vmgenid-generator on a machine with a real
VMClock device and on one without: the drop-in that lets the daemon's
unit read /dev/vmclock0 (and start after it) is written on the first
only, so the unit names no node that does not exist (systemd would log
"Couldn't stat device" at every start: tests/system checks that line's
absence).  Sid's newest kernel (ptp_vmclock) in both; sid's QEMU with
-device vmclock for the first (tests/harness/sidqemu.py), the machine's
own QEMU for the second.

    .venv/bin/python -m pytest -v tests/restore/test_vmclock_generator.py
"""

import pytest

from tests.harness.sidqemu import prepare_sid_qemu
from tests.harness.vm import GuestVM

from .test_restore_device import BOOT, lines

KERNEL = "newest"
GENERATOR = "packaging/systemd/cuse-vmgenid-generator"
# As systemd runs a generator: three output folders (normal, early, late).
SCENARIO = f"""
out=$(mktemp -d)
{GENERATOR} $out/normal $out/early $out/late
echo "GENERATOR-RC $?"
cat /sys/bus/acpi/devices/*/modalias | grep -e :VMCLOCK: -e :AMZNC10C: |
	sed 's/^/ACPI-ID /'
ls /dev/vmclock0 2>/dev/null | sed 's/^/NODE /'
(cd $out && find . -type f | sort | sed 's/^/WROTE /')
sed 's/^/DROPIN /' $out/normal/cuse-vmgenid.service.d/vmclock.conf \\
	2>/dev/null
echo DONE
"""


@pytest.mark.parametrize("vmclock", [True, False],
                         ids=["with-vmclock", "without"])
def test_the_generator_lets_the_unit_read_dev_vmclock0_only_where_there_is_one(  # noqa: E501
        vmclock):
    qemu = prepare_sid_qemu().argv() if vmclock else None
    with GuestVM(KERNEL, SCENARIO, qemu=qemu, vmgenid=not vmclock,
                 devices=["vmclock"] if vmclock else None) as vm:
        vm.wait_for(r"^DONE$", timeout=BOOT)
        out = vm.output
    assert lines(out, "GENERATOR-RC") == ["0"], out
    if not vmclock:
        assert lines(out, "ACPI-ID") == [] and lines(out, "NODE") == []
        assert lines(out, "WROTE") == [], out
        return
    # QEMU's: ptp_vmclock's two IDs, as _HID and _CID.
    assert lines(out, "ACPI-ID") == ["acpi:AMZNC10C:VMCLOCK:"], out
    assert lines(out, "NODE") == ["/dev/vmclock0"], out
    assert lines(out, "WROTE") == [
        "./normal/cuse-vmgenid.service.d/vmclock.conf"], out
    dropin = lines(out, "DROPIN")
    assert "DeviceAllow=/dev/vmclock0 r" in dropin, dropin
    assert "After=dev-vmclock0.device" in dropin, dropin
    assert "Wants=dev-vmclock0.device" in dropin, dropin
