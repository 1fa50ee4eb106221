# SPDX-License-Identifier: MIT
"""The ladder (sources.open_source): the first tier that works, one log
line per tier skipped and why, and `none` said loudly when none works."""

import logging
import os
import subprocess
import sys

import pytest

from cuse_vmgenid import kernellog, sources
from cuse_vmgenid.guid import GuidUnavailable
from cuse_vmgenid.vmclockdevice import VmclockUnavailable
from cuse_vmgenid.unseen import UNSEEN

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def opener(result):
    def open_tier(poll_interval_ms):
        if isinstance(result, Exception):
            raise result
        return result
    return open_tier


@pytest.fixture
def tiers(monkeypatch):
    def install(**results):
        monkeypatch.setattr(sources, "TIER_OPENERS", {
            name.replace("_", "-"): opener(result)
            for name, result in results.items()})
    return install


def test_auto_takes_the_first_tier_that_works(tiers, caplog):
    caplog.set_level(logging.INFO)
    tiers(fwcfg=GuidUnavailable("lockdown: integrity (...)"),
          acpi=GuidUnavailable("ADDR form not read: ..."),
          vmclock=VmclockUnavailable("no /dev/vmclock0"),
          kernel_log="the kernel-log source")
    assert sources.open_source("auto", 200) == "the kernel-log source"
    assert [r.getMessage() for r in caplog.records] == [
        "source tier fwcfg skipped: lockdown: integrity (...)",
        "source tier acpi skipped: ADDR form not read: ...",
        "source tier vmclock skipped: no /dev/vmclock0",
        "source tier kernel-log (--source auto)"]
    # Skipping a tier the machine lacks is normal: no warning.
    assert {r.levelno for r in caplog.records} == {logging.INFO}


def test_a_tier_asked_for_is_the_only_one_tried(tiers):
    tiers(fwcfg="fw_cfg's", acpi="acpi's", vmclock="vmclock's",
          kernel_log=kernellog.TierUnavailable("bound to no device"))
    assert sources.open_source("acpi", 200) == "acpi's"
    source = sources.open_source("kernel-log", 200)
    assert isinstance(source, sources.NoSource)
    assert source.unseen == (f"{UNSEEN}: kernel-log: bound to no "
                             "device")


def test_none_when_no_tier_works_says_so_at_error_level(tiers, caplog):
    tiers(fwcfg=GuidUnavailable("no qemu_fw_cfg"),
          acpi=GuidUnavailable("no /dev/mem"),
          vmclock=VmclockUnavailable("no /dev/vmclock0"),
          kernel_log=kernellog.TierUnavailable("bound to no device"))
    source = sources.open_source("auto", 200)
    assert source.name == "none"
    assert source.unseen == (
        "HARDWARE CHANGES WILL NOT BE SEEN (snapshot restores, clones): "
        "fwcfg: no qemu_fw_cfg; acpi: no /dev/mem; vmclock: no "
        "/dev/vmclock0; kernel-log: bound to no device")
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert source.unseen in error.getMessage()
    assert source.changed(None) == (True, None)      # every hint bumps


def test_every_tier_is_a_choice():
    assert sources.SOURCE_CHOICES == ("auto", "fwcfg", "acpi", "vmclock",
                                      "kernel-log", "none")
    assert set(sources.TIER_OPENERS) == set(sources.TIERS)


NO_THREAD = r"""
import os, resource, sys
from cuse_vmgenid.guid import GuidSource, GuidUnavailable
from cuse_vmgenid.guid.memory import GuidMapping
from cuse_vmgenid.sources import GuidWatcher

mapping = GuidMapping(0x1000, sys.argv[1])
# No thread can start: nobody, with no process to spare.
resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
os.setgid(65534)
os.setuid(65534)
try:
    GuidWatcher(GuidSource("fwcfg", 0x1000, "test", mapping), None, 200)
except GuidUnavailable as e:
    print(e)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_without_its_poll_thread_the_guid_tier_is_unavailable(tmp_path):
    """No fallback loop: a GUID tier whose thread cannot start is skipped
    with the reason (the ladder goes on to the next tier), never served
    half."""
    memory = tmp_path / "mem"
    memory.write_bytes(bytes(0x2000))
    memory.chmod(0o644)
    tmp_path.chmod(0o755)
    out = subprocess.run([sys.executable, "-c", NO_THREAD, str(memory)],
                         capture_output=True, text=True, check=True,
                         cwd=REPO).stdout
    assert out.startswith("cannot start the GUID poll thread: "), out
    assert "Resource temporarily unavailable" in out, out
