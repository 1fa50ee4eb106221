# SPDX-License-Identifier: MIT
"""The vmclock tier (docs/interface.rst, "Where changes come from", b) against a file
laid out as a hypervisor's VMClock device: one change per new
vm_generation_counter, torn updates, a missing flag, notifications."""

import mmap
import os

import pytest

from cuse_vmgenid.device.statefile import SavedState, StateFile, load
from cuse_vmgenid.sources import SourceUnavailable
from cuse_vmgenid.sources.vmclock import (VmclockSource, open_device,
                                          open_kernel_device)

from . import vmclock_abi as abi
from .faces import save_state

INTERVAL_MS = 200


def changed(source) -> bool:
    """A change, for which the publisher reseeds the kernel RNG first
    (ptp_vmclock does not), with the counter now."""
    change = source.check()
    assert change is not None and change.reseed
    assert change.generation == (source.mark().vmclock_counter or 0)
    return True


class Device:
    """A VMClock page in a file, changed the way a hypervisor would."""

    def __init__(self, tmp_path, **fields):
        self.path = str(tmp_path / "vmclock0")
        with open(self.path, "wb") as f:
            f.write(abi.device_page(**fields))
        fd = os.open(self.path, os.O_RDWR)
        self.map = mmap.mmap(fd, 4096, mmap.MAP_SHARED)
        os.close(fd)

    def get(self, name):
        return abi.get(self.map, name)

    def begin(self):
        abi.put(self.map, "seq_count", self.get("seq_count") | 1)

    def end(self):
        abi.put(self.map, "seq_count", self.get("seq_count") + 1)

    def update(self, **fields):
        self.begin()
        for name, value in fields.items():
            abi.put(self.map, name, value)
        self.end()

    def restore(self):
        """A snapshot restore: a new generation, and a clock disruption."""
        self.update(vm_generation_counter=self.get("vm_generation_counter")
                    + 1,
                    disruption_marker=self.get("disruption_marker") + 1)

    def source(self):
        return VmclockSource(open_device(self.path), INTERVAL_MS)


def test_one_change_per_new_counter(tmp_path):
    dev = Device(tmp_path, counter=10)
    source = dev.source()
    assert source.check() is None     # what it started at
    dev.restore()
    assert changed(source)
    assert source.mark().vmclock_counter == 11
    assert source.check() is None     # one bump per change
    dev.restore()
    dev.restore()                   # two before a look: one change
    assert changed(source)
    assert source.mark().vmclock_counter == 13


def test_a_live_migration_is_not_a_change_of_generation(tmp_path):
    """Only disruption_marker moves: the clock was disrupted, the memory
    did not fork (the ABI's meaning; documented in README)."""
    dev = Device(tmp_path, counter=3)
    source = dev.source()
    dev.update(disruption_marker=dev.get("disruption_marker") + 1)
    assert source.check() is None


def test_a_torn_update_is_one_conservative_change(tmp_path):
    """seq_count held odd: no consistent read within the retries.  Taken
    as a change once, not once per look; the next good read is compared
    with the last good one."""
    dev = Device(tmp_path, counter=5)
    source = dev.source()
    dev.begin()
    assert changed(source)
    assert source.check() is None
    assert source.mark().vmclock_counter == 5      # a restart compares with 5
    dev.end()                               # the same generation after all
    assert source.check() is None
    dev.begin()
    abi.put(dev.map, "vm_generation_counter", 6)
    assert changed(source)
    dev.end()
    assert changed(source)
    assert source.mark().vmclock_counter == 6


def test_a_flag_that_goes_is_one_conservative_change(tmp_path):
    dev = Device(tmp_path, counter=5)
    source = dev.source()
    dev.update(flags=0)
    assert changed(source)
    assert source.check() is None


@pytest.mark.parametrize("fields,why", [
    ({"flags": 0}, "no generation counter"),
    ({"seq": 7}, "no consistent read"),
])
def test_a_device_that_cannot_serve_is_refused(tmp_path, fields, why):
    dev = Device(tmp_path, **fields)
    with pytest.raises(SourceUnavailable, match=why):
        open_device(dev.path)


def test_a_wrong_magic_is_refused(tmp_path):
    dev = Device(tmp_path)
    abi.put(dev.map, "magic", 0)
    with pytest.raises(SourceUnavailable, match="wrong magic"):
        open_device(dev.path)


def test_only_the_kernels_character_device_is_taken(tmp_path):
    dev = Device(tmp_path)
    with pytest.raises(SourceUnavailable, match="not a character device"):
        open_kernel_device(dev.path)
    link = tmp_path / "link"        # e.g. the daemon's own --vmclock-link
    os.symlink(dev.path, link)
    with pytest.raises(SourceUnavailable, match="not a character device"):
        open_kernel_device(str(link))
    with pytest.raises(SourceUnavailable, match="No such file"):
        open_kernel_device(str(tmp_path / "none"))


def test_a_notify_less_device_is_looked_at_every_interval(tmp_path):
    source = Device(tmp_path).source()
    assert source.fds() == []
    assert source.interval == INTERVAL_MS / 1000


def test_a_notifying_device_is_polled(tmp_path):
    dev = Device(tmp_path, flags=abi.FLAG_VM_GEN_COUNTER_PRESENT
                 | abi.FLAG_NOTIFICATION_PRESENT)
    source = dev.source()
    assert source.interval is None
    [fd] = source.fds()
    assert source.ready(fd) is None     # acknowledged, nothing new
    dev.restore()
    assert source.ready(fd).seen_on == "VMClock notification"
    assert source.check() is None


@pytest.mark.parametrize("saved,now,changed", [
    (7, 7, False), (7, 8, True), (None, 7, True),
])
def test_a_restart_compares_the_stored_counter(tmp_path, saved, now,
                                               changed):
    dev = Device(tmp_path, counter=now)
    source = dev.source()
    change = source.restart(SavedState("boot-1", 3, None,
                                       vmclock_counter=saved))
    assert (change is not None) == changed
    if change:
        assert change.reseed and change.generation == now


def test_the_state_file_keeps_the_counter_and_loads_old_files(tmp_path):
    path = tmp_path / "state"
    state_file = StateFile(str(path), "boot-1")
    try:
        save_state(state_file, 3, None, vmclock_counter=2**64 - 1)
        assert load(str(path)) == SavedState("boot-1", 3, None,
                                             vmclock_counter=2**64 - 1)
        save_state(state_file, 4, None)
        assert load(str(path)) == SavedState("boot-1", 4, None, None)
    finally:
        state_file.close()
    for stored in ('"7"', "-1", str(2**64), "true", "null"):
        path.write_text('{"boot_id": "b", "counter": 1, "guid": null, '
                        f'"vmclock_counter": {stored}}}')
        assert load(str(path)).vmclock_counter is None
