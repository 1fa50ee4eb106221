# SPDX-License-Identifier: MIT
"""--vmclock-link in the guest: the VMClock-ABI page through its symlink,
read by the ABI's own reader (native/build/vmclock-reader) across bumps
and a restart; a real device (any character device) is never shadowed;
the daemon never takes its own link for the kernel's VMClock device."""

import os
import stat

from .device import bump, page_counter, run_native


def reading(path: str) -> dict:
    proc = run_native("vmclock-reader", "-d", path)
    verdict, *fields = proc.stdout.split()
    assert (proc.returncode, verdict) == (0, "ok"), proc.stdout
    return dict(f.split("=") for f in fields)


def test_the_link_shows_each_bump_with_an_even_seq_count(daemon_factory,
                                                         tmp_path):
    link = str(tmp_path / "vmclock0")
    daemon = daemon_factory("--vmclock-link", link)
    page = os.path.join(os.path.dirname(daemon.page), "vmclock")
    assert os.readlink(link) == page
    assert stat.S_IMODE(os.stat(page).st_mode) == 0o444
    assert os.stat(page).st_size == 4096
    start = reading(link)
    assert start["vm_generation_counter"] == "0"
    assert bump() == 1
    after = reading(link)
    assert after["vm_generation_counter"] == "1"
    assert int(after["seq_count"]) == int(start["seq_count"]) + 2
    assert int(after["seq_count"]) % 2 == 0


def test_a_restart_keeps_the_page_and_its_link(daemon_factory, tmp_path):
    link = str(tmp_path / "vmclock0")
    first = daemon_factory("--vmclock-link", link)
    page = os.path.join(os.path.dirname(first.page), "vmclock")
    assert bump() == 1
    inode = os.stat(page).st_ino
    before = reading(link)
    assert first.stop() == 0
    assert first.wait_node_gone()
    second = daemon_factory("--vmclock-link", link)
    assert os.stat(page).st_ino == inode
    # --source none: a restart is one change (2), published once.
    assert page_counter(second) == 2
    after = reading(link)
    assert after["vm_generation_counter"] == "2"
    assert int(after["disruption_marker"]) == \
        int(before["disruption_marker"]) + 1
    assert int(after["seq_count"]) == int(before["seq_count"]) + 2
    assert bump() == 3
    assert reading(link)["vm_generation_counter"] == "3"


def test_a_character_device_is_never_shadowed(daemon_factory, tmp_path):
    """/dev/null stands in for the kernel's /dev/vmclock0."""
    before = os.lstat("/dev/null")
    daemon = daemon_factory("--vmclock-link", "/dev/null")
    after = os.lstat("/dev/null")
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert "no VMClock link: /dev/null exists and is a character " \
           "device" in daemon.log()
    assert bump() == 1          # and the daemon serves all the same


def test_its_own_link_is_not_taken_for_a_vmclock_device(daemon_factory):
    """/dev/vmclock0 as the daemon's own link, then --source vmclock: the
    tier sees a symlink, not the kernel's device, and says so (this
    guest's QEMU has no VMClock device)."""
    link = "/dev/vmclock0"
    assert not os.path.lexists(link)
    try:
        first = daemon_factory("--vmclock-link", link)
        assert os.path.islink(link)
        assert first.stop() == 0
        assert first.wait_node_gone()
        second = daemon_factory("--vmclock-link", link, "--source",
                                "vmclock")
        assert ("source tier vmclock skipped: /dev/vmclock0 is not the "
                "kernel's device") in second.log()
        assert "source tier none (--source vmclock)" in second.log()
    finally:
        if os.path.islink(link):
            os.unlink(link)
